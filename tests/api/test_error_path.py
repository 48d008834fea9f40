"""One error path (issue 9, item 7): every non-2xx under /v1 is OpenAI's error JSON with X-Request-Id.

Each case that gave a 500 or aiohttp's plain-text 400 is reproduced over a raw socket.
"""

from __future__ import annotations

import gzip
import logging

import openai
import orjson
import pytest

from tests.api.private_mock import mock_upstream  # noqa: F401 (fixture: this module's own mock)
from tests.api.rawhttp import assert_openai_error, exchange, request

CHAT = "/v1/chat/completions"
MSG = [{"role": "user", "content": "Hello!"}]


def chat_body(**extra) -> bytes:
    return orjson.dumps({"model": "llama-3.1-70b", "messages": MSG, **extra})


def nested(depth: int) -> bytes:
    return b'{"model":"llama-3.1-70b","messages":[{"role":"user","content":"hi"}],"metadata":' + \
        b"[" * depth + b"]" * depth + b"}"


@pytest.fixture
def customer(gateway):
    return gateway.customer("errors@example.com")


@pytest.mark.parametrize("depth", [255, 256, 600, 1023])
def test_json_nested_256_to_1023_levels_is_a_400_not_a_500(gateway, customer, depth):
    cid, key = customer
    response = exchange(gateway.port, request("POST", CHAT, nested(depth), {"Authorization": f"Bearer {key}"}))
    error = assert_openai_error(response, 400, "invalid_request")
    assert "nested more than 254 levels" in error["message"]
    assert gateway.balance(cid) == gateway.ledger_sum(cid) == 10_000_000  # nothing held back or charged


def test_json_nested_254_levels_still_goes_through(gateway, customer):
    _, key = customer
    response = exchange(gateway.port, request("POST", CHAT, nested(253), {"Authorization": f"Bearer {key}"}))
    assert response.status == 200, response.body[:300]
    assert response.headers["x-request-id"].startswith("req_")


def test_gzip_header_with_a_body_that_is_not_gzip_is_a_400(gateway, customer):
    _, key = customer
    response = exchange(gateway.port, request("POST", CHAT, chat_body(), {
        "Authorization": f"Bearer {key}", "Content-Encoding": "gzip"}))
    assert_openai_error(response, 400, "invalid_content_encoding")


def test_a_real_gzip_body_is_decoded(gateway, customer):
    _, key = customer
    response = exchange(gateway.port, request("POST", CHAT, gzip.compress(chat_body()), {
        "Authorization": f"Bearer {key}", "Content-Encoding": "gzip"}))
    assert response.status == 200, response.body[:300]


def test_an_unknown_content_encoding_is_a_415_not_read_as_plain_json(gateway, customer):
    _, key = customer
    response = exchange(gateway.port, request("POST", CHAT, chat_body(), {
        "Authorization": f"Bearer {key}", "Content-Encoding": "x-unheard-of"}))
    assert_openai_error(response, 415, "unsupported_content_encoding")


def test_a_10_kb_authorization_header_is_a_json_431_and_never_echoed(gateway, caplog):
    secret = "gw_SECRETMARK" + "k" * 10_240
    with caplog.at_level(logging.DEBUG):
        response = exchange(gateway.port, request("POST", CHAT, chat_body(), {"Authorization": f"Bearer {secret}"}))
    error = assert_openai_error(response, 431, "request_headers_too_large")
    assert "SECRETMARK" not in error["message"]
    assert "SECRETMARK" not in caplog.text  # the parser's message quotes the header; our log does not


def test_http_1_0_post_without_content_length_is_a_json_400(gateway, customer):
    _, key = customer
    response = exchange(gateway.port, request("POST", CHAT, chat_body(), {"Authorization": f"Bearer {key}"},
                                              version="HTTP/1.0", content_length=False))
    error = assert_openai_error(response, 400, "malformed_http_request")
    assert "Content-Length" in error["message"]


