"""POST /v1/responses through the official openai SDK (and the OpenAI Agents SDK): answers,
the usage the SDK reports, the ledger charge to the unit, and the stateless refusals."""

from __future__ import annotations

import json

import agents
import openai
import pytest

from aigateway.money import request_cost
from tests.clients.conftest import IN, OUT, raw_post, received
from tests.clients.fake_upstream import CALL_ARGUMENTS, TEXT_PIECES, TEXT_USAGE, TOOL_USAGE

WEATHER = {"type": "function", "name": "get_weather", "description": "Weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def client(gateway, key) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=gateway.base_url, max_retries=0)


def charged(gateway, cid) -> int:
    return 10_000_000 - gateway.balance(cid)


def test_plain_answer_usage_and_exact_charge(clients_gateway, fake_chat_upstream):
    cid, key = clients_gateway.customer("r1@example.com")
    response = client(clients_gateway, key).responses.create(
        model="fake-chat", input="Hello!", instructions="Be brief.", max_output_tokens=100, temperature=0.5)
    assert response.output_text == "".join(TEXT_PIECES)
    assert response.status == "completed" and response.model == "fake-chat"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (19, 7)
    sent = received(fake_chat_upstream)[-1]
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"}]
    assert sent["max_tokens"] == 100 and sent["temperature"] == 0.5
    cost = request_cost(19, 7, IN, OUT)
    assert charged(clients_gateway, cid) == cost
    [usage] = clients_gateway.usage(cid)
    assert (usage.input_tokens, usage.output_tokens, usage.cost, usage.estimated) == (19, 7, cost, False)
    assert clients_gateway.ledger_sum(cid) == clients_gateway.balance(cid)


def test_streamed_events_and_final_usage(clients_gateway):
    cid, key = clients_gateway.customer("r2@example.com")
    stream = client(clients_gateway, key).responses.create(model="fake-chat", input="Hi", stream=True)
    events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "".join(TEXT_PIECES)
    final = events[-1].response
    assert final.output_text == "".join(TEXT_PIECES)
    assert (final.usage.input_tokens, final.usage.output_tokens) == (19, 7)
    assert charged(clients_gateway, cid) == request_cost(19, 7, IN, OUT)


def test_stream_helper_accumulates_the_final_response(clients_gateway):
    _, key = clients_gateway.customer("r3@example.com")
    with client(clients_gateway, key).responses.stream(model="fake-chat", input="Hi") as stream:
        texts = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(texts) == final.output_text == "".join(TEXT_PIECES)
    assert final.usage.total_tokens == TEXT_USAGE["total_tokens"]


@pytest.mark.parametrize("stream", [False, True])
def test_function_tool_round_trip(clients_gateway, fake_chat_upstream, stream):
    cid, key = clients_gateway.customer(f"r4{stream}@example.com")
    api = client(clients_gateway, key)
    if stream:
        with api.responses.stream(model="fake-chat", input="Weather in Paris?", tools=[WEATHER]) as s:
            argument_deltas = [e.delta for e in s if e.type == "response.function_call_arguments.delta"]
            first = s.get_final_response()
        assert argument_deltas == CALL_ARGUMENTS
    else:
        first = api.responses.create(model="fake-chat", input="Weather in Paris?", tools=[WEATHER])
    [call] = first.output
    assert (call.type, call.name, json.loads(call.arguments)) == ("function_call", "get_weather", {"city": "Paris"})
    assert received(fake_chat_upstream)[-1]["tools"][0]["function"]["name"] == "get_weather"
    second = api.responses.create(model="fake-chat", tools=[WEATHER], input=[
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "22 C"}])
    assert second.output_text == "It is sunny: 22 C"
    sent = received(fake_chat_upstream)[-1]["messages"]
    assert sent[1]["tool_calls"][0]["id"] == call.call_id and sent[2] == {
        "role": "tool", "tool_call_id": call.call_id, "content": "22 C"}
    assert charged(clients_gateway, cid) == 2 * request_cost(TOOL_USAGE["prompt_tokens"],
                                                             TOOL_USAGE["completion_tokens"], IN, OUT)


