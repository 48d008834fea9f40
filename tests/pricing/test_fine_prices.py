"""Fine prices end to end: cache reads/writes, reasoning, tiers, request and image fees.

A fake upstream in this module reports whatever usage the request carries in `x_usage`
(OpenAI style through one provider, Anthropic style through another). Each charge is
checked to the unit against the README's formula, computed here independently with
exact decimals; on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC
from decimal import ROUND_CEILING, Decimal

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from aigateway.catalog import Price, Tier
from aigateway.config import Config
from aigateway.money import to_units
from aigateway.pricing import sources
from aigateway.usage import Counts, normalise
from tests.conftest import gateway_config
from tests.pricing.conftest import LL_PATH, models_of, pricing_config
from tests.support.servers import ServerThread

# --- the README's formula, written out on its own --------------------------------------------

FINE = {  # TMT; per 1M tokens except request (per request) and image (per image)
    "input": "2", "output": "8", "cached_input": "0.5", "cache_write": "2.5", "cache_write_long": "4",
    "reasoning": "10", "request": "0.001", "image": "0.002",
    "tier_above": 2000, "tier_input": "4", "tier_output": "12", "tier_cached_input": "1",
}


def expected_units(p: dict, *, input, output, cached=0, written=0, written_long=0, reasoning=0, images=0,
                   requests=1) -> int:
    """cost = ceil(sum of every term) in micro-TMT; the tier is chosen on the FULL input."""
    tier = input > p["tier_above"]
    inp = Decimal(p["tier_input"] if tier else p["input"])
    out = Decimal(p["tier_output"] if tier else p["output"])
    cache = Decimal(p["tier_cached_input"] if tier else p["cached_input"])
    tmt = (Decimal(input - cached - written - written_long) * inp + cached * cache
           + written * Decimal(p["cache_write"]) + written_long * Decimal(p["cache_write_long"])
           + (output - reasoning) * out + reasoning * Decimal(p["reasoning"])) / 1_000_000
    tmt += images * Decimal(p["image"]) + requests * Decimal(p["request"])
    return int((tmt * 1_000_000).to_integral_value(rounding=ROUND_CEILING))


# --- a fake upstream that reports the usage it is told to -------------------------------------

async def _chat(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    usage = body.get("x_usage")
    if not body.get("stream"):
        answer = {"id": "fake", "object": "chat.completion", "created": 1, "model": body["model"],
                  "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                               "finish_reason": "stop"}]}
        if usage is not None:
            answer["usage"] = usage
        return web.json_response(answer)
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    chunk = {"id": "fake", "object": "chat.completion.chunk", "created": 1, "model": body["model"],
             "choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": None}]}
    await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    final = {**chunk, "choices": [], "usage": usage}
    await resp.write(b"data: " + json.dumps(final).encode() + b"\n\ndata: [DONE]\n\n")
    return resp


@pytest.fixture(scope="module")
def fake_upstream():
    def app() -> web.Application:
        a = web.Application()
        a.router.add_post("/v1/chat/completions", _chat)
        return a

    server = ServerThread(app).start()
    yield server
    server.stop()


def fine_config(upstream_url: str, db_url: str) -> Config:
    data = gateway_config(upstream_url, db_url).model_dump()
    data["providers"] = {"oai": {"base_url": upstream_url + "/v1"},
                         "anth": {"base_url": upstream_url + "/v1", "usage_style": "anthropic"}}
    prices = {"input_price": FINE["input"], "output_price": FINE["output"],
              "cached_input_price": FINE["cached_input"], "cache_write_price": FINE["cache_write"],
              "cache_write_long_price": FINE["cache_write_long"], "reasoning_price": FINE["reasoning"],
              "request_price": FINE["request"], "image_price": FINE["image"],
              "tiers": [{"above": FINE["tier_above"], "input_price": FINE["tier_input"],
                         "output_price": FINE["tier_output"], "cached_input_price": FINE["tier_cached_input"]}],
              "context_length": 100_000, "max_output_tokens": 1000}
    data["models"] = [
        {"name": "fine", "type": "chat", **prices, "routes": [{"provider": "oai", "model": "up"}]},
        {"name": "fine-anth", "type": "chat", **prices, "routes": [{"provider": "anth", "model": "up"}]},
    ]
    return Config.model_validate(data)


def post(gw, key, body: dict) -> bytes:
    req = urllib.request.Request(gw.base_url + "/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
        return resp.read()


CASES = [
    # (name, model, usage reported, message text, images, stream, expected counts)
    ("openai cached + reasoning", "fine",
     {"prompt_tokens": 1200, "completion_tokens": 300, "prompt_tokens_details": {"cached_tokens": 1000},
      "completion_tokens_details": {"reasoning_tokens": 100}}, "hi", 0, False,
     dict(input=1200, output=300, cached=1000, reasoning=100)),
    ("openai cached, streamed", "fine",
     {"prompt_tokens": 1200, "completion_tokens": 300, "prompt_tokens_details": {"cached_tokens": 1000}},
     "hi", 0, True, dict(input=1200, output=300, cached=1000)),
    ("anthropic read + writes", "fine-anth",
     {"input_tokens": 200, "output_tokens": 50, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 300,
      "cache_creation": {"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 100}}, "hi", 0, False,
     dict(input=1500, output=50, cached=1000, written=200, written_long=100)),
    # 500 uncached + 2,000 cached: the full input (2,500) is above the tier, so the tier applies
    ("tier on the full input", "fine",
     {"prompt_tokens": 2500, "completion_tokens": 10, "prompt_tokens_details": {"cached_tokens": 2000}},
     "x" * 3000, 0, False, dict(input=2500, output=10, cached=2000)),
    ("just below the tier", "fine", {"prompt_tokens": 2000, "completion_tokens": 10}, "x" * 3000, 0, False,
     dict(input=2000, output=10)),
    ("no breakdown, one image", "fine", {"prompt_tokens": 100, "completion_tokens": 20}, "look", 1, False,
     dict(input=100, output=20, images=1)),
]


def test_each_charge_matches_the_formula(start_gateway, fake_upstream, db_url):
    gw = start_gateway(fine_config(fake_upstream.url, db_url))
    cid, key = gw.customer("fine@example.com", credit="10")
    total = 0
    for name, model, usage, text, images, stream, counts in CASES:
        content = [{"type": "text", "text": text}] + [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}] * images
        post(gw, key, {"model": model, "messages": [{"role": "user", "content": content}], "x_usage": usage,
                       "stream": stream})
        gw.flush()
        record = gw.sql("SELECT * FROM usage_records WHERE customer_id = :c ORDER BY created_at DESC, id DESC "
                        "LIMIT 1", c=cid)[0]
        want = expected_units(FINE, **counts)
        assert record.cost == want, name
        assert not record.capped, name
        assert (record.input_tokens, record.output_tokens, record.cached_tokens, record.cache_write_tokens,
                record.cache_write_long_tokens, record.reasoning_tokens, record.images, record.request_fees) == (
            counts["input"], counts["output"], counts.get("cached", 0), counts.get("written", 0),
            counts.get("written_long", 0), counts.get("reasoning", 0), images, 1), name
        total += want
    assert gw.balance(cid) == 10_000_000 - total
    assert gw.ledger_sum(cid) == gw.balance(cid)


def test_price_source_cache_and_tier_fields_reach_models_and_a_x10_jump_is_held(
        start_gateway, mock_upstream, sqlite_url, source):
    or_chat = source.or_model("vendor/chat")["pricing"]
    or_chat.update(input_cache_read="0.00000125", input_cache_write="0.000003", internal_reasoning="0.00002",
                   request="0.0001", image="0.001")
    ll = source.docs[LL_PATH]["ll-chat-up"]
    ll.update(cache_read_input_token_cost=7.5e-08, cache_creation_input_token_cost=1.875e-07,
              input_cost_per_token_above_200k_tokens=3e-07, output_cost_per_token_above_200k_tokens=1.2e-06,
              output_cost_per_reasoning_token=9e-07)
    gw = start_gateway(pricing_config(mock_upstream.url, sqlite_url, source.url))
    _, key = gw.customer("finesrc@example.com")
    gw.wait_for(lambda: (models_of(gw, key).get("ll-chat") or {}).get("pricing", {}).get("tiers"), timeout=10)
    # USD x 1e6 tokens x 3.50 TMT/USD x 1.20 markup (per request / image: USD x 3.50 x 1.20)
    orp = models_of(gw, key)["or-chat"]["pricing"]
    assert (orp["cached_input"], orp["cache_write"], orp["reasoning"], orp["request"], orp["image"]) == (
        "5.250000", "12.600000", "84.000000", "0.000420", "0.004200")
    llp = models_of(gw, key)["ll-chat"]["pricing"]
    assert (llp["cached_input"], llp["cache_write"], llp["reasoning"]) == ("0.315000", "0.787500", "3.780000")
    assert llp["tiers"] == [{"above_tokens": 200_000, "input": "1.260000", "output": "5.040000",
                             "cached_input": None}]

    # a x10 jump in one field only (the cache read price) is held; the price in force stays
    or_chat["input_cache_read"] = "0.0000125"

    def held():
        return gw.sql("SELECT * FROM price_versions WHERE model = 'or-chat' AND status = 'held'")

    gw.wait_for(held, timeout=10)
    assert held()[0].cached_input_price == 52_500_000
    assert models_of(gw, key)["or-chat"]["pricing"]["cached_input"] == "5.250000"


# --- units: normalisation, source parsing, the hold ceiling ---------------------------------------

def test_usage_is_normalised_in_both_styles():
    openai = {"prompt_tokens": 1200, "completion_tokens": 300, "prompt_tokens_details": {"cached_tokens": 1000},
              "completion_tokens_details": {"reasoning_tokens": 100}}
    assert normalise(openai) == Counts(1200, 300, cached=1000, reasoning=100)
    anth = {"input_tokens": 200, "output_tokens": 50, "cache_read_input_tokens": 1000,
            "cache_creation_input_tokens": 300}
    assert normalise(anth, "anthropic") == Counts(1500, 50, cached=1000, cache_write=300)
    assert normalise({"prompt_tokens": 10, "completion_tokens": 2}) == Counts(10, 2)
    # a part larger than its whole is cut to it
    assert normalise({"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 99}}).cached == 10
    assert normalise({"completion_tokens": 2}) is None and normalise(None) is None


def test_litellm_tiers_and_zero_fields_parse():
    parsed = sources.parse_litellm({"m": {"input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05,
                                          "input_cost_per_token_above_200k_tokens": 6e-06,
                                          "cache_read_input_token_cost": 0}})
    quote = parsed.quotes["m"]
    assert quote.cached_input is None  # zero: not priced apart
    assert [(t.above, str(t.input), str(t.output)) for t in quote.tiers] == [(200_000, "0.000006", "0.000015")]


_units = st.integers(0, 50_000_000)
_maybe = st.none() | _units
_tiers = st.lists(st.builds(Tier, st.integers(1, 300_000), _units, _units, _maybe), max_size=3)
_prices = st.builds(Price, st.just(1), _units, _units, st.just(False), _maybe, _maybe, _maybe, _maybe,
                    st.none() | st.integers(0, 5_000_000), st.none() | st.integers(0, 5_000_000),
                    _tiers.map(lambda ts: tuple(sorted(ts, key=lambda t: t.above))))


@settings(max_examples=400, deadline=None)
@given(price=_prices, bound=st.integers(0, 400_000), cap=st.integers(0, 100_000), image_bound=st.integers(0, 5),
       data=st.data())
def test_cost_never_exceeds_the_hold(price, bound, cap, image_bound, data):
    """Every combination of counts an honest upstream can report (within the bounds) costs <= the hold."""
    full = data.draw(st.integers(0, bound))
    cached = data.draw(st.integers(0, full))
    written = data.draw(st.integers(0, full - cached))
    written_long = data.draw(st.integers(0, full - cached - written))
    output = data.draw(st.integers(0, cap))
    counts = Counts(full, output, cached, written, written_long, data.draw(st.integers(0, output)),
                    images=data.draw(st.integers(0, image_bound)), requests=data.draw(st.integers(0, 1)))
    assert price.cost(counts) <= price.ceiling(bound, cap, image_bound)


def test_a_stored_price_round_trips(start_gateway, fake_upstream, sqlite_url):
    gw = start_gateway(fine_config(fake_upstream.url, sqlite_url))
    [row] = gw.sql("SELECT * FROM price_versions WHERE model = 'fine'")
    assert row.cached_input_price == 500_000 and row.request_price == 1_000
    assert gw.gateway.catalog.get("fine").price.tiers == (Tier(2000, 4_000_000, 12_000_000, 1_000_000),)


def test_portal_shows_the_prices_and_each_requests_breakdown(start_gateway, fake_upstream, sqlite_url):
    from datetime import datetime

    from tests.portal.conftest import PortalClient, wait_usage

    gw = start_gateway(fine_config(fake_upstream.url, sqlite_url))
    v = PortalClient(gw)
    cid = v.signup("finepage@example.com")
    gw.credit(cid, "5", "test:fine")
    _, key = v.create_key("fine")
    name, model, usage, text, images, stream, counts = CASES[0]
    post(gw, key, {"model": model, "messages": [{"role": "user", "content": text}], "x_usage": usage})
    wait_usage(gw, cid, 1)
    day = v.get(f"/transactions/{datetime.now(UTC).date().isoformat()}").text
    assert "1,200" in day and "of which 1,000 cached" in day and "of which 100 reasoning" in day
    assert "request fee: 1" in day
    page = v.get("/models").text
    for shown in ("cached input 0.5000 TMT", "cache write 2.5000 TMT", "long cache write 4.0000 TMT",
                  "reasoning 10.0000 TMT", "above 2,000 tokens: 4.0000 / 12.0000 TMT", "TMT per request",
                  "TMT per image"):
        assert shown in page, shown
    v.close()


def test_receipt_breakdown_text():
    from aigateway.usage import breakdown_text

    assert breakdown_text(Counts(1200, 300, cached=1000)) == (
        "1,200 input of which 1,000 cached, 300 output, 1 request fee")
    assert breakdown_text(Counts(10, 5, reasoning=2, images=2, requests=0)) == (
        "10 input, 5 output of which 2 reasoning, 2 images")


def test_admin_price_set_takes_every_field(tmp_path, source):
    import sqlite3

    from click.testing import CliRunner

    from aigateway.cli import main
    from tests.pricing.test_cli import write_config

    config = write_config(tmp_path, source.url)
    runner = CliRunner()
    args = ["--config", config, "admin", "price", "set", "hand", "--input", "3", "--output", "15",
            "--cached-input", "0.3", "--cache-write", "3.75", "--cache-write-long", "6", "--reasoning", "20",
            "--request", "0.001", "--image", "0.004", "--tier", "200000:6:22.5:0.6"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0 and "version" in result.output, result.output
    again = runner.invoke(main, args)
    assert "nothing changed" in again.output  # every field compared
    bad = runner.invoke(main, args[:-1] + ["200000:6"])
    assert bad.exit_code == 1 and "ABOVE:INPUT:OUTPUT" in bad.output
    with sqlite3.connect(tmp_path / "cli.db") as db:
        row = db.execute("SELECT cached_input_price, cache_write_price, cache_write_long_price, reasoning_price, "
                         "request_price, image_price, tiers FROM price_versions WHERE model = 'hand'").fetchone()
    assert row[:6] == (300_000, 3_750_000, 6_000_000, 20_000_000, 1_000, 4_000)
    assert json.loads(row[6]) == [{"above": 200_000, "input": 6_000_000, "output": 22_500_000,
                                   "cached_input": 600_000}]


@pytest.mark.parametrize("field", ["input_price", "output_price", "cached_input_price", "cache_write_price",
                                   "cache_write_long_price", "reasoning_price", "request_price", "image_price",
                                   "tier"])
def test_a_x10_jump_in_any_field_is_a_big_change(field):
    from dataclasses import replace
    from decimal import Decimal

    from aigateway.pricing.rules import is_big_price_change

    old = Price(1, 1_000, 4_000, False, 100, 1_250, 2_000, 5_000, 10, 20, (Tier(1000, 2_000, 8_000, 200),))
    if field == "tier":
        new = replace(old, tiers=(Tier(1000, 20_000, 8_000, 200),))
    else:
        new = replace(old, **{field: getattr(old, field) * 10})
    assert is_big_price_change(old, new, Decimal(3))
    assert not is_big_price_change(old, replace(old, version_id=2), Decimal(3))


def test_the_receipt_gives_the_breakdown_it_was_billed_for(start_gateway, fake_upstream, sqlite_url):
    gw = start_gateway(fine_config(fake_upstream.url, sqlite_url))
    cid, key = gw.customer("fine-receipt@example.com", credit="10")
    name, model, usage, text, images, stream, counts = CASES[0]  # OpenAI style: cached + reasoning
    post(gw, key, {"model": model, "messages": [{"role": "user", "content": text}], "x_usage": usage})
    gw.flush()
    [record] = gw.sql("SELECT id, cost FROM usage_records WHERE customer_id = :c", c=cid)
    req = urllib.request.Request(f"{gw.base_url}/generation?id={record.id}", headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        data = json.loads(resp.read())["data"]
    assert (data["tokens_prompt"], data["tokens_cached"], data["tokens_completion"], data["tokens_reasoning"],
            data["request_fees"]) == (1200, 1000, 300, 100, 1)
    assert data["breakdown"] == "1,200 input of which 1,000 cached, 300 output of which 100 reasoning, 1 request fee"
    assert to_units(data["cost"]) == record.cost == expected_units(FINE, **counts)


@settings(max_examples=300, deadline=None)
@given(input_price=_units, output_price=_units, bound=st.integers(0, 400_000), cap=st.integers(0, 100_000),
       data=st.data())
def test_the_two_price_shortcut_bills_as_the_full_formula(input_price, output_price, bound, cap, data):
    """A price with one input and one output rate takes a shortcut (`Price._plain`); the same rates
    spelled out in every optional field go the full way. Both must bill and hold the same."""
    plain = Price(1, input_price, output_price)
    spelled = Price(1, input_price, output_price, False, input_price, input_price, input_price, output_price, 0, 0)
    assert plain._plain and not spelled._plain
    full = data.draw(st.integers(0, bound))
    cached = data.draw(st.integers(0, full))
    written = data.draw(st.integers(0, full - cached))
    output = data.draw(st.integers(0, cap))
    counts = Counts(full, output, cached, written, data.draw(st.integers(0, full - cached - written)),
                    data.draw(st.integers(0, output)), images=data.draw(st.integers(0, 3)),
                    requests=data.draw(st.integers(0, 1)))
    assert plain.cost(counts) == spelled.cost(counts)
    assert plain.ceiling(bound, cap, 3) == spelled.ceiling(bound, cap, 3)
    assert plain.cost(counts) <= plain.ceiling(bound, cap, 3)
