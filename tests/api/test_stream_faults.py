"""Stream faults (issue 9, item 5): the stream ends only at the `[DONE]` event; a stall, a break or a
body that is not SSE ends it with an error event; every relayed stream is recorded and charged.

Charges are checked to the unit against the README rule:
cost = ceil((input × input_price + output × output_price) / 1,000,000), prices in units per 1M tokens.
"""

import asyncio
import shutil
import subprocess
import time
from pathlib import Path

import aiohttp
import openai
import orjson
import pytest

from aigateway.api.tokens import count_chat_prompt, count_text_tokens, prompt_token_bound
from aigateway.money import request_cost
from tests.api.conftest import READ_TIMEOUT
from tests.api.fake_upstream import DONE_TEXT, GOOD_USAGE, SLOW_GAP, SLOW_PIECES, STALL_TEXT
from tests.conftest import service_missing

IN, OUT = 350_000, 1_400_000  # 0.35 / 1.40 TMT per 1M tokens, in units
CREDIT = 10_000_000
MESSAGES = [{"role": "user", "content": "Tell me about SSE"}]


def cost(input_tokens: int, output_tokens: int) -> int:
    return request_cost(input_tokens, output_tokens, IN, OUT)


def hold(raw_body: bytes) -> int:
    return cost(prompt_token_bound(raw_body, 8192), 1024)


def post_stream(gateway, key: str, model: str) -> tuple[bytes, bytes]:
    """(request body, response body) of a raw streamed call."""
    raw = orjson.dumps({"model": model, "stream": True, "messages": MESSAGES})

    async def post() -> bytes:
        async with aiohttp.ClientSession() as session:
            async with session.post(gateway.base_url + "/chat/completions", data=raw,
                                    headers={"Authorization": f"Bearer {key}"}) as response:
                assert response.status == 200 and response.content_type == "text/event-stream"
                return await response.read()

    return raw, asyncio.run(post())


def events(body: bytes) -> list[bytes]:
    return [e[len(b"data: "):] for e in body.split(b"\n\n") if e]


def assert_books_balance(gateway, cid: int, charged: int) -> None:
    assert gateway.balance(cid) == CREDIT - charged == gateway.ledger_sum(cid)
    assert gateway.reconcile() == []  # `aigateway admin reconcile` finds nothing


def test_done_inside_the_text_split_across_reads_is_relayed_whole_and_billed_by_upstream_usage(faulty_gateway):
    gateway = faulty_gateway
    cid, key = gateway.customer("done-text@example.com")
    client = openai.OpenAI(api_key=key, base_url=gateway.base_url, max_retries=0)
    chunks = list(client.chat.completions.create(model="done-in-text", stream=True, messages=MESSAGES))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "".join(DONE_TEXT)  # the "data: [DONE]" in the text did not end the stream
    assert chunks[-1].choices[0].finish_reason == "stop"
    [usage] = gateway.usage(cid)
    assert not usage.estimated and usage.error is None
    assert (usage.input_tokens, usage.output_tokens) == (GOOD_USAGE["prompt_tokens"], GOOD_USAGE["completion_tokens"])
    assert usage.cost == cost(100, 200) == 315
    assert_books_balance(gateway, cid, 315)


def test_a_slow_stream_is_not_a_stall_however_long_it_runs(faulty_gateway):
    """Every gap is under the route's read timeout, the whole stream several times it: relayed whole.
    (The relay keeps one stall timer per stream; it must count each wait, not the stream's age.)"""
    assert SLOW_GAP < READ_TIMEOUT < SLOW_GAP * SLOW_PIECES / 3
    gateway = faulty_gateway
    cid, key = gateway.customer("slow@example.com")
    client = openai.OpenAI(api_key=key, base_url=gateway.base_url, max_retries=0)
    chunks = list(client.chat.completions.create(model="slow", stream=True, messages=MESSAGES))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "".join(f"word{i} " for i in range(SLOW_PIECES))
    assert chunks[-1].choices[0].finish_reason == "stop"
    [usage] = gateway.wait_for(lambda: gateway.usage(cid))
    assert usage.error is None and not usage.estimated and usage.cost == cost(100, 200)
    assert_books_balance(gateway, cid, cost(100, 200))


def test_a_stall_mid_stream_raises_in_the_sdk_is_recorded_as_stalled_and_charged_by_estimate(faulty_gateway):
    gateway = faulty_gateway
    cid, key = gateway.customer("stall@example.com")
    client = openai.OpenAI(api_key=key, base_url=gateway.base_url, max_retries=0)
    received: list[str] = []
    started = time.monotonic()
    with pytest.raises(openai.APIError) as raised:
        for chunk in client.chat.completions.create(model="stall", stream=True, messages=MESSAGES):
            received.extend(c.delta.content or "" for c in chunk.choices)
    assert "sent nothing" in raised.value.message
    assert time.monotonic() - started < READ_TIMEOUT + 5  # ended by the read timeout, not by the upstream
    assert "".join(received) == "".join(STALL_TEXT)
    # The SDK raises at the error event, before the bill: a first estimate waits for the tokenizer.
    [usage] = gateway.wait_for(lambda: gateway.usage(cid))
    assert usage.error == "upstream stalled" and usage.estimated and usage.status == 200
    expected_in, expected_out = count_chat_prompt(MESSAGES), count_text_tokens("".join(STALL_TEXT))
    assert (usage.input_tokens, usage.output_tokens) == (expected_in, expected_out)
    assert usage.cost == cost(expected_in, expected_out) > 0
    # The SDK's body is at least as long as compact JSON, so this is at most the hold it got.
    compact = orjson.dumps({"messages": MESSAGES, "model": "stall", "stream": True})
    assert usage.cost <= hold(compact)
    assert_books_balance(gateway, cid, usage.cost)


