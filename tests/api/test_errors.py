"""Every error code in the case it names, in OpenAI's JSON shape, raising the SDK's matching class."""

import json
import urllib.error
import urllib.request

import openai
import pytest

from aigateway.accounts.service import revoke_key
from tests.support.waits import wait_until

MSG = [{"role": "user", "content": "Hello!"}]


def api(gateway, key):
    return openai.OpenAI(api_key=key, base_url=gateway.base_url, max_retries=0)


def raw_post(gateway, path, body: bytes, key: str | None):
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(gateway.url + path, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def assert_openai_error(body: dict, code: str):
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "code", "param"}
    assert body["error"]["code"] == code and body["error"]["message"]


@pytest.mark.parametrize("header_key", [None, "not-a-gw-key", "gw_" + "x" * 43])
def test_401_for_missing_malformed_and_unknown_keys(gateway, header_key):
    status, _, body = raw_post(gateway, "/v1/chat/completions", b'{"model":"llama-3.1-70b","messages":[]}', header_key)
    assert status == 401
    assert_openai_error(body, "invalid_api_key")
    with pytest.raises(openai.AuthenticationError):
        api(gateway, header_key or "gw_missing").models.list()


def test_401_for_a_revoked_key_within_a_second(gateway):
    cid, key = gateway.customer("revoked@example.com")
    client = api(gateway, key)
    client.chat.completions.create(model="llama-3.1-70b", messages=MSG)
    [row] = gateway.sql("SELECT id FROM api_keys WHERE customer_id = :c", c=cid)

    async def revoke():  # as `aigateway admin key revoke` does: only the database changes
        async with gateway.engine.begin() as conn:
            await revoke_key(conn, row.id)

    gateway.run(revoke())

    def refused() -> bool:
        try:
            client.chat.completions.create(model="llama-3.1-70b", messages=MSG)
        except openai.AuthenticationError:
            return True
        return False

    wait_until(refused, timeout=2.5, what="revoked key refused")


def test_402_says_what_the_request_needs_and_what_the_balance_is(gateway):
    cid, key = gateway.customer("poor@example.com", credit="0.0001")
    with pytest.raises(openai.APIStatusError) as caught:
        api(gateway, key).chat.completions.create(model="llama-3.1-70b", messages=MSG)
    assert caught.value.status_code == 402
    error = caught.value.body
    assert error["code"] == "insufficient_balance"
    assert "may cost up to" in error["message"] and "0.000100 TMT" in error["message"]
    assert gateway.balance(cid) == 100  # nothing charged


def test_404_for_unknown_model_and_model_the_key_may_not_use(gateway):
    _, key = gateway.customer("limited@example.com", models=["nomic-embed-text"])
    with pytest.raises(openai.NotFoundError) as caught:
        api(gateway, key).chat.completions.create(model="no-such-model", messages=MSG)
    assert caught.value.body["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        api(gateway, key).chat.completions.create(model="llama-3.1-70b", messages=MSG)
    assert [m.id for m in api(gateway, key).models.list()] == ["nomic-embed-text"]


def test_404_for_a_model_without_price(gateway):
    _, key = gateway.customer("unpriced@example.com")
    with pytest.raises(openai.NotFoundError) as caught:
        api(gateway, key).chat.completions.create(model="unpriced-model", messages=MSG)
    assert caught.value.body["code"] == "model_not_priced"


@pytest.mark.parametrize("body", [b"{not json", b"[1,2]", b'{"model":"llama-3.1-70b"}',
                                  b'{"model":"llama-3.1-70b","messages":"hi"}', b'{"messages":[{"role":"user"}]}',
                                  b'{"model":"llama-3.1-70b","messages":[{"role":"user","content":"x"}],"max_tokens":-1}'])
def test_400_for_malformed_bodies(gateway, body):
    _, key = gateway.customer("bad@example.com")
    status, _, reply = raw_post(gateway, "/v1/chat/completions", body, key)
    assert status == 400
    assert_openai_error(reply, "invalid_request")


def test_400_sdk_class_and_embedding_model_on_chat_endpoint(gateway):
    _, key = gateway.customer("bad2@example.com")
    with pytest.raises(openai.BadRequestError):
        api(gateway, key).chat.completions.create(model="nomic-embed-text", messages=MSG)


def test_503_only_after_every_route_was_tried_with_retry_after(gateway, mock_upstream):
    cid, key = gateway.customer("down@example.com", credit="10")
    status, headers, body = raw_post(gateway, "/v1/chat/completions",
                                     json.dumps({"model": "mock-down", "messages": MSG}).encode(), key)
    assert status == 503 and int(headers["Retry-After"]) > 0
    assert_openai_error(body, "providers_unavailable")
    with pytest.raises(openai.InternalServerError):
        api(gateway, key).chat.completions.create(model="mock-down", messages=MSG, stream=True)
    assert gateway.balance(cid) == 10_000_000
    assert all(u.status == 503 and u.cost == 0 for u in gateway.usage(cid))


def test_upstream_4xx_is_passed_through_and_not_billed(gateway):
    cid, key = gateway.customer("ctx@example.com", credit="10")
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as caught:
            api(gateway, key).chat.completions.create(model="mock-badreq", messages=MSG, stream=stream)
        assert "maximum context length" in caught.value.message
        assert caught.value.body["code"] == "context_length_exceeded"
    assert gateway.balance(cid) == 10_000_000
    assert [u.status for u in gateway.usage(cid)] == [400, 400]


def test_unknown_v1_path_answers_in_openai_shape(gateway):
    _, key = gateway.customer("path@example.com")
    status, _, body = raw_post(gateway, "/v1/nothing-here", b"{}", key)
    assert status in (404, 405)
    assert "error" in body
