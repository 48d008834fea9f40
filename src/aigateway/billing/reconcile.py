"""Check the money invariants end to end; every problem found is one line of text.

Invariants checked (README, Billing rules):
* each customer's balance equals the sum of their ledger entries;
* no balance is negative;
* every usage record with cost > 0 has exactly one ledger charge ``usage:<id>`` of -cost
  for the same customer, and every ``usage:`` charge has its usage record;
* no usage spool is left unreplayed (a spool whose directory lock no process holds);
* no Redis hold outlived its TTL (when Redis is configured).

Read-only: it reports, never repairs (a repair is an operator's ledger adjustment).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import cast

from sqlalchemy import and_, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from aigateway.accounts.tables import customers
from aigateway.billing.recorder import UsageEvent
from aigateway.billing.spool import LOCK_NAME, SEGMENT_SUFFIX, EventCodec, read_segments
from aigateway.billing.tables import ledger_entries, usage_records

_LIMIT = 50  # problems listed per kind; the count says how many more


async def reconcile(engine: AsyncEngine, *, spool_dir: str | os.PathLike[str] | None = None,
                    redis_url: str | None = None, redis_prefix: str = "aigw") -> list[str]:
    problems: list[str] = []
    async with engine.connect() as conn:
        sums = (select(ledger_entries.c.customer_id, func.sum(ledger_entries.c.amount).label("total"))
                .group_by(ledger_entries.c.customer_id).subquery())
        total = func.coalesce(sums.c.total, 0)
        rows = (await conn.execute(
            select(customers.c.id, customers.c.balance, total.label("total"))
            .select_from(customers.outerjoin(sums, sums.c.customer_id == customers.c.id))
            .where(or_(customers.c.balance != total, customers.c.balance < 0))
            .order_by(customers.c.id)
        )).all()
        for row in rows:
            if row.balance != row.total:
                problems.append(f"customer {row.id}: balance {row.balance} != ledger sum {row.total} (units)")
            if row.balance < 0:
                problems.append(f"customer {row.id}: negative balance {row.balance} (units)")

        reference = literal("usage:") + usage_records.c.id
        joined = usage_records.outerjoin(ledger_entries, ledger_entries.c.reference == reference)
        charges = (await conn.execute(
            select(usage_records.c.id, usage_records.c.customer_id, usage_records.c.cost,
                   ledger_entries.c.amount, ledger_entries.c.customer_id.label("charged"),
                   ledger_entries.c.kind)
            .select_from(joined)
            .where(or_(
                and_(usage_records.c.cost > 0, ledger_entries.c.id.is_(None)),
                and_(ledger_entries.c.id.is_not(None), or_(
                    ledger_entries.c.amount != -usage_records.c.cost,
                    ledger_entries.c.customer_id != usage_records.c.customer_id,
                    ledger_entries.c.kind != "charge")),
            ))
            .order_by(usage_records.c.id).limit(_LIMIT + 1)
        )).all()
        for charge in charges[:_LIMIT]:
            if charge.amount is None:
                problems.append(f"usage {charge.id}: cost {charge.cost} but no ledger charge usage:{charge.id}")
            else:
                problems.append(f"usage {charge.id}: cost {charge.cost} of customer {charge.customer_id}, but ledger "
                                f"usage:{charge.id} is {charge.kind} {charge.amount} of customer {charge.charged}")
        if len(charges) > _LIMIT:
            problems.append("... more usage records whose charge is missing or wrong")

        orphan = usage_records.c.id.is_(None)
        orphans = (await conn.execute(
            select(ledger_entries.c.reference, ledger_entries.c.amount)
            .select_from(ledger_entries.outerjoin(usage_records, ledger_entries.c.reference == reference))
            .where(ledger_entries.c.reference.like("usage:%"), orphan)
            .order_by(ledger_entries.c.id).limit(_LIMIT + 1)
        )).all()
        for entry in orphans[:_LIMIT]:
            problems.append(f"ledger {entry.reference}: charge {entry.amount} without its usage record")
        if len(orphans) > _LIMIT:
            problems.append("... more charges without a usage record")

    if spool_dir is not None:
        problems += unreplayed_spool(Path(spool_dir))
    if redis_url:
        problems += [f"redis: customer {customer}: hold {member} expired {age_ms} ms ago and is still counted"
                     for customer, member, age_ms in await expired_redis_holds(redis_url, redis_prefix)]
        problems += [f"redis: replica {replica} is not running and {amount} units of its charges to customer "
                     f"{customer} are not committed: start a gateway again on that replica's spool_dir "
                     "(until then they stay unavailable to the customer)"
                     for customer, replica, amount in await stopped_replicas_pending(redis_url, redis_prefix)]
    return problems


def unreplayed_spool(directory: Path) -> list[str]:
    """Events left in a spool that no running gateway owns (a running one drains its own)."""
    if not directory.is_dir() or not any(directory.glob("*" + SEGMENT_SUFFIX)):
        return []
    fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return []  # a gateway owns it and is draining it
        recovered = read_segments(directory, EventCodec(UsageEvent), lambda e: e.id)
    finally:
        os.close(fd)  # releases the shared lock
    if not recovered.events:
        return []
    cost = sum(e.cost for e in recovered.events)
    return [f"spool {directory}: {len(recovered.events)} usage events ({cost} units of charges) not replayed; "
            "start the gateway with this spool_dir to commit them"]


async def expired_redis_holds(url: str, prefix: str) -> list[tuple[str, str, int]]:
    """(customer id, hold member, ms since expiry) of every hold past its expiry.

    Reads the layout of `billing.redis_wallet` (``{prefix}:h:{customer}``: a sorted set of
    hold members scored by their expiry in Redis server time, ms) without importing it.
    """
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url, decode_responses=True, socket_timeout=5, socket_connect_timeout=5)
    try:
        seconds, micros = cast(tuple[int, int], await client.time())
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        found: list[tuple[str, str, int]] = []
        async for key in client.scan_iter(match=f"{prefix}:h:*", count=500):
            expired = cast(list[tuple[str, float]],
                           await client.zrangebyscore(key, "-inf", now_ms - 1, withscores=True))
            for member, score in expired:
                found.append((str(key).rsplit(":", 1)[-1], member, now_ms - int(score)))
        return found
    finally:
        await client.aclose()


async def stopped_replicas_pending(url: str, prefix: str) -> list[tuple[str, str, int]]:
    """(customer id, replica, units) of uncommitted charges left by replicas that are not running.

    Reads the layout of `billing.redis_wallet` (``{prefix}:w:{customer}`` field ``p:{replica}`` =
    ``"{seq}:{amount}"``; ``{prefix}:r:{replica}`` exists while that replica runs). Such charges
    wait in that replica's usage spool and keep counting until it is started again on it.
    """
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url, decode_responses=True, socket_timeout=5, socket_connect_timeout=5)
    try:
        found: list[tuple[str, str, int]] = []
        running: dict[str, bool] = {}
        async for key in client.scan_iter(match=f"{prefix}:w:*", count=500):
            fields = cast(dict[str, str], await client.hgetall(key))  # decode_responses: text
            for field, value in fields.items():
                if not field.startswith("p:") or int(value.rsplit(":", 1)[-1]) <= 0:
                    continue
                replica = field[2:]
                if replica not in running:
                    running[replica] = bool(await client.exists(f"{prefix}:r:{replica}"))
                if not running[replica]:
                    found.append((str(key).rsplit(":", 1)[-1], replica, int(value.rsplit(":", 1)[-1])))
        return found
    finally:
        await client.aclose()
