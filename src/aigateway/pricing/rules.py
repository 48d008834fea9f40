"""Turning an upstream USD price into a TMT price, and the guardrails on big changes.

Token limits (context length, output cap) reported by a source size every hold,
so they pass guardrails like prices: values outside sane bounds are refused
(`limits_problem`), and a change beyond `max_limit_change_factor` is held for
the operator (`is_big_limit_change`). A context of 1 shrinks holds below cost;
one of 2**31 makes every hold exceed every balance.

Rounding rule (documented in the README): with exact decimal arithmetic,

    units per 1M tokens = USD per token x 1,000,000 tokens x rate (TMT per USD)
                          x (1 + markup) x 1,000,000 units per TMT

and the result is rounded UP to a whole unit (0.000001 TMT per 1M tokens), so
the gateway never sells below upstream cost x rate x (1 + markup) and is never
more than one unit per 1M tokens above it. Each price (input, output, cache
read/write, reasoning, every tier's) is rounded on its own; a per-request or
per-image price is USD x rate x (1 + markup) x 1,000,000 units, rounded up. No binary floating
point is involved anywhere.
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


def tmt_units_each(usd_each: Decimal, rate: Decimal, markup: Decimal) -> int:
    """A per-request or per-image price in units: USD x rate x (1 + markup) x 1,000,000, rounded UP."""
    with localcontext() as ctx:
        ctx.prec = 200
        ctx.traps[Inexact] = True
        ctx.traps[Rounded] = True
        exact = usd_each * rate * (1 + markup) * UNITS_PER_TMT
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


def is_big_price_change(old, new, factor: Decimal) -> bool:
    """True when ANY rate (input, output, cache read/write, reasoning, request fee, image, at any tier)
    moves by more than `factor` up or down. `old`/`new` are aigateway.catalog.Price values.

    Rates are compared as charged (defaults resolved) at every input length where either price changes
    tier, so a new field (a cache read price where input was charged before) or a new tier counts as the
    change it makes to bills; a fee appearing from nothing (0 -> priced) is always big.
    """
    points = {0, *(t.above + 1 for t in (*old.tiers, *new.tiers))}
    return any(_beyond(a, b, factor) for n in sorted(points)
               for a, b in zip(old.effective(n), new.effective(n), strict=True))


# Sane bounds for a source's limits. No served model has a context outside these;
# a value outside is a broken source, never a real model.
MIN_CONTEXT_LENGTH = 256
MAX_CONTEXT_LENGTH = 10_000_000


def limits_problem(context_length: int | None, max_output_tokens: int | None) -> str | None:
    """Why these limits cannot be used (a sentence), or None when they are sane."""
    if context_length is not None and not MIN_CONTEXT_LENGTH <= context_length <= MAX_CONTEXT_LENGTH:
        return (f"context_length {context_length} is outside {MIN_CONTEXT_LENGTH}..{MAX_CONTEXT_LENGTH}")
    ceiling = context_length if context_length is not None else MAX_CONTEXT_LENGTH
    if max_output_tokens is not None and not 1 <= max_output_tokens <= ceiling:
        return f"max_output_tokens {max_output_tokens} is outside 1..{ceiling}"
    return None


def is_big_limit_change(old: tuple[int | None, int | None], new: tuple[int | None, int | None],
                        factor: Decimal) -> bool:
    """True when a limit known before moves by more than `factor` up or down (held for the operator)."""
    return any(a is not None and b is not None and _beyond(a, b, factor) for a, b in zip(old, new, strict=True))
