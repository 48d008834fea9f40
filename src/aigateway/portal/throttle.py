"""Slowing down password guessing: failed logins per (email, client IP).

The first FREE_FAILURES failures cost nothing (people mistype). After that,
each further attempt for the same email from the same address must wait
2, 4, 8, ... seconds (at most MAX_DELAY) after the previous failure, and is
refused before the password is even checked. A success clears the counter;
counters older than FORGET_AFTER are forgotten. Kept in the database, so
every replica sees the same counts.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from aigateway.billing.ledger import insert_ignoring_duplicates
from aigateway.portal.sessions import aware
from aigateway.portal.tables import portal_login_failures
from aigateway.store.metadata import utcnow

FREE_FAILURES = 3
MAX_DELAY = 300.0
FORGET_AFTER = timedelta(hours=1)


def delay_after(failures: int) -> float:
    """Seconds an attempt must wait after the last of `failures` consecutive failures."""
    if failures < FREE_FAILURES:
        return 0.0
    return min(2.0 ** (failures - FREE_FAILURES + 1), MAX_DELAY)


def _key(email: str, ip: str) -> str:
    return hashlib.sha256(f"{email.strip().lower()}|{ip}".encode()).hexdigest()


async def seconds_to_wait(engine: AsyncEngine, email: str, ip: str) -> float:
    async with engine.connect() as conn:
        row = (await conn.execute(select(portal_login_failures).where(
            portal_login_failures.c.key_hash == _key(email, ip)))).first()
    if row is None:
        return 0.0
    since = (utcnow() - aware(row.last_failed_at)).total_seconds()
    if since > FORGET_AFTER.total_seconds():
        return 0.0
    return max(0.0, delay_after(row.failures) - since)


async def record_failure(engine: AsyncEngine, email: str, ip: str) -> int:
    """Count a failed attempt; returns the consecutive failures so far."""
    key, now = _key(email, ip), utcnow()
    table = portal_login_failures
    async with engine.begin() as conn:
        await conn.execute(insert_ignoring_duplicates(conn, table).values(key_hash=key, failures=0,
                                                                          last_failed_at=now))
        row = (await conn.execute(select(table.c.failures, table.c.last_failed_at)
                                  .where(table.c.key_hash == key))).one()
        fresh = now - aware(row.last_failed_at) <= FORGET_AFTER
        failures = (row.failures if fresh else 0) + 1
        await conn.execute(update(table).where(table.c.key_hash == key)
                           .values(failures=failures, last_failed_at=now))
    return failures


async def clear(engine: AsyncEngine, email: str, ip: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(portal_login_failures).where(portal_login_failures.c.key_hash == _key(email, ip)))


async def purge_stale(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(portal_login_failures)
                           .where(portal_login_failures.c.last_failed_at < utcnow() - FORGET_AFTER))
