"""Providers and models page: a provider and model added in the console are test-called and
then serve a customer through the API without a restart; the stored key is encrypted, sent
upstream, and never shown or logged; a viewer changes nothing; bad input is shown on the form."""

from __future__ import annotations

import logging

import openai
import pytest
from aiohttp import web
from sqlalchemy import text

from tests.conftest import gateway_config
from tests.console.conftest import make_operator
from tests.support.servers import ServerThread
from tests.support.waits import wait_until

SECRET = "sk-console-test-7f3a9c1e5b"


def fake_upstream(seen: list[str]) -> web.Application:
    """A chat upstream on 127.0.0.1 that records the Authorization header it got."""

    async def chat(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        body = await request.json()
        return web.json_response({
            "id": "c1", "object": "chat.completion", "created": 1, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "pong from fake"}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


@pytest.fixture
def upstream():
    seen: list[str] = []
    server = ServerThread(lambda: fake_upstream(seen)).start()
    server.seen = seen
    yield server
    server.stop()


def test_add_provider_and_model_test_call_and_serve_without_restart(gateway, console, upstream, monkeypatch,
                                                                     caplog, start_gateway, mock_upstream,
                                                                     sqlite_url):
    monkeypatch.setenv("AIGATEWAY_SECRET_KEY", "test-secret-key-for-aes-gcm-0123456789")
    caplog.set_level(logging.INFO)
    # A second replica on the same database: it learns of the change only by its periodic refresh.
    replica = start_gateway(gateway_config(mock_upstream.url, sqlite_url))
    _cid, key = gateway.customer("buyer@example.com")
    client = openai.OpenAI(api_key=key, base_url=replica.base_url, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="console-model", messages=[{"role": "user", "content": "hi"}])

    c = console()
    c.operator_login(make_operator(gateway, "admin@example.com"))
    r = c.form("/providers", "/providers", {"name": "fakeco", "base_url": upstream.url + "/v1",
                                            "api_key_env": "", "api_key": SECRET})
    assert r.status_code == 303, r.text
    r = c.form("/providers", "/models", {
        "name": "console-model", "type": "chat", "routes": "fakeco fake-chat-1 1 1",
        "context_length": "8192", "max_output_tokens": "512", "input_price": "2", "output_price": "4"})
    assert r.status_code == 303, r.text
    stored = gateway.sql("SELECT api_key_enc FROM catalog_providers WHERE name = 'fakeco'")[0][0]
    assert stored.startswith("v1:") and SECRET not in stored

    page = c.get("/providers")
    assert "console-model" in page.text and "stored secret" in page.text
    r = c.form("/providers", "/models/test", {"model": "console-model", "route": "fakeco/fake-chat-1"})
    assert r.status_code == 200
    assert 'data-testid="test-answer">pong from fake<' in r.text and "answered" in r.text
    assert upstream.seen[-1] == f"Bearer {SECRET}"  # the decrypted key went upstream

    # A customer request through the OTHER replica's API, no restart: served by the new provider.
    def served():
        try:
            return client.chat.completions.create(model="console-model", max_tokens=5,
                                                  messages=[{"role": "user", "content": "hi"}])
        except openai.NotFoundError:
            return None

    answer = wait_until(served, timeout=15, interval=0.2, what="the catalog serving console-model")
    assert answer.choices[0].message.content == "pong from fake" and answer.model == "console-model"
    # billed at the price set in the console: 5 in * 2 TMT/1M + 3 out * 4 TMT/1M = 22 units
    charges = wait_until(lambda: gateway.sql("SELECT amount FROM ledger_entries WHERE kind = 'charge' "
                                             "AND memo = 'console-model'"), what="the request charged")
    assert [a for (a,) in charges] == [-22]

    audit = gateway.sql("SELECT action, target, before, after FROM console_audit_log "
                        "WHERE action IN ('provider.save', 'model.save') ORDER BY id")
    assert [(a, t) for a, t, _b, _a in audit] == [("provider.save", "fakeco"), ("model.save", "console-model")]
    assert '"key":"stored secret"' in audit[0][3]
    for path in ["/providers", "/providers?provider=fakeco", "/audit", "/audit.csv"]:
        assert SECRET not in c.get(path).text, path
    assert SECRET not in caplog.text


def test_viewer_cannot_change_providers_or_models(gateway, console, upstream):
    viewer = console()
    viewer.operator_login(make_operator(gateway, "viewer@example.com", "viewer"))
    page = viewer.get("/providers")
    assert page.status_code == 200 and 'action="/providers"' not in page.text
    from tests.portal.conftest import csrf_of

    token = csrf_of(page.text)
    for path, data in [("/providers", {"name": "x", "base_url": upstream.url + "/v1"}),
                       ("/models", {"name": "m", "type": "chat", "routes": "mock mock-chat"}),
                       ("/models/test", {"model": "llama-3.1-70b", "route": "mock/mock-chat"})]:
        assert viewer.post(path, {"csrf": token, **data}).status_code == 403, path
    assert gateway.sql("SELECT count(*) FROM catalog_providers")[0][0] == 0
    assert gateway.sql("SELECT count(*) FROM catalog_models")[0][0] == 0
    assert upstream.seen == []


def test_invalid_forms_are_refused_on_the_page(gateway, console, monkeypatch):
    monkeypatch.delenv("AIGATEWAY_SECRET_KEY", raising=False)
    c = console()
    c.operator_login(make_operator(gateway, "admin@example.com"))
    r = c.form("/providers", "/providers", {"name": "nokey", "base_url": "ftp://x", "api_key_env": "",
                                            "api_key": SECRET})
    assert r.status_code == 400 and "base_url" in r.text and "AIGATEWAY_SECRET_KEY" in r.text
    assert SECRET not in r.text
    r = c.form("/providers", "/providers", {"name": "mock", "base_url": "http://127.0.0.1:1/v1"})
    assert r.status_code == 400 and "config file defines this provider" in r.text
    r = c.form("/providers", "/models", {"name": "llama-3.1-70b", "type": "chat", "routes": "ghost m 1 1",
                                         "context_length": "abc", "input_price": "-1", "output_price": "1"})
    assert r.status_code == 400
    for expected in ("config file defines this model", "Unknown provider: ghost", "Whole numbers", "not negative"):
        assert expected in r.text, expected
    assert gateway.sql("SELECT count(*) FROM catalog_models")[0][0] == 0


def test_config_file_wins_over_a_database_row_of_the_same_name(gateway, upstream):
    """A row written behind the console's back (or before the config gained that name) is ignored;
    a malformed row is skipped without stopping the refresh; a deleted row leaves the catalog."""
    def write(query: str, **params) -> None:
        async def run():
            async with gateway.engine.begin() as conn:
                await conn.execute(text(query), params)

        gateway.run(run())

    write("INSERT INTO catalog_providers (name, base_url, updated_at) VALUES "
                "('mock', 'http://127.0.0.1:1/v1', CURRENT_TIMESTAMP), "
                "('other', :u, CURRENT_TIMESTAMP)", u=upstream.url + "/v1")
    write("INSERT INTO catalog_models (name, type, routes, updated_at) VALUES "
                "('llama-3.1-70b', 'chat', '[{\"provider\": \"other\", \"model\": \"x\"}]', CURRENT_TIMESTAMP), "
                "('broken', 'chat', 'not json', CURRENT_TIMESTAMP), "
                "('db-model', 'chat', '[{\"provider\": \"mock\", \"model\": \"y\", \"priority\": 2}]', "
                "CURRENT_TIMESTAMP)")
    catalog = gateway.gateway.catalog
    gateway.run(catalog.refresh(gateway.engine))
    assert [r.key for r in catalog.get("llama-3.1-70b").routes] == ["mock/mock-chat"]
    assert catalog.get("broken") is None
    db_route = catalog.get("db-model").routes[0]
    # the route names the config's "mock" provider, not the clashing database row
    assert db_route.provider.base_url != "http://127.0.0.1:1/v1" and db_route.priority == 2
    write("DELETE FROM catalog_models WHERE name = 'db-model'")
    gateway.run(catalog.refresh(gateway.engine))
    assert catalog.get("db-model") is None and catalog.get("llama-3.1-70b") is not None
