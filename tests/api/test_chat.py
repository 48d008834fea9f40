"""Chat completions through the official openai SDK: answers, parameters, exact billing."""

import urllib.request

import openai
import orjson

from aigateway.api.tokens import count_chat_prompt, count_text_tokens
from aigateway.money import request_cost
from tests.conftest import gateway_config

IN, OUT = 350_000, 1_400_000  # llama-3.1-70b in tests/conftest.py: 0.35 / 1.40 TMT per 1M tokens


def client(gateway, key, **kw):
    return openai.OpenAI(api_key=key, base_url=gateway.base_url, max_retries=0, **kw)


def mock_requests(mock_upstream) -> list[dict]:
    with urllib.request.urlopen(mock_upstream.url + "/_mock/requests") as response:
        return orjson.loads(response.read())


def test_non_streaming_chat_is_billed_exactly_and_recorded(gateway):
    cid, key = gateway.customer("chat@example.com", credit="10")
    reply = client(gateway, key).chat.completions.create(
        model="llama-3.1-70b", messages=[{"role": "user", "content": "Hello!"}])
    assert reply.choices[0].message.content.startswith("Hello!")
    cost = request_cost(reply.usage.prompt_tokens, reply.usage.completion_tokens, IN, OUT)
    assert cost > 0
    assert gateway.balance(cid) == 10_000_000 - cost
    assert gateway.ledger_sum(cid) == gateway.balance(cid)
    [usage] = gateway.usage(cid)
    assert (usage.model, usage.provider, usage.upstream_model) == ("llama-3.1-70b", "mock", "mock-chat")
    assert (usage.input_tokens, usage.output_tokens) == (reply.usage.prompt_tokens, reply.usage.completion_tokens)
    assert usage.cost == cost and usage.status == 200 and usage.estimated is False
    assert usage.price_version_id is not None and usage.api_key_id is not None and usage.latency_ms >= 0
    [charge] = gateway.sql("SELECT amount, kind, reference FROM ledger_entries WHERE kind = 'charge'")
    assert charge.amount == -cost and charge.reference == f"usage:{usage.id}"


def test_every_openai_parameter_is_passed_through(gateway, mock_upstream):
    _, key = gateway.customer("params@example.com")
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                               "parameters": {"type": "object", "properties": {}}}}]
    reply = client(gateway, key).chat.completions.create(
        model="llama-3.1-70b", messages=[{"role": "user", "content": "Weather?"}], tools=tools,
        tool_choice="required", temperature=0.3, top_p=0.9, n=2, stop=["\n\n"], seed=7, max_tokens=50,
        response_format={"type": "json_object"}, user="customer-42", extra_body={"top_k": 40})
    assert reply.choices[0].message.tool_calls[0].function.name == "get_weather"
    assert len(reply.choices) == 2
    sent = mock_requests(mock_upstream)[-1]
    assert sent["model"] == "mock-chat"  # renamed to the route's upstream model
    for name, value in {"tools": tools, "tool_choice": "required", "temperature": 0.3, "top_p": 0.9, "n": 2,
                        "stop": ["\n\n"], "seed": 7, "max_tokens": 50, "response_format": {"type": "json_object"},
                        "user": "customer-42", "top_k": 40}.items():
        assert sent[name] == value, name


