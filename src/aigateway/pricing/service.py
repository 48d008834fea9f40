"""Writing prices: every change is a new version; the current one is pointed at."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from aigateway.pricing.tables import model_prices, price_versions
from aigateway.store.metadata import utcnow


async def current_price(conn: AsyncConnection, model: str):
    query = (
        select(price_versions)
        .join(model_prices, model_prices.c.price_version_id == price_versions.c.id)
        .where(model_prices.c.model == model)
    )
    return (await conn.execute(query)).first()


async def set_price(
    conn: AsyncConnection, model: str, input_price: int, output_price: int, *, source: str,
    free: bool = False, note: str | None = None,
) -> int | None:
    """Apply a price unless it is already the one in force. Returns the new version id, or None."""
    now = utcnow()
    current = await current_price(conn, model)
    if current is not None and (current.input_price, current.output_price, current.free) == (
        input_price, output_price, free
    ):
        return None
    result = await conn.execute(price_versions.insert().values(
        model=model, input_price=input_price, output_price=output_price, free=free,
        source=source, status="applied", note=note, created_at=now,
    ))
    version_id = int(result.inserted_primary_key[0])
    if current is None:
        await conn.execute(model_prices.insert().values(model=model, price_version_id=version_id, updated_at=now))
    else:
        await conn.execute(update(model_prices).where(model_prices.c.model == model)
                           .values(price_version_id=version_id, updated_at=now))
    return version_id
