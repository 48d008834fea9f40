"""A console model follows a price source with its own markup: validated on the form, priced by
the scheduled fetch, served and re-priced on every replica without a restart, audited."""

from __future__ import annotations

import json
import urllib.request

import openai

from aigateway.config import Config
from tests.conftest import gateway_config
from tests.console.conftest import ConsoleClient, make_operator, serves
from tests.pricing.conftest import OR_PATH, RATE, FakeSource

ROUTES = "mock mock-chat 1 1"


def _config(upstream_url: str, db_url: str, source_url: str, *, fetch: bool) -> Config:
    data = gateway_config(upstream_url, db_url).model_dump()
    data["pricing"] = {"fetch_interval": 3600, "retry_interval": 0.3, "markup": "0.20", "fx": {"USD": RATE},
                       "fetch": fetch, "admin_token_env": "CONSOLE_TEST_PRICING_TOKEN",
                       "sources": {"feed": {"format": "openrouter", "url": source_url + OR_PATH, "timeout": 2}}}
    return Config.model_validate(data)


def _model_form(**extra) -> dict:
    return {"name": "followed", "type": "chat", "routes": ROUTES, "context_length": "", "max_output_tokens": "",
            "input_price": "", "output_price": "", "price_source": "feed", "price_source_model": "vendor/chat",
            "markup": "", **extra}


def test_console_model_follows_a_source_with_its_markup_on_every_replica(start_gateway, mock_upstream, db_url,
                                                                          monkeypatch):
    """Two replicas on one database (SQLite, then PostgreSQL); only the first fetches."""
    monkeypatch.setenv("CONSOLE_TEST_PRICING_TOKEN", "pricing-token-for-the-test")
    source = FakeSource()
    try:
        primary = start_gateway(_config(mock_upstream.url, db_url, source.url, fetch=True))
        replica = start_gateway(_config(mock_upstream.url, db_url, source.url, fetch=False))
        op = make_operator(primary, "prices@example.com")
        c = ConsoleClient(primary)
        assert c.operator_login(op).status_code == 303
        # validation: unknown source, both a hand price and a source, a silly markup, markup without source
        r = c.form("/providers", "/models", _model_form(price_source="nope"))
        assert r.status_code == 400 and "<li>price_source:" in r.text and "feed" in r.text
        r = c.form("/providers", "/models", _model_form(input_price="1", output_price="2", markup="-150%"))
        assert r.status_code == 400 and "<li>price:" in r.text and "<li>markup:" in r.text
        r = c.form("/providers", "/models", _model_form(price_source="", markup="0.1"))
        assert r.status_code == 400 and "<li>price_source:" in r.text
        assert primary.sql("SELECT count(*) FROM catalog_models")[0][0] == 0
        # follow the source with +10 %: 2.5 USD/1M x 3.50 x 1.10 = 9.625 TMT; 10 USD x 3.50 x 1.10 = 38.5
        r = c.form("/providers", "/models", _model_form(markup="10%"))
        assert r.status_code == 303 and r.headers["Location"] == "/providers?m=follows"
        row = primary.sql("SELECT price_source, price_source_model, markup FROM catalog_models")[0]
        assert tuple(row) == ("feed", "vendor/chat", "0.1")

        def price() -> tuple | None:
            rows = primary.sql("SELECT v.input_price, v.output_price, v.source FROM model_prices p "
                               "JOIN price_versions v ON v.id = p.price_version_id WHERE p.model = 'followed'")
            return tuple(rows[0]) if rows else None

        primary.wait_for(lambda: price() == (9_625_000, 38_500_000, "feed"), timeout=10)
        _cid, key = primary.customer("buyer@example.com")
        client = openai.OpenAI(api_key=key, base_url=replica.base_url, max_retries=0)
        # the replica never fetched: it learned the model and its price from the database
        replica.wait_for(lambda: serves(client, "followed"), timeout=10)
        req = urllib.request.Request(replica.base_url.removesuffix("/v1") + "/admin/pricing",
                                     headers={"Authorization": "Bearer pricing-token-for-the-test"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            listed = {m["model"]: m for m in json.load(resp)["models"]}
        assert listed["followed"]["follows"] == "feed" and listed["followed"]["input"] == "9.625000"
        page = c.get("/providers").text
        assert 'data-testid="follows-followed">follows feed (vendor/chat), markup 0.1<' in page
        # a new markup (0.3 = +30 %) is applied by the next fetch, asked for by the save
        r = c.form("/providers?model=followed", "/models", _model_form(markup="0.3"))
        assert r.status_code == 303
        primary.wait_for(lambda: price() == (11_375_000, 45_500_000, "feed"), timeout=10)
        rows = primary.sql("SELECT actor, before, after FROM console_audit_log WHERE action = 'model.save' "
                           "ORDER BY id")
        assert len(rows) == 2 and rows[0].actor == "operator:prices@example.com"
        assert '"price_source":"feed"' in rows[0].after and '"markup":"0.1"' in rows[0].after
        assert rows[1].before == '{"markup":"0.1"}' and rows[1].after == '{"markup":"0.3"}'
        # back to a hand-set price: the source no longer moves it
        r = c.form("/providers?model=followed", "/models", _model_form(price_source="", price_source_model="",
                                                                        input_price="1", output_price="2"))
        assert r.status_code == 303
        assert price() == (1_000_000, 2_000_000, "console")
    finally:
        source.stop()
