"""Check and record an attempt in ONE step, so concurrent attempts cannot slip past the limit.

A `Policy` lets the first `free` attempts of a streak through at once; after that
each attempt must wait `base * 2**(hits - free)` seconds (at most `cap`) after the
previous one that was let through. A streak is forgotten `forget` seconds after its
last attempt. The caller counts an attempt BEFORE doing the guarded work (checking
a password, looking up a voucher) and may forgive it afterwards on success.

Invariant: for one key, "is this attempt allowed?" and "count it" are one
conditional INSERT ... ON CONFLICT DO UPDATE ... WHERE <allowed> RETURNING. Two
replicas sending 60 guesses at the same instant meet the same row lock (PostgreSQL)
or the database write lock (SQLite), so at most the allowed number gets a row back;
the rest are refused without the work being done. (The older read-then-write
design let 60 simultaneous guesses all read "no wait" before any was recorded.)

Several keys (per account, per IP, ...) are checked in one transaction in the
fixed order the caller gives: a refusal by any rolls back the others, so a refused
attempt costs nothing, and a fixed order cannot deadlock.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, case, delete, literal, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aigateway.throttle.tables import throttle_counters as t

PURGE_AFTER_MS = 2 * 24 * 3600 * 1000  # longer than any policy's `forget`


@dataclass(frozen=True, slots=True)
class Policy:
    scope: str  # what is limited, e.g. "login:ip"
    free: int  # attempts of a streak let through without any wait
    base: float  # seconds to wait after the `free`-th attempt; doubles with each further one
    cap: float  # longest wait, seconds
    forget: float  # a streak ends this many seconds after its last attempt

    def delay_after(self, hits: int) -> float:
        """Seconds the next attempt must wait after the last of `hits` counted attempts."""
        if hits < self.free:
            return 0.0
        return min(self.base * 2.0 ** (hits - self.free), self.cap)

    def delay_ms_sql(self, hits):
        """delay_after(hits) in ms as a portable SQL CASE (the doubling ends at `cap`)."""
        whens = [(hits < self.free, literal(0))]
        n = self.free
        while self.delay_after(n) < self.cap:
            whens.append((hits == n, literal(int(self.delay_after(n) * 1000))))
            n += 1
        return case(*whens, else_=literal(int(self.cap * 1000)))


@dataclass(frozen=True, slots=True)
class Check:
    policy: Policy
    subject: str  # account id, email, IP, ...: hashed before it is stored
    label: str | None = None  # shown to the operator (never an email or a secret)

    @property
    def key(self) -> str:
        return hashlib.sha256(f"{self.policy.scope}|{self.subject}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    wait: float  # refused: seconds until an attempt would be let through; allowed: the wait the
    #              NEXT attempt faces if this one turns out to be a failure
    refused_by: str | None = None  # the scope that refused


def _now_ms() -> int:
    return int(time.time() * 1000)


def _insert(conn: AsyncConnection):
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return pg_insert(t)
    if dialect == "sqlite":
        return sqlite_insert(t)
    raise RuntimeError(f"throttle: unsupported database dialect {dialect}")


async def _hit(conn: AsyncConnection, check: Check, now_ms: int) -> int | None:
    """The one conditional upsert: the streak's hits after counting, or None when refused."""
    policy = check.policy
    stale = t.c.last_ms < now_ms - int(policy.forget * 1000)
    # `hits < free` on its own: replicas' clocks (and two requests' "now") are not ordered, and a
    # free attempt must never be refused because another one stamped a slightly later time.
    allowed = or_(stale, t.c.hits < policy.free, t.c.last_ms + policy.delay_ms_sql(t.c.hits) <= now_ms)
    stmt = _insert(conn).values(key_hash=check.key, scope=policy.scope, label=check.label, hits=1,
                                last_ms=now_ms)
    stmt = stmt.on_conflict_do_update(
        index_elements=[t.c.key_hash],
        set_={"hits": case((stale, 1), else_=t.c.hits + 1),
              "last_ms": case((t.c.last_ms > now_ms, t.c.last_ms), else_=now_ms),  # never moves back
              "label": check.label},
        where=allowed,
    ).returning(t.c.hits)
    return (await conn.execute(stmt)).scalar_one_or_none()


async def _wait_of(conn: AsyncConnection, check: Check, now_ms: int) -> float:
    row = (await conn.execute(select(t.c.hits, t.c.last_ms).where(t.c.key_hash == check.key))).first()
    if row is None:
        return 0.0
    ready = row.last_ms + int(check.policy.delay_after(row.hits) * 1000)
    return max(0.0, (ready - now_ms) / 1000)


async def attempt(engine: AsyncEngine, checks: Sequence[Check]) -> Verdict:
    """Count one attempt against every check, or against none when any refuses."""
    now_ms = _now_ms()
    next_wait = 0.0
    async with engine.connect() as conn:
        async with conn.begin() as tx:
            for check in checks:
                hits = await _hit(conn, check, now_ms)
                if hits is None:
                    await tx.rollback()
                    break
                next_wait = max(next_wait, check.policy.delay_after(hits))
            else:
                return Verdict(True, next_wait)
        # refused: report the longest wait (another check may be closer to its limit too)
        waits = {c.policy.scope: await _wait_of(conn, c, now_ms) for c in checks}
        scope = max(waits, key=waits.__getitem__)
        return Verdict(False, max(waits[scope], 1.0), scope)  # at least 1 s: the row was just refused


async def forgive(engine: AsyncEngine, check: Check, *, clear: bool = False) -> None:
    """After a success: `clear` ends the streak; otherwise only this attempt is uncounted."""
    async with engine.begin() as conn:
        if clear:
            await conn.execute(delete(t).where(t.c.key_hash == check.key))
        else:
            await conn.execute(update(t).where(and_(t.c.key_hash == check.key, t.c.hits > 0))
                               .values(hits=t.c.hits - 1))


@dataclass(frozen=True, slots=True)
class Lock:
    scope: str
    label: str | None
    hits: int
    until_ms: int


async def locks(engine: AsyncEngine, policies: Sequence[Policy]) -> list[Lock]:
    """Subjects that are waiting right now (for the operator)."""
    now_ms = _now_ms()
    out: list[Lock] = []
    async with engine.connect() as conn:
        for policy in policies:
            rows = (await conn.execute(select(t.c.label, t.c.hits, t.c.last_ms).where(
                t.c.scope == policy.scope, t.c.hits >= policy.free,
                t.c.last_ms >= now_ms - int(policy.forget * 1000)))).all()
            for r in rows:
                until = r.last_ms + int(policy.delay_after(r.hits) * 1000)
                if until > now_ms:
                    out.append(Lock(policy.scope, r.label, r.hits, until))
    return sorted(out, key=lambda lock: -lock.until_ms)


async def purge_stale(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(t).where(t.c.last_ms < _now_ms() - PURGE_AFTER_MS))