def test_without_upstream_usage_the_sdk_sees_the_billed_estimate(clients_gateway):
    cid, key = clients_gateway.customer("r5@example.com")
    for stream in (False, True):
        if stream:
            response = [e for e in client(clients_gateway, key).responses.create(
                model="fake-nousage", input="Hello there", stream=True)][-1].response
        else:
            response = client(clients_gateway, key).responses.create(model="fake-nousage", input="Hello there")
        usage = clients_gateway.usage(cid)[-1]
        assert usage.estimated is True and usage.output_tokens > 0
        assert (response.usage.input_tokens, response.usage.output_tokens) == (usage.input_tokens,
                                                                               usage.output_tokens)


@pytest.mark.parametrize("body, param", [
    ({"previous_response_id": "resp_1"}, "previous_response_id"),
    ({"store": True}, "store"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),
    ({"conversation": "conv_1"}, "conversation"),
])
def test_stateful_requests_are_refused_with_a_clear_400(clients_gateway, body, param):
    cid, key = clients_gateway.customer("r6@example.com")
    with pytest.raises(openai.BadRequestError) as caught:
        client(clients_gateway, key).responses.create(model="fake-chat", **{"input": "Hi", **body})
    assert "stateless" in caught.value.message and caught.value.param == param
    assert clients_gateway.balance(cid) == 10_000_000
    # A refused request leaves its usage record (status 400, cost 0) and no charge.
    assert [(u.status, u.cost) for u in clients_gateway.usage(cid)] == [(400, 0)]


def test_failover_allowlist_and_balance_are_the_chat_ones(clients_gateway):
    cid, key = clients_gateway.customer("r7@example.com", models=["fake-failover"])
    response = client(clients_gateway, key).responses.create(model="fake-failover", input="Hi")
    assert response.output_text == "".join(TEXT_PIECES)
    assert clients_gateway.usage(cid)[-1].provider == "fake"
    with pytest.raises(openai.NotFoundError):
        client(clients_gateway, key).responses.create(model="fake-chat", input="Hi")
    poor, poor_key = clients_gateway.customer("r8@example.com", credit="0.000001")
    with pytest.raises(openai.APIStatusError) as caught:
        client(clients_gateway, poor_key).responses.create(model="fake-chat", input="Hi")
    assert caught.value.status_code == 402


def test_unknown_v1_route_names_the_endpoints(clients_gateway):
    _, key = clients_gateway.customer("r9@example.com")
    status, body = raw_post(clients_gateway.base_url + "/completions-v9", {}, {"Authorization": f"Bearer {key}"})
    assert status == 404 and body["error"]["code"] == "unknown_endpoint"
    for endpoint in ("POST /v1/chat/completions", "POST /v1/responses", "POST /v1/messages", "GET /v1/models"):
        assert endpoint in body["error"]["message"]


def test_openai_agents_sdk_default_model_runs_a_tool(clients_gateway):
    _, key = clients_gateway.customer("r10@example.com")
    agents.set_tracing_disabled(True)
    seen = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """Weather in a city."""
        seen.append(city)
        return "22 C"

    model = agents.OpenAIResponsesModel(model="fake-chat", openai_client=openai.AsyncOpenAI(
        api_key=key, base_url=clients_gateway.base_url, max_retries=0))
    agent = agents.Agent(name="weather", instructions="Answer briefly.", tools=[get_weather], model=model)
    result = agents.Runner.run_sync(agent, "Weather in Paris?")
    assert seen == ["Paris"] and result.final_output == "It is sunny: 22 C"


def test_stream_cut_by_the_upstream_raises_and_is_billed(clients_gateway):
    cid, key = clients_gateway.customer("r11@example.com")
    deltas = []
    with pytest.raises(openai.APIError) as caught:
        for event in client(clients_gateway, key).responses.create(model="fake-drop", input="Hi", stream=True):
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
    assert "ended the stream early" in caught.value.message and "".join(deltas) == "".join(TEXT_PIECES[:2])
    [usage] = clients_gateway.usage(cid)
    assert usage.estimated is True and usage.output_tokens > 0 and usage.cost > 0
    assert charged(clients_gateway, cid) == usage.cost
