"""Prices follow the fake sources on schedule; the guardrails hold; a request keeps its starting price."""

import json
import urllib.error
import urllib.request

import openai
import pytest
from sqlalchemy import select

from aigateway.pricing.service import confirm_version, reject_version
from aigateway.pricing.tables import price_fetches, price_versions
from tests.pricing.conftest import LL_PATH, OR_PATH, input_price, models_of, pricing_config


@pytest.fixture
def priced(start_gateway, mock_upstream, sqlite_url, source, monkeypatch):
    monkeypatch.setenv("AIGW_TEST_PRICING_TOKEN", "op-secret")
    gw = start_gateway(pricing_config(mock_upstream.url, sqlite_url, source.url,
                                      admin_token_env="AIGW_TEST_PRICING_TOKEN"))
    cid, key = gw.customer("pricing@example.com", credit="100")
    gw.wait_for(lambda: input_price(gw, key, "or-chat") and input_price(gw, key, "ll-chat"), timeout=10)
    return gw, cid, key


def last_fetch(gw, source_name):
    async def read():
        async with gw.engine.connect() as conn:
            return (await conn.execute(select(price_fetches).where(price_fetches.c.source == source_name,
                                                                    price_fetches.c.ok.is_not(None))
                                       .order_by(price_fetches.c.id.desc()).limit(1))).first()
    return gw.run(read())


def versions(gw, model):
    async def read():
        async with gw.engine.connect() as conn:
            return (await conn.execute(select(price_versions).where(price_versions.c.model == model)
                                       .order_by(price_versions.c.id))).all()
    return gw.run(read())


def wait_fetches(gw, source, n=2):
    """Wait for `n` more completed fetches of the source (the 2nd surely started after the caller's change)."""
    start = last_fetch(gw, source).id

    async def count():
        async with gw.engine.connect() as conn:
            return len((await conn.execute(select(price_fetches.c.id).where(
                price_fetches.c.source == source, price_fetches.c.ok.is_not(None),
                price_fetches.c.id > start))).all())

    gw.wait_for(lambda: gw.run(count()) >= n, timeout=10)
    return last_fetch(gw, source)


