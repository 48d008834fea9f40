"""The rounding rule: exact integer arithmetic, rounded up once per request."""

from decimal import Decimal

import pytest

from aigateway.money import MoneyError, format_tmt, request_cost, to_units, two_price_cost


def test_cost_is_exact_and_rounds_up_to_a_whole_unit():
    # 0.35 TMT/1M input, 1.40 TMT/1M output: 7 input + 3 output = 2.45 + 4.2 = 6.65 units -> 7
    assert request_cost(7, 3, 350_000, 1_400_000) == 7
    # exactly representable: no rounding
    assert request_cost(1_000_000, 0, 350_000, 1_400_000) == 350_000
    assert request_cost(2, 0, 500_000, 0) == 1
    assert request_cost(0, 0, 350_000, 1_400_000) == 0
    # one token of a cheap model still costs one unit, never zero
    assert request_cost(1, 0, 1, 0) == 1


def test_the_two_price_formula_is_request_cost_with_its_defaults():
    for args in [(7, 3, 350_000, 1_400_000), (1_000_000, 0, 350_000, 1_400_000), (1, 0, 1, 0), (0, 0, 5, 5),
                 (-4, 9, 350_000, 1_400_000), (3, -1, 7, 11), (999_999, 999_999, 49_999_999, 1)]:
        assert two_price_cost(*args) == request_cost(*args), args


def test_rounding_happens_once_on_the_sum_not_per_token_class():
    # 0.5 + 0.5 units = exactly 1 (per-class rounding would give 2)
    assert request_cost(1, 1, 500_000, 500_000) == 1


def test_cost_never_differs_from_exact_decimal_by_a_unit_or_more():
    for tokens_in, tokens_out in [(13, 977), (123_456, 7), (999_999, 999_999)]:
        exact = (Decimal(tokens_in) * 350_000 + Decimal(tokens_out) * 1_400_000) / 1_000_000
        assert 0 <= request_cost(tokens_in, tokens_out, 350_000, 1_400_000) - exact < 1


def test_parsing_and_formatting_tmt():
    assert to_units("12.5") == 12_500_000
    assert to_units(3) == 3_000_000
    assert to_units("0.000001") == 1
    assert format_tmt(1_234_500) == "1.234500"
    assert format_tmt(1_234_500, 2) == "1.23"
    with pytest.raises(MoneyError):
        to_units(0.1)  # floats are refused
    with pytest.raises(MoneyError):
        to_units("0.0000001")  # finer than a unit
    with pytest.raises(MoneyError):
        to_units("abc")
