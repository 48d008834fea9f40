"""Reading and writing key limits, and the spend a key made this period (for the portal and CLI)."""

from __future__ import annotations

from datetime import datetime

import orjson
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from aigateway.accounts.tables import api_keys
from aigateway.billing.tables import usage_records
from aigateway.keylimits.tables import api_key_limits
from aigateway.keylimits.values import PERIODS, KeyLimits, period_start
from aigateway.timeutil import as_utc, utcnow


def to_limits(row) -> KeyLimits:
    return KeyLimits(key_id=row.key_id, spend_cap=row.spend_cap, spend_period=row.spend_period, rpm=row.rpm,
                     tpm=row.tpm, concurrency=row.concurrency, 
                     expires_at=None if row.expires_at is None else as_utc(row.expires_at))


async def get_limits(conn: AsyncConnection, key_id: int) -> KeyLimits:
    row = (await conn.execute(select(api_key_limits).where(api_key_limits.c.key_id == key_id))).first()
    return to_limits(row) if row is not None else KeyLimits(key_id=key_id)


async def set_limits(conn: AsyncConnection, limits: KeyLimits) -> None:
    """Replace the key's limits (all fields; None = no such limit) and bump the key, so caches reload it."""
    if limits.spend_period not in PERIODS:
        raise ValueError(f"spend period must be one of {', '.join(PERIODS)}")
    for name in ("spend_cap", "rpm", "tpm", "concurrency"):
        value = getattr(limits, name)
        if value is not None and value < (0 if name == "spend_cap" else 1):
            raise ValueError(f"{name} must be {'0 or more' if name == 'spend_cap' else 'at least 1'}")
    await conn.execute(delete(api_key_limits).where(api_key_limits.c.key_id == limits.key_id))
    await conn.execute(api_key_limits.insert().values(
        key_id=limits.key_id, spend_cap=limits.spend_cap, spend_period=limits.spend_period, rpm=limits.rpm,
        tpm=limits.tpm, concurrency=limits.concurrency, expires_at=limits.expires_at, updated_at=utcnow()))
    await conn.execute(update(api_keys).where(api_keys.c.id == limits.key_id).values(updated_at=utcnow()))


async def get_allowed_models(conn: AsyncConnection, key_id: int) -> list[str] | None:
    """The models the key may use (None: every model)."""
    text = await conn.scalar(select(api_keys.c.allowed_models).where(api_keys.c.id == key_id))
    return list(orjson.loads(text)) if text else None


async def set_allowed_models(conn: AsyncConnection, key_id: int, names: list[str] | None) -> None:
    """Restrict the key to these models (None: every model) and bump it, so caches reload it."""
    await conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(
        allowed_models=None if names is None else orjson.dumps(names).decode(), updated_at=utcnow()))


async def spent_since(conn: AsyncConnection, key_id: int, since: datetime | None) -> int:
    query = select(func.coalesce(func.sum(usage_records.c.cost), 0)).where(usage_records.c.api_key_id == key_id)
    if since is not None:
        query = query.where(usage_records.c.created_at >= since)
    return int((await conn.execute(query)).scalar_one())


async def spent_this_period(conn: AsyncConnection, limits: KeyLimits, now: datetime | None = None) -> int:
    return await spent_since(conn, limits.key_id, period_start(limits.spend_period, now or utcnow()))