def test_a_bare_lf_header_is_a_json_400(gateway, customer):
    _, key = customer
    raw = request("POST", CHAT, chat_body(), {"Authorization": f"Bearer {key}"}).replace(
        b"Host: 127.0.0.1\r\n", b"Host: 127.0.0.1\n", 1)
    error = assert_openai_error(exchange(gateway.port, raw), 400, "malformed_http_request")
    assert "CRLF" in error["message"]


@pytest.mark.parametrize("raw, status, code", [
    (b"GET /v1/models?" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "request_line_too_long"),
    (b"GET /v1/models HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(200)) + b"\r\n",
     431, "request_headers_too_large"),
    (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400,
     "malformed_http_request"),
    (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400,
     "malformed_http_request"),
    (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", 400, "malformed_http_request"),
    (b"GET /v1/models HTTP/1.1\r\n\r\n", 400, "malformed_http_request"),  # HTTP/1.1 without Host
])
def test_parser_errors_are_json_with_the_right_status(gateway, raw, status, code):
    assert_openai_error(exchange(gateway.port, raw), status, code)


def test_a_declared_oversize_body_is_refused_at_once_with_413(gateway, customer):
    _, key = customer
    head = (f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Length: {65 * 1024 ** 2}\r\n\r\n").encode()
    response = exchange(gateway.port, head + b"{" * 1000)  # the answer comes without sending 65 MB
    assert_openai_error(response, 413, "request_too_large")


@pytest.mark.parametrize("method, path, status, code", [
    ("GET", "/v1/nope", 404, "unknown_endpoint"),
    ("DELETE", "/v1/models", 405, "method_not_allowed"),
    ("GET", "/v1/chat/completions", 405, "method_not_allowed"),
])
def test_unknown_paths_and_methods_are_json(gateway, method, path, status, code):
    assert_openai_error(exchange(gateway.port, request(method, path)), status, code)


def test_401_carries_a_request_id(gateway):
    assert_openai_error(exchange(gateway.port, request("POST", CHAT, chat_body())), 401, "invalid_api_key")


def test_every_2xx_carries_the_call_id_that_names_its_usage_record(gateway, customer):
    cid, key = customer
    client = openai.OpenAI(api_key=key, base_url=gateway.base_url, max_retries=0)
    unary = client.chat.completions.with_raw_response.create(model="llama-3.1-70b", messages=MSG)
    with client.chat.completions.with_streaming_response.create(model="llama-3.1-70b", messages=MSG,
                                                                stream=True) as stream:
        stream_id = stream.headers["x-request-id"]
        for _ in stream.iter_lines():
            pass
    embedding = client.embeddings.with_raw_response.create(model="nomic-embed-text", input="hi")
    models = client.models.with_raw_response.list()
    ids = [r.headers["x-request-id"] for r in (unary, embedding)] + [stream_id]
    assert all(i.startswith("req_") for i in ids) and len(set(ids)) == 3
    assert models.headers["x-request-id"].startswith("req_")
    records = {r.id: r for r in gateway.usage(cid)}
    assert set(ids) <= set(records)
    charges = {r.reference for r in gateway.sql("SELECT reference FROM ledger_entries WHERE kind = 'charge'")}
    assert {f"usage:{i}" for i in ids} == charges


def test_a_prompt_containing_a_special_token_is_estimated_not_a_500(gateway, customer):
    """Counting tokens ourselves (no upstream usage) treats '<|endoftext|>' as text."""
    cid, key = customer
    client = openai.OpenAI(api_key=key, base_url=gateway.base_url, max_retries=0)
    messages = [{"role": "user", "content": "say <|endoftext|> please"}]
    client.chat.completions.create(model="mock-nousage", messages=messages)
    chunks = list(client.chat.completions.create(model="mock-nousage", messages=messages, stream=True))
    assert chunks
    records = gateway.usage(cid)
    assert [r.status for r in records] == [200, 200] and all(r.estimated and r.cost > 0 for r in records)
    assert gateway.balance(cid) == gateway.ledger_sum(cid) == 10_000_000 - sum(r.cost for r in records)