def test_prices_follow_both_formats_on_schedule(priced, source):
    gw, cid, key = priced
    models = models_of(gw, key)
    # USD/token x 1e6 x 3.50 TMT/USD x 1.20 markup, in TMT per 1M tokens
    assert {k: models["or-chat"]["pricing"][k] for k in ("currency", "unit", "input", "output", "free")} == {
        "currency": "TMT", "unit": "1M tokens", "input": "10.500000", "output": "42.000000", "free": False}
    # "request": "0" and "image": "0" mean no fee, not a priced-apart zero
    assert models["or-chat"]["pricing"]["request"] is None and models["or-chat"]["pricing"]["image"] is None
    assert models["ll-chat"]["pricing"]["input"] == "0.630000" and models["ll-chat"]["pricing"]["output"] == "2.520000"
    assert models["ll-embed"]["pricing"]["input"] == "0.084000" and models["ll-embed"]["pricing"]["output"] is None
    assert models["mock-long"]["pricing"]["input"] == "0.420000"
    # limits come from the source unless the config sets them
    assert (models["or-chat"]["context_length"], models["or-chat"]["max_output_tokens"]) == (128000, 16384)
    assert (models["ll-chat"]["context_length"], models["ll-chat"]["max_output_tokens"]) == (131072, 8192)
    assert (models["mock-long"]["context_length"], models["mock-long"]["max_output_tokens"]) == (8192, 1024)
    assert models["or-chat"]["prices_updated_at"]
    # a variable ("-1") price is never used: the model stays unpriced, hence not served
    assert "or-variable" not in models
    assert "or-variable" in json.loads(last_fetch(gw, "or").detail)
    # the hand-priced models of the config are untouched
    assert models["llama-3.1-70b"]["pricing"]["input"] == "0.350000"

    # the upstream price moves (within the x3 guardrail): the gateway follows on its own
    source.or_model("vendor/chat")["pricing"]["prompt"] = "0.000005"
    gw.wait_for(lambda: input_price(gw, key, "or-chat") == "21.000000", timeout=10)
    applied = [v for v in versions(gw, "or-chat") if v.status == "applied"]
    assert [(v.input_price, v.source) for v in applied] == [(10_500_000, "or"), (21_000_000, "or")]

    # a request is charged at the fetched price
    client = openai.OpenAI(api_key=key, base_url=gw.base_url)
    reply = client.chat.completions.create(model="or-chat", messages=[{"role": "user", "content": "hi"}])
    [record] = gw.usage(cid)
    u = reply.usage
    assert record.price_version_id == applied[-1].id
    assert record.cost == -(-(u.prompt_tokens * 21_000_000 + u.completion_tokens * 42_000_000) // 1_000_000)


def test_guardrails_keep_last_good_prices(priced, source):
    gw, cid, key = priced
    before = models_of(gw, key)

    # garbage: reported, prices kept
    source.raw[OR_PATH] = (200, b"<html>maintenance</html>")
    bad = wait_fetches(gw, "or")
    assert bad.ok is False and "not valid JSON" in bad.error
    # an HTTP error, then a timeout (the source answers after its 1 s timeout)
    source.raw[OR_PATH] = (503, b"{}")
    assert "HTTP 503" in wait_fetches(gw, "or").error
    del source.raw[OR_PATH]
    source.delay[LL_PATH] = 3
    slow = wait_fetches(gw, "ll")
    assert slow.ok is False and "timed out" in slow.error
    del source.delay[LL_PATH]
    after = models_of(gw, key)
    for name in ("or-chat", "ll-chat", "ll-embed", "mock-long"):
        assert after[name]["pricing"] == before[name]["pricing"]
        assert after[name]["prices_updated_at"] == before[name]["prices_updated_at"]

    # a model that disappears from its source: reported, its price kept
    source.docs[LL_PATH].pop("ll-chat-up")
    gone = wait_fetches(gw, "ll")
    assert gone.ok is True and gone.problems == 1
    assert json.loads(gone.detail)["ll-chat"]["outcome"] == "missing"
    assert models_of(gw, key)["ll-chat"]["pricing"] == before["ll-chat"]["pricing"]

    # a jump beyond x3 is held, not applied
    source.or_model("vendor/chat")["pricing"]["prompt"] = "0.000025"  # x10
    gw.wait_for(lambda: any(v.status == "held" for v in versions(gw, "or-chat")), timeout=10)
    wait_fetches(gw, "or")  # later fetches do not pile up more held versions
    held = [v for v in versions(gw, "or-chat") if v.status == "held"]
    assert len(held) == 1 and held[0].input_price == 105_000_000
    assert input_price(gw, key, "or-chat") == "10.500000"

    # the admin view shows it to the operator
    req = urllib.request.Request(gw.url + "/admin/pricing", headers={"Authorization": "Bearer op-secret"})
    view = json.load(urllib.request.urlopen(req, timeout=5))
    assert [h["version_id"] for h in view["held"]] == [held[0].id]
    assert view["fx"]["USD"]["rate"] == "3.50" and view["sources"]["ll"]["last_ok_at"]
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(gw.url + "/admin/pricing", timeout=5)
    assert denied.value.code == 401
    ask = urllib.request.Request(gw.url + "/admin/pricing/fetch", method="POST",
                                 headers={"Authorization": "Bearer op-secret"})
    assert urllib.request.urlopen(ask, timeout=5).status == 202

    # the operator rejects it: the same price is not proposed again
    async def decide(fn, version_id):
        async with gw.engine.begin() as conn:
            return await fn(conn, version_id)

    gw.run(decide(reject_version, held[0].id))
    wait_fetches(gw, "or")
    assert [v.status for v in versions(gw, "or-chat")] == ["applied", "rejected"]

    # a different big jump is held again; the operator confirms it and it is in force at once
    source.or_model("vendor/chat")["pricing"]["prompt"] = "0.00003"
    gw.wait_for(lambda: any(v.status == "held" for v in versions(gw, "or-chat")), timeout=10)
    new = [v for v in versions(gw, "or-chat") if v.status == "held"][0]
    gw.run(decide(confirm_version, new.id))
    gw.run(gw.gateway.catalog.refresh(gw.engine))
    assert input_price(gw, key, "or-chat") == "126.000000"
    wait_fetches(gw, "or")
    assert [v.status for v in versions(gw, "or-chat")] == ["applied", "rejected", "applied"]


def test_request_is_charged_at_the_price_in_force_when_it_started(priced, source):
    gw, cid, key = priced
    old = gw.gateway.catalog.get("mock-long").price
    assert (old.input_price, old.output_price) == (420_000, 1_680_000)
    client = openai.OpenAI(api_key=key, base_url=gw.base_url)
    stream = client.chat.completions.create(model="mock-long", messages=[{"role": "user", "content": "tell"}],
                                            stream=True, stream_options={"include_usage": True})
    chunks = [next(stream)]

    # the upstream price doubles while the reply streams; the fetcher applies it
    source.or_model("vendor/long")["pricing"].update(prompt="0.0000002", completion="0.0000008")
    gw.wait_for(lambda: gw.gateway.catalog.get("mock-long").price.version_id != old.version_id, timeout=10)
    new = gw.gateway.catalog.get("mock-long").price
    assert (new.input_price, new.output_price) == (840_000, 3_360_000)
    assert gw.usage(cid) == []  # the streamed request is still running

    chunks += list(stream)
    usage = chunks[-1].usage
    assert usage.completion_tokens > 200
    [record] = gw.usage(cid)
    assert record.price_version_id == old.version_id
    assert record.cost == -(-(usage.prompt_tokens * 420_000 + usage.completion_tokens * 1_680_000) // 1_000_000)
    assert gw.balance(cid) == 100_000_000 - record.cost

    # the next request is charged at the new version
    reply = client.chat.completions.create(model="mock-long", messages=[{"role": "user", "content": "again"}],
                                           max_tokens=5)
    second = [u for u in gw.usage(cid) if u.id != record.id][0]
    assert second.price_version_id == new.version_id
    u = reply.usage
    assert second.cost == -(-(u.prompt_tokens * 840_000 + u.completion_tokens * 3_360_000) // 1_000_000)
