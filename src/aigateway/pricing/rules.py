"""Turning an upstream USD price into a TMT price, and the guardrail on big changes.

Rounding rule (documented in the README): with exact decimal arithmetic,

    units per 1M tokens = USD per token x 1,000,000 tokens x rate (TMT per USD)
                          x (1 + markup) x 1,000,000 units per TMT

and the result is rounded UP to a whole unit (0.000001 TMT per 1M tokens), so
the gateway never sells below upstream cost x rate x (1 + markup) and is never
more than one unit per 1M tokens above it. Each of input and output is rounded
on its own. No binary floating point is involved anywhere.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal, Inexact, Rounded, localcontext

from aigateway.money import TOKENS_PER_PRICE, UNITS_PER_TMT


def tmt_price_units(usd_per_token: Decimal, rate: Decimal, markup: Decimal) -> int:
    """Price in units per 1M tokens. Exact: raises if the product would need rounding before the ceil."""
    with localcontext() as ctx:
        ctx.prec = 200
        ctx.traps[Inexact] = True
        ctx.traps[Rounded] = True
        exact = usd_per_token * TOKENS_PER_PRICE * rate * (1 + markup) * UNITS_PER_TMT
    return int(exact.to_integral_value(rounding=ROUND_CEILING))


def _beyond(old: int, new: int, factor: Decimal) -> bool:
    if old == new:
        return False
    if old == 0 or new == 0:
        return True  # free <-> priced is always a big change
    return Decimal(new) > Decimal(old) * factor or Decimal(old) > Decimal(new) * factor


def is_big_change(old: tuple[int, int], new: tuple[int, int], factor: Decimal) -> bool:
    """True when input or output price moves by more than `factor` up or down (held for the operator)."""
    return _beyond(old[0], new[0], factor) or _beyond(old[1], new[1], factor)
