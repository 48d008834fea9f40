"""Money is integer micro-TMT ("units"): 1 TMT = 1,000,000 units.

Prices are integer units per 1,000,000 tokens, so a price has the same
resolution as a balance (0.000001 TMT per 1M tokens).

Rounding rule: a request's cost is one exact sum over every priced term,
divided by 1,000,000 and rounded UP to a whole unit (ceil), once per request:

    exact = uncached      x input_price             (uncached = input - cached - written - written_long)
          + cached        x cached_price            (default: input_price)
          + written       x cache_write_price       (default: input_price)
          + written_long  x cache_write_long_price  (default: cache_write_price)
          + plain_output  x output_price            (plain_output = output - reasoning)
          + reasoning     x reasoning_price         (default: output_price)
          + images        x image_price   x 1,000,000   (image_price: units per image)
          + requests      x request_price x 1,000,000   (request_price: units per request)
    cost  = ceil(exact / 1,000,000)

Token prices are units per 1M tokens. `input` and `output` are the request's
full counts (cached and written tokens are part of `input`, reasoning tokens
part of `output`); a part larger than what is left of its whole is cut to it,
so the parts never bill more tokens than the whole. The customer is never
charged more than one unit (0.000001 TMT) above the exact cost, and never
charged zero for a request that used priced tokens. Rounding happens once per
request, on the sum, not per term.
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


def two_price_cost(input_tokens: int, output_tokens: int, input_price: int, output_price: int) -> int:
    """`request_cost` with only its four positional arguments (every default resolved to them):
    the same formula with nothing else to resolve, for the prices that have no other rate."""
    exact = max(input_tokens, 0) * input_price + max(output_tokens, 0) * output_price
    return -(-exact // TOKENS_PER_PRICE)


def request_cost(input_tokens: int, output_tokens: int, input_price: int, output_price: int, *,
                 cached_tokens: int = 0, cache_write_tokens: int = 0, cache_write_long_tokens: int = 0,
                 reasoning_tokens: int = 0, images: int = 0, requests: int = 0,
                 cached_price: int | None = None, cache_write_price: int | None = None,
                 cache_write_long_price: int | None = None, reasoning_price: int | None = None,
                 image_price: int = 0, request_price: int = 0) -> int:
    """Cost in units of one request by the formula in this module's docstring; ceil to a whole unit.

    With only the four positional arguments it is the plain two-price formula.
    """
    input_tokens, output_tokens = max(input_tokens, 0), max(output_tokens, 0)
    # Hazard: a part reported larger than its whole would bill tokens twice; cut each part to what is left.
    cached = min(max(cached_tokens, 0), input_tokens)
    written = min(max(cache_write_tokens, 0), input_tokens - cached)
    written_long = min(max(cache_write_long_tokens, 0), input_tokens - cached - written)
    uncached = input_tokens - cached - written - written_long
    reasoning = min(max(reasoning_tokens, 0), output_tokens)
    write = input_price if cache_write_price is None else cache_write_price
    exact = (
        uncached * input_price
        + cached * (input_price if cached_price is None else cached_price)
        + written * write
        + written_long * (write if cache_write_long_price is None else cache_write_long_price)
        + (output_tokens - reasoning) * output_price
        + reasoning * (output_price if reasoning_price is None else reasoning_price)
        + max(images, 0) * image_price * TOKENS_PER_PRICE
        + max(requests, 0) * request_price * TOKENS_PER_PRICE
    )
    return -(-exact // TOKENS_PER_PRICE)
