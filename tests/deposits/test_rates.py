"""USDT -> TMT conversion: integers and Decimal only, rounded down to a unit."""

from decimal import Decimal

import pytest

from aigateway.deposits.rates import RateError, effective_rate, rate_text, tmt_units, token_amount, token_base_units


def test_conversion_is_exact_and_rounds_down():
    assert tmt_units(12_500_000, 6, Decimal("3.50")) == 43_750_000  # 12.5 USDT -> 43.75 TMT
    assert tmt_units(1, 6, Decimal("3.5")) == 3  # 0.000001 USDT -> 0.0000035 TMT -> 3 units (floor)
    assert tmt_units(10**6, 6, effective_rate(Decimal("3.50"), Decimal("0.02"))) == 3_430_000
    assert tmt_units(10**18, 18, Decimal("3.333333333")) == 3_333_333
    assert tmt_units(0, 6, Decimal("3.5")) == 0
    with pytest.raises(RateError):
        tmt_units(-1, 6, Decimal("3.5"))


def test_amount_text_round_trips():
    assert token_amount(12_500_000, 6) == "12.5"
    assert token_amount(1, 6) == "0.000001"
    assert token_amount(3_000_000, 6) == "3"
    assert token_base_units("12.5", 6) == 12_500_000
    with pytest.raises(RateError):
        token_base_units("0.0000001", 6)
    with pytest.raises(RateError):
        token_base_units(1.5, 6)  # floats are refused
    assert rate_text(Decimal("3.50")) == "3.50"
    assert rate_text(Decimal("3.5")) == "3.50"
    assert rate_text(effective_rate(Decimal("3.50"), Decimal("0.02"))) == "3.43"
    assert rate_text(Decimal("3.123456")) == "3.123456"
