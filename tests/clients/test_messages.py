"""POST /v1/messages through the official anthropic SDK: answers, the usage the SDK reports,
the ledger charge to the unit, tools, Anthropic's error shape, and faults mid-stream."""

from __future__ import annotations

import anthropic
import pytest

from aigateway.money import request_cost
from tests.clients.conftest import IN, OUT, raw_post, received
from tests.clients.fake_upstream import CALL_ARGUMENTS, TEXT_PIECES, TEXT_USAGE, TOOL_USAGE

WEATHER = {"name": "get_weather", "description": "Weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def client(gateway, key, **kw) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=key, base_url=gateway.url, max_retries=0, **kw)


def charged(gateway, cid) -> int:
    return 10_000_000 - gateway.balance(cid)


def test_plain_answer_usage_and_exact_charge(clients_gateway, fake_chat_upstream):
    cid, key = clients_gateway.customer("a1@example.com")
    message = client(clients_gateway, key).messages.create(
        model="fake-chat", max_tokens=64, system="Be brief.", stop_sequences=["END"],
        messages=[{"role": "user", "content": [{"type": "text", "text": "Hello!"}]}])
    assert message.content[0].text == "".join(TEXT_PIECES) and message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (19, 7)
    sent = received(fake_chat_upstream)[-1]
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"}]
    assert sent["max_tokens"] == 64 and sent["stop"] == ["END"]
    cost = request_cost(19, 7, IN, OUT)
    assert charged(clients_gateway, cid) == cost
    [usage] = clients_gateway.usage(cid)
    assert (usage.input_tokens, usage.output_tokens, usage.cost) == (19, 7, cost)
    assert clients_gateway.ledger_sum(cid) == clients_gateway.balance(cid)


def test_streamed_with_the_sdk_helper_and_raw_events(clients_gateway):
    cid, key = clients_gateway.customer("a2@example.com")
    api = client(clients_gateway, key)
    with api.messages.stream(model="fake-chat", max_tokens=64,
                             messages=[{"role": "user", "content": "Hi"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == final.content[0].text == "".join(TEXT_PIECES)
    assert (final.usage.input_tokens, final.usage.output_tokens) == (19, 7)
    events = [e.type for e in api.messages.create(model="fake-chat", max_tokens=64, stream=True,
                                                   messages=[{"role": "user", "content": "Hi"}])]
    assert events[:2] == ["message_start", "content_block_start"]
    assert events[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert events.count("content_block_delta") == len(TEXT_PIECES)
    assert charged(clients_gateway, cid) == 2 * request_cost(19, 7, IN, OUT)


@pytest.mark.parametrize("stream", [False, True])
def test_tool_use_then_tool_result(clients_gateway, fake_chat_upstream, stream):
    cid, key = clients_gateway.customer(f"a3{stream}@example.com")
    api = client(clients_gateway, key, default_headers={"anthropic-version": "2023-06-01"})
    question = {"role": "user", "content": "Weather in Paris?"}
    if stream:
        with api.messages.stream(model="fake-chat", max_tokens=256, tools=[WEATHER], messages=[question]) as s:
            pieces = [e.partial_json for e in s if e.type == "input_json"]
            first = s.get_final_message()
        assert pieces == CALL_ARGUMENTS
    else:
        first = api.messages.create(model="fake-chat", max_tokens=256, tools=[WEATHER], messages=[question])
    [use] = first.content
    assert (use.type, use.name, use.input, first.stop_reason) == ("tool_use", "get_weather", {"city": "Paris"},
                                                                  "tool_use")
    second = api.messages.create(model="fake-chat", max_tokens=256, tools=[WEATHER], messages=[
        question, {"role": "assistant", "content": first.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "22 C"}]}])
    assert second.content[0].text == "It is sunny: 22 C"
    sent = received(fake_chat_upstream)[-1]
    assert sent["tools"][0]["function"]["parameters"] == WEATHER["input_schema"]
    assert sent["messages"][1]["tool_calls"][0]["id"] == use.id
    assert sent["messages"][2] == {"role": "tool", "tool_call_id": use.id, "content": "22 C"}
    assert charged(clients_gateway, cid) == 2 * request_cost(TOOL_USAGE["prompt_tokens"],
                                                             TOOL_USAGE["completion_tokens"], IN, OUT)


def test_bearer_auth_works_too(clients_gateway):
    _, key = clients_gateway.customer("a4@example.com")
    api = anthropic.Anthropic(auth_token=key, base_url=clients_gateway.url, max_retries=0)
    message = api.messages.create(model="fake-chat", max_tokens=32, messages=[{"role": "user", "content": "Hi"}])
    assert message.usage.output_tokens == TEXT_USAGE["completion_tokens"]


def test_errors_in_anthropics_shape(clients_gateway):
    cid, key = clients_gateway.customer("a5@example.com", models=["fake-chat"])
    hi = [{"role": "user", "content": "Hi"}]
    with pytest.raises(anthropic.AuthenticationError) as caught:
        client(clients_gateway, "gw_wrong").messages.create(model="fake-chat", max_tokens=8, messages=hi)
    assert caught.value.body["type"] == "error" and caught.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.NotFoundError):  # the key's model allowlist
        client(clients_gateway, key).messages.create(model="fake-nousage", max_tokens=8, messages=hi)
    status, body = raw_post(clients_gateway.url + "/v1/messages", {"model": "fake-chat", "messages": hi},
                            {"x-api-key": key, "anthropic-version": "2023-06-01"})
    assert status == 400 and body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in body["error"]["message"]
    _, poor_key = clients_gateway.customer("a6@example.com", credit="0.000001")
    with pytest.raises(anthropic.APIStatusError) as caught:
        client(clients_gateway, poor_key).messages.create(model="fake-chat", max_tokens=8, messages=hi)
    assert caught.value.status_code == 402 and caught.value.body["error"]["type"] == "billing_error"
    assert clients_gateway.balance(cid) == 10_000_000


def test_stream_cut_mid_way_raises_and_bills_what_was_streamed(clients_gateway):
    cid, key = clients_gateway.customer("a7@example.com")
    with pytest.raises(anthropic.APIStatusError) as caught:
        with client(clients_gateway, key).messages.stream(
                model="fake-drop", max_tokens=64, messages=[{"role": "user", "content": "Hi"}]) as stream:
            "".join(stream.text_stream)
    assert "ended the stream early" in str(caught.value)
    # the client sees the cut before the gateway has settled the stream: wait for the record
    [usage] = clients_gateway.wait_for(lambda: clients_gateway.usage(cid))
    assert usage.estimated is True and usage.output_tokens > 0 and usage.cost > 0
    assert charged(clients_gateway, cid) == usage.cost


def test_client_disconnect_is_billed_with_the_upstream_usage(clients_gateway):
    cid, key = clients_gateway.customer("a8@example.com")
    with client(clients_gateway, key).messages.stream(
            model="fake-long", max_tokens=512, messages=[{"role": "user", "content": "Hi"}]) as stream:
        next(iter(stream.text_stream))  # leave after the first text
    usage = clients_gateway.wait_for(lambda: clients_gateway.usage(cid))[0]
    assert (usage.input_tokens, usage.output_tokens, usage.estimated) == (19, 7, False)
    assert "client disconnected" in usage.error
    assert charged(clients_gateway, cid) == request_cost(19, 7, IN, OUT)


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_refusal_is_passed_on_in_anthropics_shape_and_not_billed(clients_gateway, stream):
    cid, key = clients_gateway.customer(f"a9{stream}@example.com")
    with pytest.raises(anthropic.BadRequestError) as caught:
        client(clients_gateway, key).messages.create(model="fake-badreq", max_tokens=8, stream=stream,
                                                     messages=[{"role": "user", "content": "Hi"}])
    assert caught.value.body == {"type": "error", "error": {
        "type": "invalid_request_error", "message": "This model's maximum context length is 8192 tokens."}}
    assert clients_gateway.balance(cid) == 10_000_000
