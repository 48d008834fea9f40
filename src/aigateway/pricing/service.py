"""Writing prices: every change is a new version; the current one is pointed at.

A version is `applied` (it is, or was, in force), `held` (a fetched change
beyond the guardrail, waiting for the operator) or `rejected`. Beside each
version, `price_version_details` keeps the version it replaced and, for source
prices, the upstream USD prices, rate and markup it was computed from.
"""

from __future__ import annotations

from sqlalchemy import desc, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from aigateway.catalog import EXTRA_FIELDS
from aigateway.pricing.tables import model_prices, price_version_details, price_versions
from aigateway.store.db import inserted_id
from aigateway.store.metadata import utcnow

_NO_EXTRA = {**dict.fromkeys(EXTRA_FIELDS), "tiers": None}


def extra_of(row) -> dict:
    """The finer-price columns of a price_versions row (all None for a plain price)."""
    return {name: row._mapping.get(name) for name in _NO_EXTRA}


def same_price(row, input_price: int, output_price: int, free: bool, extra: dict | None) -> bool:
    """Whether a stored version is exactly this price, every field compared."""
    return ((row.input_price, row.output_price, bool(row.free)) == (input_price, output_price, free)
            and extra_of(row) == {**_NO_EXTRA, **(extra or {})})


class PricingError(Exception):
    """An operator action on prices that cannot be done (unknown version, wrong status...)."""


async def current_price(conn: AsyncConnection, model: str):
    query = (
        select(price_versions)
        .join(model_prices, model_prices.c.price_version_id == price_versions.c.id)
        .where(model_prices.c.model == model)
    )
    return (await conn.execute(query)).first()


async def _insert_version(conn: AsyncConnection, model: str, input_price: int, output_price: int, *, source: str,
                          free: bool, status: str, note: str | None, previous_id: int | None,
                          details: dict | None, extra: dict | None = None) -> int:
    unknown = set(extra or {}) - set(_NO_EXTRA)
    if unknown:
        raise PricingError(f"unknown price field(s): {', '.join(sorted(unknown))}")
    if any(isinstance(v, int) and v < 0 for v in (extra or {}).values()):
        raise PricingError("a price must not be negative")
    result = await conn.execute(price_versions.insert().values(
        model=model, input_price=input_price, output_price=output_price, free=free,
        source=source, status=status, note=note, created_at=utcnow(), **{**_NO_EXTRA, **(extra or {})},
    ))
    version_id = inserted_id(result)
    await conn.execute(price_version_details.insert().values(
        price_version_id=version_id, previous_version_id=previous_id, **(details or {})))
    return version_id


async def _point_at(conn: AsyncConnection, model: str, version_id: int, exists: bool) -> None:
    now = utcnow()
    if not exists:
        await conn.execute(model_prices.insert().values(model=model, price_version_id=version_id, updated_at=now))
    else:
        await conn.execute(update(model_prices).where(model_prices.c.model == model)
                           .values(price_version_id=version_id, updated_at=now))


async def set_price(
    conn: AsyncConnection, model: str, input_price: int, output_price: int, *, source: str,
    free: bool = False, note: str | None = None, details: dict | None = None, extra: dict | None = None,
) -> int | None:
    """Apply a price unless it is already the one in force. Returns the new version id, or None.

    `extra` holds the finer prices (aigateway.catalog.EXTRA_FIELDS and "tiers" as JSON text); absent = none.
    """
    if input_price < 0 or output_price < 0:
        raise PricingError("a price must not be negative")
    current = await current_price(conn, model)
    if current is not None and same_price(current, input_price, output_price, free, extra):
        return None
    version_id = await _insert_version(
        conn, model, input_price, output_price, source=source, free=free, status="applied", note=note,
        previous_id=current.id if current is not None else None, details=details, extra=extra)
    await _point_at(conn, model, version_id, current is not None)
    return version_id


