"""The stream transformers on odd but valid chat streams, without a gateway: parallel tool calls,
text after a tool call, chunks with odd fields. What they emit is served to the official SDKs'
stream helpers by a real HTTP server on 127.0.0.1, and the SDKs' final objects are checked."""

from __future__ import annotations

from types import SimpleNamespace

import anthropic
import openai
import orjson
import pytest
from aiohttp import web
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from aigateway.api.call import Call
from aigateway.api.dialects.anthropic import AnthropicDialect
from aigateway.api.dialects.responses import ResponsesDialect
from tests.support.servers import ServerThread

SERVED: list[bytes] = []  # what the replay server answers to any POST: the last bytes put here


@pytest.fixture(scope="module")
def replay():
    async def answer(_request: web.Request) -> web.Response:
        return web.Response(body=SERVED[-1], headers={"Content-Type": "text/event-stream"})

    def make() -> web.Application:
        app = web.Application()
        app.router.add_post("/{tail:.*}", answer)
        return app

    server = ServerThread(make).start()
    yield server
    server.stop()


def _call() -> Call:
    return Call(id="req_test", endpoint="chat", key=None, model=SimpleNamespace(name="m"), price=None, body={},
                hold=None, started=0.0, gateway=None, stream=True)


def _chunk(delta: dict, finish=None, index=0) -> bytes:
    return b"data: " + orjson.dumps({"choices": [{"index": index, "delta": delta, "finish_reason": finish}]}) + b"\n\n"


def _tool(index, call_id=None, name=None, arguments="") -> dict:
    call = {"index": index, "function": {"arguments": arguments}}
    if call_id:
        call.update(id=call_id, type="function")
        call["function"]["name"] = name
    return {"tool_calls": [call]}


STREAM = [
    _chunk({"role": "assistant", "content": "Let me check. "}),
    _chunk(_tool(0, "call_a", "weather", '{"city":')),
    _chunk(_tool(1, "call_b", "time", '{"tz":')),
    _chunk(_tool(0, arguments='"Paris"}')),  # interleaved pieces of parallel calls
    _chunk(_tool(1, arguments='"UTC"}')),
    _chunk({"content": "Done."}),  # text after the calls
    _chunk({"content": "ignored"}, index=1),  # another choice: not part of the answer
    _chunk(_tool([1], arguments="x")),  # an odd index: read as 0, never a crash
    _chunk({}, "tool_calls"),
    b"data: [DONE]\n\n",
]


def _events(raw: bytes) -> list[dict]:
    return [orjson.loads(line[6:]) for line in raw.split(b"\n") if line.startswith(b"data: ")]


def test_responses_stream_items_and_final_response(replay):
    dialect = ResponsesDialect()
    dialect.to_chat({"model": "m", "input": "Hi"})
    stream = dialect.stream(_call())
    raw = b"".join(stream.feed(block) for block in STREAM) + stream.close(10, 20)
    strict = TypeAdapter(ResponseStreamEvent)
    events = [strict.validate_python(e) for e in _events(raw)]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    SERVED.append(raw)
    client = openai.OpenAI(api_key="gw_x", base_url=replay.url + "/v1", max_retries=0)
    with client.responses.stream(model="m", input="Hi") as sdk_stream:
        final = sdk_stream.get_final_response()
    assert events[-1].type == "response.completed" and final.usage.total_tokens == 30
    kinds = [(item.type, getattr(item, "name", None)) for item in final.output]
    assert kinds == [("message", None), ("function_call", "weather"), ("function_call", "time"), ("message", None)]
    assert [item.arguments for item in final.output[1:3]] == ['{"city":"Paris"}x', '{"tz":"UTC"}']
    assert final.output[0].content[0].text == "Let me check. " and final.output[3].content[0].text == "Done."
    added = [e.output_index for e in events if e.type == "response.output_item.added"]
    done = [e.output_index for e in events if e.type == "response.output_item.done"]
    assert added == [0, 1, 2, 3] and sorted(done) == [0, 1, 2, 3]


def test_anthropic_stream_blocks_accumulate_in_the_sdk(replay):
    dialect = AnthropicDialect()
    dialect.to_chat({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]})
    stream = dialect.stream(_call())
    raw = b"".join(stream.feed(block) for block in STREAM) + stream.close(10, 20)
    SERVED.append(raw)
    client = anthropic.Anthropic(api_key="gw_x", base_url=replay.url, max_retries=0)
    with client.messages.stream(model="m", max_tokens=10, messages=[{"role": "user", "content": "Hi"}]) as sdk:
        snapshot = sdk.get_final_message()
    assert [b.type for b in snapshot.content] == ["text", "tool_use", "tool_use", "text"]
    # blocks are sequential: the piece for call_a that came after call_b started is dropped
    assert snapshot.content[1].input == {} and snapshot.content[2].input == {"tz": "UTC"}
    assert snapshot.stop_reason == "tool_use"
    assert (snapshot.usage.input_tokens, snapshot.usage.output_tokens) == (10, 20)


def test_a_fault_event_each_sdk_raises_on():
    for dialect in (ResponsesDialect(), AnthropicDialect()):
        event = _events(dialect.stream(_call()).fail("The upstream broke.", "upstream_stream_error"))[0]
        assert event["type"] == "error" and event["error"]["message"] == "The upstream broke."
