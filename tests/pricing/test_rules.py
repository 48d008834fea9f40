"""Parsing both source formats exactly, the rounding rule, the guardrail and the [pricing] checks."""

import json
from decimal import Decimal

import pytest

from aigateway.config import Config
from aigateway.pricing.rules import is_big_change, tmt_price_units
from aigateway.pricing.settings import PricingConfigError, load_settings
from aigateway.pricing.sources import SourceError, parse
from tests.pricing.conftest import LITELLM_DOC, OPENROUTER_DOC


def test_openrouter_format_is_parsed_as_exact_decimals():
    parsed = parse("openrouter", json.dumps(OPENROUTER_DOC).encode())
    chat = parsed.quotes["vendor/chat"]
    assert chat.input == Decimal("0.0000025") and chat.output == Decimal("0.00001")
    assert (chat.context_length, chat.max_output_tokens) == (128000, 16384)
    assert parsed.quotes["vendor/variable"].input is None  # "-1": variable, never used as a price
    assert parsed.quotes["vendor/free"].input == 0


def test_litellm_format_skips_sample_spec_and_non_token_prices():
    parsed = parse("litellm", json.dumps(LITELLM_DOC).encode())
    assert set(parsed.quotes) == {"ll-chat-up", "ll-embed-up"}
    q = parsed.quotes["ll-chat-up"]
    # 1.5e-07 in the JSON text becomes exactly 0.00000015, not the nearest binary float
    assert q.input == Decimal("0.00000015") and q.output == Decimal("6E-7")
    assert (q.context_length, q.max_output_tokens, q.mode) == (131072, 8192, "chat")


def test_a_float_prone_number_stays_exact():
    raw = b'{"m": {"input_cost_per_token": 0.1e-6, "output_cost_per_token": 3.3e-07}}'
    q = parse("litellm", raw).quotes["m"]
    assert q.input == Decimal("1E-7") and q.output == Decimal("3.3E-7")
    assert tmt_price_units(q.output, Decimal("3.50"), Decimal("0")) == 1_155_000  # 0.33 x 3.5 = 1.155 TMT


@pytest.mark.parametrize("raw,why", [
    (b"<html>502 Bad Gateway</html>", "not valid JSON"),
    (b'{"data": {"oops": 1}}', "not an OpenRouter model list"),
    (b'{"data": []}', "no usable price"),
    (b'{"data": [{"id": "a", "pricing": {"prompt": "abc", "completion": "1"}}]}', "no usable price"),
    (b'{"data": [{"id": "a", "pricing": {"prompt": NaN, "completion": "1"}}]}', "not valid JSON"),
])
def test_garbage_documents_are_refused_whole(raw, why):
    with pytest.raises(SourceError, match=why):
        parse("openrouter", raw)


def test_one_malformed_entry_is_skipped_not_fatal():
    doc = {"data": [{"id": "ok", "pricing": {"prompt": "0.000001", "completion": "0.000002"}},
                    {"id": "bad", "pricing": {"prompt": "-3", "completion": "0"}}]}
    parsed = parse("openrouter", json.dumps(doc).encode())
    assert set(parsed.quotes) == {"ok"} and "negative" in parsed.invalid["bad"]


def test_rounding_rule_is_exact_then_up_to_a_whole_unit():
    # $2.5/M x 3.50 x 1.20 = 10.5 TMT per 1M tokens exactly
    assert tmt_price_units(Decimal("0.0000025"), Decimal("3.50"), Decimal("0.20")) == 10_500_000
    # 0.123456789 $/M x 3.5 x 1.2 = 0.5185185138 TMT = 518518.5138 units -> 518519 (never below cost)
    assert tmt_price_units(Decimal("0.000000123456789"), Decimal("3.5"), Decimal("0.2")) == 518_519
    # a hair above a whole unit still rounds up; free stays free
    assert tmt_price_units(Decimal("1E-18"), Decimal("1"), Decimal("0")) == 1
    assert tmt_price_units(Decimal("0"), Decimal("3.5"), Decimal("0.2")) == 0


def test_guardrail_factor_both_ways():
    f = Decimal(3)
    assert not is_big_change((100, 400), (300, 1200), f)  # exactly x3 is allowed
    assert is_big_change((100, 400), (301, 400), f)
    assert is_big_change((300, 400), (99, 400), f)  # more than /3
    assert is_big_change((100, 400), (100, 0), f)  # priced -> free is always a big change
    assert not is_big_change((0, 0), (0, 0), f)


def _config(**pricing) -> Config:
    return Config.model_validate({
        "providers": {"p": {"base_url": "http://127.0.0.1:9/v1"}},
        "models": [{"name": "m", "price_source": "or", "routes": [{"provider": "p", "model": "m"}]}],
        "pricing": pricing,
    })


def test_settings_are_validated_with_reasons():
    ok = load_settings(_config(sources={"or": {"format": "openrouter", "url": "http://x/api/v1/models"}},
                               markup=0.2, fx={"usd": "3.50"}))
    assert ok.markup == Decimal("0.2") and ok.fx == {"USD": Decimal("3.50")}
    with pytest.raises(PricingConfigError, match="is not a \\[pricing.sources.or\\]"):
        load_settings(_config())
    with pytest.raises(PricingConfigError, match="max_change_factor"):
        load_settings(_config(sources={"or": {"format": "openrouter", "url": "u"}}, max_change_factor="1"))
    with pytest.raises(PricingConfigError, match="format"):
        load_settings(_config(sources={"or": {"format": "csv", "url": "u"}}))
    with pytest.raises(PricingConfigError, match="positive"):
        load_settings(_config(sources={"or": {"format": "openrouter", "url": "u"}}, fx={"USD": "0"}))