async def propose_price(conn: AsyncConnection, model: str, input_price: int, output_price: int, *, source: str,
                        free: bool = False, note: str | None = None, details: dict | None = None,
                        extra: dict | None = None) -> int:
    """Record a `held` version: the price in force does not change until the operator confirms it."""
    current = await current_price(conn, model)
    return await _insert_version(
        conn, model, input_price, output_price, source=source, free=free, status="held", note=note,
        previous_id=current.id if current is not None else None, details=details, extra=extra)


async def pending_versions(conn: AsyncConnection, model: str | None = None) -> list:
    query = select(price_versions).where(price_versions.c.status == "held").order_by(price_versions.c.id)
    if model is not None:
        query = query.where(price_versions.c.model == model)
    return list((await conn.execute(query)).all())


async def latest_unapplied(conn: AsyncConnection, model: str):
    """The newest held or rejected version of a model newer than the one in force (or None)."""
    current = await current_price(conn, model)
    query = (select(price_versions).where(price_versions.c.model == model,
                                          price_versions.c.status.in_(("held", "rejected")))
             .order_by(desc(price_versions.c.id)).limit(1))
    if current is not None:
        query = query.where(price_versions.c.id > current.id)
    return (await conn.execute(query)).first()


async def _version(conn: AsyncConnection, version_id: int):
    row = (await conn.execute(select(price_versions).where(price_versions.c.id == version_id))).first()
    if row is None:
        raise PricingError(f"no price version {version_id}")
    return row


async def decide_version(conn: AsyncConnection, version_id: int, status: str, note: str | None) -> None:
    values: dict = {"status": status}
    if note:
        values["note"] = note
    await conn.execute(update(price_versions).where(price_versions.c.id == version_id).values(**values))
    await conn.execute(update(price_version_details).where(price_version_details.c.price_version_id == version_id)
                       .values(decided_at=utcnow()))


async def confirm_version(conn: AsyncConnection, version_id: int, note: str | None = None):
    """Put a held version in force (the operator agrees with the big change). Returns the version row."""
    row = await _version(conn, version_id)
    if row.status != "held":
        raise PricingError(f"price version {version_id} is {row.status}, not held")
    current = await current_price(conn, row.model)
    await decide_version(conn, version_id, "applied", note or row.note)
    await _point_at(conn, row.model, version_id, current is not None)
    # Older proposals for the same model are moot now.
    for older in await pending_versions(conn, row.model):
        if older.id < version_id:
            await decide_version(conn, older.id, "rejected", f"superseded by version {version_id}")
    return row


async def reject_version(conn: AsyncConnection, version_id: int, note: str | None = None):
    """Refuse a held version: the price in force stays; the same price is not proposed again."""
    row = await _version(conn, version_id)
    if row.status != "held":
        raise PricingError(f"price version {version_id} is {row.status}, not held")
    await decide_version(conn, version_id, "rejected", note or "rejected by the operator")
    return row


async def price_history(conn: AsyncConnection, model: str, limit: int = 50) -> list:
    """Versions of a model, newest first, with their details and the previous version's prices."""
    prev = price_versions.alias("prev")
    query = (
        select(price_versions, price_version_details.c.previous_version_id, price_version_details.c.source_model,
               price_version_details.c.usd_input, price_version_details.c.usd_output,
               price_version_details.c.fx_rate, price_version_details.c.markup,
               price_version_details.c.decided_at,
               prev.c.input_price.label("prev_input"), prev.c.output_price.label("prev_output"),
               prev.c.free.label("prev_free"))
        .select_from(price_versions
                     .outerjoin(price_version_details,
                                price_version_details.c.price_version_id == price_versions.c.id)
                     .outerjoin(prev, prev.c.id == price_version_details.c.previous_version_id))
        .where(price_versions.c.model == model)
        .order_by(desc(price_versions.c.id)).limit(limit)
    )
    return list((await conn.execute(query)).all())


async def current_prices(conn: AsyncConnection) -> dict:
    """{model: row} for every model with a price in force (row has model_prices.updated_at)."""
    query = select(price_versions, model_prices.c.updated_at).join(
        model_prices, model_prices.c.price_version_id == price_versions.c.id)
    return {row.model: row for row in (await conn.execute(query)).all()}
