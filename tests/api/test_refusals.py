"""What refused requests leave (issue 9, item 9), as the README states it.

An authenticated request to a billed endpoint that is refused leaves a usage record
(status, error code, cost 0, the model name asked for or "") and no charge. A 401
has no customer and leaves none.
"""

from __future__ import annotations

import orjson
import pytest

from tests.api.rawhttp import assert_openai_error, exchange, request

MSG = [{"role": "user", "content": "Hello!"}]


def body(**fields) -> bytes:
    return orjson.dumps(fields)


CASES = [
    # (endpoint path, body, extra headers, status, error code, model recorded)
    ("/v1/chat/completions", b"{not json", {}, 400, "invalid_request", ""),
    ("/v1/chat/completions", body(messages=MSG), {}, 400, "invalid_request", ""),
    ("/v1/chat/completions", body(model=["x"], messages=MSG), {}, 400, "invalid_request", ""),
    ("/v1/chat/completions", body(model="llama-3.1-70b", messages=MSG, max_tokens="ten"), {}, 400,
     "invalid_request", "llama-3.1-70b"),
    ("/v1/chat/completions", body(model="llama-3.1-70b", messages=MSG, n=10**9), {}, 402,
     "insufficient_balance", "llama-3.1-70b"),
    ("/v1/chat/completions", body(model="no-such-model\u0000" + "x" * 300, messages=MSG), {}, 404,
     "model_not_found", "no-such-model" + "x" * 187),
    ("/v1/chat/completions", body(model="unpriced-model", messages=MSG), {}, 404, "model_not_priced",
     "unpriced-model"),
    ("/v1/chat/completions", body(model="mock-down", messages=MSG), {}, 503, "providers_unavailable",
     "mock-down"),
    ("/v1/chat/completions", body(model="llama-3.1-70b", messages=MSG), {"Content-Encoding": "gzip"}, 400,
     "invalid_content_encoding", ""),
    ("/v1/chat/completions", body(model="llama-3.1-70b", messages=MSG), {"Content-Encoding": "lzma"}, 415,
     "unsupported_content_encoding", ""),
    ("/v1/embeddings", body(model="nomic-embed-text", input=[]), {}, 400, "invalid_request", "nomic-embed-text"),
    ("/v1/embeddings", body(model="llama-3.1-70b", input="hi"), {}, 400, "invalid_request", "llama-3.1-70b"),
]


@pytest.mark.parametrize("path, raw, headers, status, code, model", CASES)
def test_an_authenticated_refusal_leaves_a_record_and_no_charge(gateway, path, raw, headers, status, code, model):
    cid, key = gateway.customer("refused@example.com")
    response = exchange(gateway.port, request("POST", path, raw, {"Authorization": f"Bearer {key}", **headers}))
    assert_openai_error(response, status, code)
    [record] = gateway.usage(cid)
    assert record.id == response.headers["x-request-id"]
    assert (record.status, record.error, record.cost, record.model) == (status, code, 0, model)
    assert record.endpoint == ("chat" if "chat" in path else "embeddings")
    assert gateway.sql("SELECT id FROM ledger_entries WHERE kind = 'charge'") == []
    assert gateway.balance(cid) == gateway.ledger_sum(cid) == 10_000_000


@pytest.mark.parametrize("auth", [None, "Bearer nope", "Bearer gw_" + "x" * 43, "Bearer gw_ünïcödé_" + "x" * 30])
def test_a_401_leaves_no_record(gateway, auth):
    gateway.customer("someone@example.com")
    headers = {"Authorization": auth} if auth else {}
    raw = request("POST", "/v1/chat/completions", body(model="llama-3.1-70b", messages=MSG), headers)
    assert_openai_error(exchange(gateway.port, raw), 401, "invalid_api_key")
    assert gateway.count_usage() == 0


def test_refusals_on_postgres_are_written_too(start_gateway, mock_upstream, pg_url):
    """A NUL or a 300-character model name would fail PostgreSQL's insert, and with it the whole batch."""
    from tests.conftest import gateway_config

    gateway = start_gateway(gateway_config(mock_upstream.url, pg_url))
    cid, key = gateway.customer("pg-refused@example.com")
    for name in ("bad\u0000name", "y" * 300, "llama-3.1-70b"):
        raw = request("POST", "/v1/chat/completions", body(model=name, messages=MSG),
                      {"Authorization": f"Bearer {key}"})
        assert exchange(gateway.port, raw).status in (200, 404)
    records = gateway.usage(cid)
    assert sorted((r.status, r.model) for r in records) == [(200, "llama-3.1-70b"), (404, "badname"),
                                                             (404, "y" * 200)]
    assert gateway.balance(cid) == gateway.ledger_sum(cid) == 10_000_000 - sum(r.cost for r in records)
