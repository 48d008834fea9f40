"""USDT -> TMT with integers and Decimal only, and the one rate deposits credit at.

The rate in force (`rate_in_force`) is, in order: an explicit deposit-rate override the
operator set with `admin deposits rate set` (recorded, newest wins; `rate clear` ends it);
else the current USD rate of the same history prices use (`admin fx set USD ...`); else,
only when no USD rate was ever recorded, the legacy `[deposits] rate`. The spread applies to
each. There is no second rate to keep in sync by hand.

A transfer's value is in the token's base units (USDT: 6 decimals). The credit is
    value / 10**decimals  *  rate * (1 - spread)   TMT
rounded DOWN to a whole unit (1e-6 TMT): the customer is never credited more than
the exact amount, and loses at most one unit to rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal, localcontext

from sqlalchemy import desc, select
from sqlalchemy.ext.asyncio import AsyncConnection

from aigateway import money
from aigateway.money import UNITS_PER_TMT


class RateError(ValueError):
    pass


def parse_decimal(text: str | int | Decimal, what: str) -> Decimal:
    try:
        return money.parse_decimal(text, what)
    except money.MoneyError as exc:
        raise RateError(str(exc)) from None


def effective_rate(rate: Decimal, spread: Decimal) -> Decimal:
    """TMT per USDT after the operator's spread (a fraction: 0.02 = 2%)."""
    with localcontext() as ctx:
        ctx.prec = 50
        return rate * (Decimal(1) - spread)


def tmt_units(value: int, decimals: int, rate: Decimal) -> int:
    """TMT units credited for `value` token base units at `rate` TMT per token."""
    if not isinstance(value, int) or value < 0:
        raise RateError("token value must be a non-negative integer")
    with localcontext() as ctx:
        ctx.prec = 100
        exact = Decimal(value) * rate * UNITS_PER_TMT / (Decimal(10) ** decimals)
        return int(exact.to_integral_value(rounding=ROUND_FLOOR))


def token_amount(value: int, decimals: int) -> str:
    """Human form of a base-unit amount: 12500000 (6 dp) -> '12.5'."""
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), 10**decimals)
    frac_s = str(frac).rjust(decimals, "0").rstrip("0") if decimals else ""
    return f"{sign}{whole}.{frac_s}" if frac_s else f"{sign}{whole}"


def token_base_units(amount: str | Decimal, decimals: int, what: str = "amount") -> int:
    """'12.5' USDT -> 12500000; refuses more precision than the token has."""
    value = parse_decimal(amount, what)
    scaled = value * (Decimal(10) ** decimals)
    if scaled != scaled.to_integral_value():
        raise RateError(f"{what} {amount} has more than {decimals} decimal places")
    return int(scaled)


def rate_text(rate: Decimal) -> str:
    """Rate for memos and the portal: no exponent, trailing zeros trimmed but >= 2 places."""
    text = format(rate.normalize(), "f")
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(2, '0')}"


@dataclass(frozen=True, slots=True)
class RateInForce:
    base: Decimal  # TMT per USDT before the spread
    spread: Decimal
    source: str  # "fx USD" | "deposit override" | "config"

    @property
    def effective(self) -> Decimal:
        return effective_rate(self.base, self.spread)


async def override_rate(conn: AsyncConnection) -> Decimal | None:
    from aigateway.deposits.tables import deposit_rate_overrides

    row = (await conn.execute(select(deposit_rate_overrides.c.rate)
                              .order_by(desc(deposit_rate_overrides.c.id)).limit(1))).first()
    return parse_decimal(row.rate, "deposit rate override") if row is not None and row.rate else None


async def rate_in_force(conn: AsyncConnection, rate: str | None, spread: Decimal) -> RateInForce:
    """The rate a deposit credits at now (see the module docstring). RateError when there is none."""
    from aigateway.pricing.fx import current_rate

    override = await override_rate(conn)
    if override is not None:
        return RateInForce(override, spread, "deposit override")
    usd = await current_rate(conn, "USD")
    if usd is not None:
        return RateInForce(usd, spread, "fx USD")
    if rate is not None:
        return RateInForce(parse_decimal(rate, "rate"), spread, "config")
    raise RateError("no USD rate is set: `aigateway admin fx set USD <TMT per USD>`")
