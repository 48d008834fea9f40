"""Money is integer micro-TMT ("units"): 1 TMT = 1,000,000 units.

Prices are integer units per 1,000,000 tokens, so a price has the same
resolution as a balance (0.000001 TMT per 1M tokens).

Rounding rule: a request's cost is computed exactly as
    (input_tokens * input_price + output_tokens * output_price) / 1,000,000
and rounded UP to a whole unit (ceil). The customer is never charged more than
one unit (0.000001 TMT) above the exact cost, and never charged zero for a
request that used priced tokens. Rounding happens once per request, on the
sum, not per token class.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

UNITS_PER_TMT = 1_000_000
TOKENS_PER_PRICE = 1_000_000

_UNIT = Decimal(1) / UNITS_PER_TMT


class MoneyError(ValueError):
    """A money amount that cannot be represented exactly."""


def parse_decimal(text: str | int | float | Decimal, what: str = "money", *, floats: bool = False) -> Decimal:
    """The one decimal parser: a finite Decimal from a decimal string, an int or a Decimal.

    The float rule is explicit. `floats=False` (amounts of money, operator input): a float is
    refused, it is inexact. `floats=True` (settings such as a markup written as a TOML number):
    a float is read through its shortest text (0.1 -> Decimal("0.1")), never its binary value.
    Booleans and other types are always refused."""
    if isinstance(text, bool) or not isinstance(text, (str, int, float, Decimal)):
        raise MoneyError(f'{what} must be a decimal string like "0.20", not {type(text).__name__}')
    if isinstance(text, float) and not floats:
        raise MoneyError(f"{what} must not be given as a float; use a decimal string")
    try:
        value = Decimal(repr(text) if isinstance(text, float) else str(text).strip())
    except InvalidOperation as exc:
        raise MoneyError(f"{what}: not a decimal number: {text!r}") from exc
    if not value.is_finite():
        raise MoneyError(f"{what}: not a finite number: {text!r}")
    return value


def to_units(tmt: str | int | Decimal) -> int:
    """Parse a TMT amount ("12.5", 3, Decimal) into units. Refuses sub-unit precision and floats."""
    value = parse_decimal(tmt)
    units = value * UNITS_PER_TMT
    if units != units.to_integral_value():
        raise MoneyError(f"{tmt} TMT has more than 6 decimal places")
    return int(units)


def format_tmt(units: int, places: int = 6) -> str:
    """Render units as a TMT decimal string, e.g. 1234500 -> '1.234500'."""
    value = Decimal(units) * _UNIT
    return str(value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def request_cost(input_tokens: int, output_tokens: int, input_price: int, output_price: int) -> int:
    """Cost in units of one request; prices in units per 1M tokens; ceil to a whole unit."""
    exact = input_tokens * input_price + output_tokens * output_price
    return -(-exact // TOKENS_PER_PRICE)
