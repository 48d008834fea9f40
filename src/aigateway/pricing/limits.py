"""A source's token limits (context length, output cap), behind the same guardrails as prices.

Every hold is sized from these limits, so a value is used only once checked:
  * outside sane bounds (rules.limits_problem) -> refused, the limits in force stay, reported;
  * first limits of a model, or within `max_limit_change_factor` of those in force -> applied;
  * beyond it -> held on the model's `model_limits` row until the operator confirms or rejects it
    (a rejected proposal is not proposed again while the source keeps sending it).
A field the source stops reporting keeps its value in force: a missing number is no evidence.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from aigateway.pricing.rules import is_big_limit_change, limits_problem
from aigateway.pricing.service import PricingError
from aigateway.pricing.tables import model_limits
from aigateway.store.metadata import utcnow

log = logging.getLogger(__name__)

_NO_HOLD = {"held_context_length": None, "held_max_output_tokens": None, "held_source": None,
            "held_status": None, "held_at": None}


async def apply_source_limits(conn: AsyncConnection, model: str, source: str, context_length: int | None,
                              max_output_tokens: int | None, factor: Decimal) -> dict | None:
    """Apply, hold or refuse a source's limits for a model. Returns the outcome for the fetch report."""
    if context_length is None and max_output_tokens is None:
        return None
    row = (await conn.execute(select(model_limits).where(model_limits.c.model == model))).first()
    old = (row.context_length, row.max_output_tokens) if row is not None else (None, None)
    new = (context_length if context_length is not None else old[0],
           max_output_tokens if max_output_tokens is not None else old[1])
    shown = {"context_length": new[0], "max_output_tokens": new[1]}
    problem = limits_problem(*new)
    if problem is not None:
        log.warning("limits of %s from %s refused: %s; the limits in force stay", model, source, problem)
        return {"outcome": "refused", "reason": problem, **shown}
    if row is None:
        await conn.execute(model_limits.insert().values(model=model, source=source, updated_at=utcnow(),
                                                        context_length=new[0], max_output_tokens=new[1]))
        return {"outcome": "applied", **shown}
    if new == old:
        if row.held_status == "held" or row.source != source:
            await conn.execute(update(model_limits).where(model_limits.c.model == model)
                               .values(source=source, **_NO_HOLD))
        return {"outcome": "unchanged", **shown}
    if not is_big_limit_change(old, new, factor):
        await conn.execute(update(model_limits).where(model_limits.c.model == model).values(
            source=source, updated_at=utcnow(), context_length=new[0], max_output_tokens=new[1], **_NO_HOLD))
        return {"outcome": "applied", **shown}
    if (row.held_context_length, row.held_max_output_tokens) == new and row.held_status is not None:
        already = "rejected by the operator" if row.held_status == "rejected" else "waiting for the operator"
        return {"outcome": "held", "already": already, **shown}
    await conn.execute(update(model_limits).where(model_limits.c.model == model).values(
        held_context_length=new[0], held_max_output_tokens=new[1], held_source=source, held_status="held",
        held_at=utcnow()))
    log.warning("limits of %s from %s change beyond x%s (context %s -> %s, output cap %s -> %s): held; "
                "`aigateway admin price confirm-limits %s` to apply them", model, source, factor, old[0], new[0],
                old[1], new[1], model)
    return {"outcome": "held", **shown}


async def held_limits(conn: AsyncConnection) -> list:
    """model_limits rows with a proposal waiting for the operator."""
    query = select(model_limits).where(model_limits.c.held_status == "held").order_by(model_limits.c.model)
    return list((await conn.execute(query)).all())


async def _held_row(conn: AsyncConnection, model: str):
    row = (await conn.execute(select(model_limits).where(model_limits.c.model == model))).first()
    if row is None or row.held_status != "held":
        raise PricingError(f"no held limits for {model}")
    return row


async def confirm_limits(conn: AsyncConnection, model: str):
    """Put a model's held limits in force (checked again: bounds may not be skipped). Returns the row."""
    row = await _held_row(conn, model)
    problem = limits_problem(row.held_context_length, row.held_max_output_tokens)
    if problem is not None:  # pragma: no cover - a held proposal passed the same check
        raise PricingError(problem)
    await conn.execute(update(model_limits).where(model_limits.c.model == model).values(
        context_length=row.held_context_length, max_output_tokens=row.held_max_output_tokens,
        source=row.held_source, updated_at=utcnow(), **_NO_HOLD))
    return row


async def reject_limits(conn: AsyncConnection, model: str):
    """Refuse a model's held limits: those in force stay; the same values are not proposed again."""
    row = await _held_row(conn, model)
    await conn.execute(update(model_limits).where(model_limits.c.model == model).values(held_status="rejected"))
    return row