def test_a_malformed_chunk_is_relayed_and_the_stream_still_recorded_and_charged(faulty_gateway):
    gateway = faulty_gateway
    cid, key = gateway.customer("malformed@example.com")
    raw, body = post_stream(gateway, key, "malformed")
    assert b'{"choices":[{"delta":"oops"}]}' in events(body) and events(body)[-1] == b"[DONE]"
    [usage] = gateway.usage(cid)
    assert usage.estimated and usage.error is None
    expected = cost(count_chat_prompt(MESSAGES), count_text_tokens("hello there"))
    assert usage.cost == expected <= hold(raw)
    assert_books_balance(gateway, cid, expected)


@pytest.mark.parametrize("fault, record", [("garbage", "upstream sent something that is not SSE"),
                                           ("no-done", "upstream closed the stream without [DONE]")])
def test_a_stream_that_goes_wrong_after_its_first_event_ends_with_an_error_event(faulty_gateway, fault, record):
    gateway = faulty_gateway
    cid, key = gateway.customer(f"{fault}@example.com")
    raw, body = post_stream(gateway, f"{key}", f"{fault}-then-good")  # too late to fail over
    last = orjson.loads(events(body)[-1])
    assert last["error"]["type"] == "server_error" and set(last["error"]) == {"message", "type", "param", "code"}
    assert b"[DONE]" not in body and b"<html" not in body.lower()
    [usage] = gateway.usage(cid)
    assert usage.error.startswith(record) and usage.estimated and usage.upstream_model == fault
    streamed = "first" if fault == "garbage" else "half a story"
    assert usage.cost == cost(count_chat_prompt(MESSAGES), count_text_tokens(streamed)) <= hold(raw)
    assert_books_balance(gateway, cid, usage.cost)


@pytest.mark.parametrize("fault", ["json", "silent"])
def test_json_to_a_stream_request_or_silence_before_the_first_event_fails_over(faulty_gateway, fault):
    gateway = faulty_gateway
    cid, key = gateway.customer(f"{fault}-stream@example.com")
    client = openai.OpenAI(api_key=key, base_url=gateway.base_url, max_retries=0)
    chunks = list(client.chat.completions.create(model=f"{fault}-then-good", stream=True, messages=MESSAGES))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "A good answer."
    [usage] = gateway.usage(cid)
    assert usage.upstream_model == "good" and not usage.estimated and usage.cost == 315
    assert_books_balance(gateway, cid, 315)


@pytest.mark.parametrize("fault", ["json", "html", "silent"])
def test_a_stream_with_no_good_route_gets_503_with_retry_after_and_is_not_charged(faulty_gateway, fault):
    gateway = faulty_gateway
    cid, key = gateway.customer(f"stream-503-{fault}@example.com")
    client = openai.OpenAI(api_key=key, base_url=gateway.base_url, max_retries=0)
    with pytest.raises(openai.APIStatusError) as raised:
        list(client.chat.completions.create(model=fault, stream=True, messages=MESSAGES))
    response = raised.value.response
    assert response.status_code == 503 and response.headers["Retry-After"] == "30"
    assert response.json()["error"]["code"] == "providers_unavailable"
    [usage] = gateway.usage(cid)
    assert (usage.status, usage.cost) == (503, 0)
    assert_books_balance(gateway, cid, 0)


def test_the_node_sdk_also_raises_on_the_stall_error_event(faulty_gateway, tmp_path):
    node_dir = Path(__file__).resolve().parents[1] / "node"
    if shutil.which("node") is None or not (node_dir / "node_modules" / "openai").exists():
        service_missing("node with the openai package in tests/node (scripts/test installs it)")
    gateway = faulty_gateway
    cid, key = gateway.customer("stall-node@example.com")
    script = node_dir / f".stall-{tmp_path.name}.mjs"  # inside tests/node to resolve 'openai'
    script.write_text(f"""
import OpenAI from "openai";
const client = new OpenAI({{apiKey: {key!r}, baseURL: {gateway.base_url!r}, maxRetries: 0}});
let text = "";
try {{
  const stream = await client.chat.completions.create({{model: "stall", stream: true,
    messages: [{{role: "user", content: "Tell me about SSE"}}]}});
  for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
  console.log("NO ERROR " + text);
}} catch (err) {{
  console.log(err.constructor.name + "|" + text + "|" + err.message);
}}
""")
    try:
        result = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=60)
    finally:
        script.unlink()
    kind, text, message = result.stdout.strip().split("|", 2)
    assert kind == "APIError" and text == "".join(STALL_TEXT) and "sent nothing" in message
    [usage] = gateway.usage(cid)
    assert usage.error == "upstream stalled" and usage.cost == cost(usage.input_tokens, usage.output_tokens) > 0
    assert_books_balance(gateway, cid, usage.cost)


def test_a_client_that_left_before_a_stall_is_recorded_as_both(faulty_gateway):
    gateway = faulty_gateway
    cid, key = gateway.customer("left-stall@example.com")

    async def read_one_chunk_then_leave():
        async with aiohttp.ClientSession() as session:
            response = await session.post(gateway.base_url + "/chat/completions", headers={
                "Authorization": f"Bearer {key}"}, data=orjson.dumps({"model": "stall", "stream": True,
                                                                      "messages": MESSAGES}))
            assert response.status == 200
            await response.content.readline()
            response.close()

    asyncio.run(read_one_chunk_then_leave())
    [usage] = gateway.wait_for(lambda: gateway.usage(cid))
    assert usage.error == "client disconnected; upstream stalled" and usage.estimated
    assert usage.cost == cost(count_chat_prompt(MESSAGES), count_text_tokens("".join(STALL_TEXT)))
    assert_books_balance(gateway, cid, usage.cost)