def test_stream_without_usage_request_hides_usage_chunk_but_bills(gateway, mock_upstream):
    cid, key = gateway.customer("stream@example.com", credit="10")
    chunks = list(client(gateway, key).chat.completions.create(
        model="llama-3.1-70b", messages=[{"role": "user", "content": "Explain quantum physics"}], stream=True))
    # The portal's own example indexes chunk.choices[0] on every chunk: there must be no empty-choices chunk.
    assert all(chunk.choices for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text.startswith("Hello!")
    assert mock_requests(mock_upstream)[-1]["stream_options"] == {"include_usage": True}
    [usage] = gateway.usage(cid)
    assert usage.stream and not usage.estimated and usage.output_tokens == count_text_tokens(text)
    assert gateway.balance(cid) == 10_000_000 - request_cost(usage.input_tokens, usage.output_tokens, IN, OUT)


def test_stream_with_include_usage_gets_usage_chunk(gateway):
    cid, key = gateway.customer("streamusage@example.com", credit="10")
    chunks = list(client(gateway, key).chat.completions.create(
        model="llama-3.1-70b", messages=[{"role": "user", "content": "Hi"}], stream=True,
        stream_options={"include_usage": True}))
    final = chunks[-1]
    assert final.choices == [] and final.usage.completion_tokens > 0
    [usage] = gateway.usage(cid)
    assert (usage.input_tokens, usage.output_tokens) == (final.usage.prompt_tokens, final.usage.completion_tokens)
    cost = request_cost(final.usage.prompt_tokens, final.usage.completion_tokens, IN, OUT)
    assert gateway.balance(cid) == 10_000_000 - cost


def test_missing_upstream_usage_is_counted_with_tokenizer_and_marked_estimated(gateway):
    cid, key = gateway.customer("nousage@example.com", credit="10")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there!"}]
    api = client(gateway, key)
    reply = api.chat.completions.create(model="mock-nousage", messages=messages)
    assert reply.usage is None
    chunks = list(api.chat.completions.create(model="mock-nousage", messages=messages, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    unary, stream = gateway.usage(cid)
    for record, text in ((unary, reply.choices[0].message.content), (stream, streamed)):
        assert record.estimated is True
        assert record.input_tokens == count_chat_prompt(messages)
        assert record.output_tokens == count_text_tokens(text) > 0
    total = sum(request_cost(r.input_tokens, r.output_tokens, IN, OUT) for r in (unary, stream))
    assert gateway.balance(cid) == 10_000_000 - total


def test_failover_skips_500_and_429_routes_and_charges_once(gateway, mock_upstream):
    cid, key = gateway.customer("failover@example.com", credit="10")
    before = len(mock_requests(mock_upstream))
    reply = client(gateway, key).chat.completions.create(
        model="mock-failover", messages=[{"role": "user", "content": "Hi"}])
    assert reply.choices[0].message.content
    tried = [r["model"] for r in mock_requests(mock_upstream)[before:]]
    assert tried == ["mock-chat-fail500", "mock-chat-fail429", "mock-chat"]
    [usage] = gateway.usage(cid)
    assert usage.upstream_model == "mock-chat" and usage.status == 200
    assert len(gateway.sql("SELECT id FROM ledger_entries WHERE kind = 'charge'")) == 1


def test_stream_fails_over_before_first_byte(gateway, mock_upstream):
    _, key = gateway.customer("streamfailover@example.com")
    chunks = list(client(gateway, key).chat.completions.create(
        model="mock-failover", messages=[{"role": "user", "content": "Hi"}], stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks).startswith("Hello!")


def test_upstream_drop_mid_stream_tells_client_and_bills_what_was_generated(gateway):
    cid, key = gateway.customer("drop@example.com", credit="10")
    received = []
    try:
        for chunk in client(gateway, key).chat.completions.create(
                model="mock-drop", messages=[{"role": "user", "content": "Hi"}], stream=True):
            received.append(chunk.choices[0].delta.content or "")
        raised = False
    except openai.APIError as exc:
        raised = True
        assert "ended the stream early" in str(exc)
    assert raised
    [usage] = gateway.usage(cid)
    assert usage.estimated and usage.output_tokens == count_text_tokens("".join(received)) > 0
    assert "upstream stream broke" in usage.error
    assert usage.cost == request_cost(usage.input_tokens, usage.output_tokens, IN, OUT)


def test_upstream_cookies_are_not_shared_between_customers(start_gateway, mock_upstream, sqlite_url):
    """One pooled client serves every customer, so it must not keep an upstream's cookies."""
    by_name = mock_upstream.url.replace("127.0.0.1", "localhost")  # cookie jars ignore IP hosts
    gateway = start_gateway(gateway_config(by_name, sqlite_url))
    _, key = gateway.customer("cookies@example.com")
    api = client(gateway, key)
    api.chat.completions.create(model="llama-3.1-70b", messages=[{"role": "user", "content": "set-cookie"}])
    api.chat.completions.create(model="llama-3.1-70b", messages=[{"role": "user", "content": "again"}])
    assert mock_requests(mock_upstream)[-1]["_cookie"] is None


def test_a_long_stream_without_usage_is_billed_on_all_its_text(start_gateway, mock_upstream, sqlite_url):
    """300 events (~50 KB, past what the filter keeps raw): the estimate counts every one of them."""
    long_nousage = {"name": "mock-long-nousage", "type": "chat", "input_price": "0.35", "output_price": "1.40",
                    "max_output_tokens": 1024, "context_length": 8192,
                    "routes": [{"provider": "mock", "model": "mock-chat-long-nousage"}]}
    gateway = start_gateway(gateway_config(mock_upstream.url, sqlite_url, models=[long_nousage]))
    cid, key = gateway.customer("longnousage@example.com", credit="10")
    messages = [{"role": "user", "content": "Tell me a long story."}]
    chunks = list(client(gateway, key).chat.completions.create(model="mock-long-nousage", messages=messages,
                                                               stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) > 300
    [usage] = gateway.usage(cid)
    assert usage.estimated and usage.output_tokens == count_text_tokens(streamed) > 300
    assert usage.input_tokens == count_chat_prompt(messages)
    assert gateway.balance(cid) == 10_000_000 - request_cost(usage.input_tokens, usage.output_tokens, IN, OUT)
