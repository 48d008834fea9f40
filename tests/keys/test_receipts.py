"""Receipts: X-Request-Id on every answer, GET /v1/generation, and `cost` in the usage asked for."""

import urllib.error
import urllib.request

import openai
import orjson
import pytest

from aigateway.money import to_units


def sdk(gw, key):
    return openai.OpenAI(api_key=key, base_url=gw.base_url, max_retries=0)


def get(gw, key, path):
    request = urllib.request.Request(gw.base_url + path, headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, dict(response.headers), orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), orjson.loads(exc.read())


def charge(gw, request_id):
    [row] = gw.sql("SELECT amount FROM ledger_entries WHERE reference = :r", r=f"usage:{request_id}")
    return -row.amount


def test_unary_receipt_matches_the_ledger_charge(gateway):
    _, key = gateway.customer("receipt@example.com")
    raw = sdk(gateway, key).chat.completions.with_raw_response.create(
        model="llama-3.1-70b", messages=[{"role": "user", "content": "Hi"}], extra_body={"usage": {"include": True}})
    reply = raw.parse()
    assert reply.id == raw.headers["X-Request-Id"] and reply.id.startswith("req_")
    status, _, early = get(gateway, key, f"/generation?id={reply.id}")  # likely before the group commit
    assert status == 200
    gateway.flush()
    status, _, receipt = get(gateway, key, f"/generation?id={reply.id}")
    assert status == 200 and receipt == early
    data = receipt["data"]
    assert (data["model"], data["route"], data["status"], data["endpoint"]) == ("llama-3.1-70b", "route-1", 200, "chat")
    assert (data["tokens_prompt"], data["tokens_completion"]) == (reply.usage.prompt_tokens,
                                                                  reply.usage.completion_tokens)
    assert data["estimated"] is False and data["capped"] is False and data["price_version"] is not None
    assert to_units(data["cost"]) == charge(gateway, reply.id) > 0
    assert reply.usage.model_extra["cost"] == data["cost"]
    assert "mock" not in orjson.dumps(receipt).decode()  # no upstream names
    assert data["latency_ms"] >= 0 and data["created_at"].endswith("Z")


def test_stream_usage_carries_the_cost_it_is_charged(gateway):
    _, key = gateway.customer("stream-receipt@example.com")
    chunks = list(sdk(gateway, key).chat.completions.create(
        model="llama-3.1-70b", messages=[{"role": "user", "content": "Hi"}], stream=True,
        stream_options={"include_usage": True}))
    assert len({c.id for c in chunks}) == 1
    usage = chunks[-1].usage
    gateway.flush()
    assert to_units(usage.model_extra["cost"]) == charge(gateway, chunks[0].id) > 0
    status, _, receipt = get(gateway, key, f"/generation?id={chunks[0].id}")
    assert status == 200 and receipt["data"]["cost"] == usage.model_extra["cost"] and receipt["data"]["stream"]


def test_usage_include_on_a_stream_asks_for_usage_and_is_not_sent_upstream(gateway, mock_upstream):
    _, key = gateway.customer("include@example.com")
    chunks = list(sdk(gateway, key).chat.completions.create(
        model="llama-3.1-70b", messages=[{"role": "user", "content": "Hi"}], stream=True,
        extra_body={"usage": {"include": True}}))
    assert "cost" in chunks[-1].usage.model_extra
    with urllib.request.urlopen(mock_upstream.url + "/_mock/requests") as response:
        assert "usage" not in orjson.loads(response.read())[-1]


def test_receipts_are_the_keys_own_and_unknown_ids_say_not_yet(gateway):
    cid, key = gateway.customer("owner@example.com")
    _, other = gateway.customer("other@example.com")
    reply = sdk(gateway, key).chat.completions.create(model="llama-3.1-70b",
                                                      messages=[{"role": "user", "content": "x"}])
    gateway.flush()
    for who, rid in ((other, reply.id), (key, "req_doesnotexist")):
        status, headers, body = get(gateway, who, f"/generation?id={rid}")
        assert status == 404 and headers["Retry-After"] == "1"
        assert body["error"]["code"] == "generation_not_ready"
    assert get(gateway, key, "/generation")[0] == 400


@pytest.mark.parametrize("key_of, model, status", [(lambda k: "gw_wrong", "llama-3.1-70b", 401),
                                                   (lambda k: k, "no-such-model", 404)])
def test_refusals_carry_a_request_id(gateway, key_of, model, status):
    _, key = gateway.customer(f"refused-{status}@example.com")
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(gateway, key_of(key)).chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == status
    assert caught.value.response.headers["X-Request-Id"].startswith("req_")
