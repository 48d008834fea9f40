"""Enforcing key limits on the hot path: an in-memory copy of every key's limits, and counters.

Invariant (spend cap): a request is admitted only if the key's spend this period, plus the
holds of its requests in flight, plus this request's hold (the same most-it-can-cost amount the
wallet holds) stays within the cap; it settles at its charge, which never exceeds its hold. So
concurrent requests can never spend more than the cap, exactly as the balance works.

Rates use fixed one-minute windows (UTC minutes): RPM counts admitted requests, TPM counts the
tokens (in + out) of requests that finished in the minute; a request is refused once the
minute's count has reached the limit, with `Retry-After` = seconds to the next minute. A single
request may take the token count past TPM (its size is known only at its end), as at OpenAI.
Concurrency counts requests in flight; a slot whose request never settles (crashed worker)
expires after `billing.hold_ttl`, like a hold.

Counters live in this process (`LocalCounters`) or in Redis when `[redis] url` is set
(`keylimits.redis.RedisCounters`), so limits hold across replicas. The spend counter of a
period starts from the usage records in the database (one query per key and period, not per
request). Hazard: a Redis that lost its data restarts the counter from the database, which
lacks the last group commit's ~50 ms of spend.

Limits themselves are read from the database into memory every `refresh_interval` seconds (1 s),
so a change made in the portal, the CLI or another replica applies within about that long.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncEngine

from aigateway.keylimits.service import spent_since, to_limits
from aigateway.keylimits.tables import api_key_limits
from aigateway.keylimits.values import KeyLimits, LimitReached, period_id, period_start
from aigateway.store.metadata import utcnow


@dataclass(frozen=True, slots=True)
class Admission:
    """What one admitted request took: released or settled exactly once."""

    key_id: int
    request_id: str
    held: int  # units held against the spend cap (0 = no cap)
    period: str  # spend period id the hold belongs to
    slot: bool  # took a concurrency slot
    count_tokens: bool  # the key has a TPM limit


Base = Callable[[KeyLimits, datetime], Awaitable[int]]


class Counters(Protocol):
    async def admit(self, limits: KeyLimits, request_id: str, most: int, now: float, base: Base) -> Admission: ...

    async def settle(self, admission: Admission, cost: int, tokens: int, now: float) -> None: ...

    async def close(self) -> None: ...


def seconds_to_period_end(period: str, now: datetime) -> int:
    start = period_start(period, now)
    if start is None:
        return 3600  # lifetime: the cap does not reset; an hour is as good as any
    if period == "day":
        end = start + timedelta(days=1)
    else:
        end = (start + timedelta(days=32)).replace(day=1)
    return int((end - now).total_seconds()) + 1


def rate_refusal(kind: str, limit: int, now: float) -> LimitReached:
    unit = "requests" if kind == "requests" else "tokens"
    wait = 60 - int(now % 60)
    return LimitReached("rate_limit_exceeded", kind, f"Rate limit reached for this API key: {limit} {unit} per "
                        f"minute. Retry in {wait} s, or raise the key's limit on the API Keys tab.", wait)


def concurrency_refusal(limit: int) -> LimitReached:
    return LimitReached("rate_limit_exceeded", "concurrency", f"This API key already has {limit} requests in "
                        "flight, its concurrency limit. Retry when one finishes.", 1)


def spend_refusal(limits: KeyLimits, spent: int, now: datetime) -> LimitReached:
    from aigateway.money import format_tmt

    period = {"day": "today", "month": "this month", "lifetime": "in total"}[limits.spend_period]
    return LimitReached("key_spend_limit_reached", "spend", f"This API key's spend cap is reached: "
                        f"{format_tmt(spent)} of {format_tmt(limits.spend_cap or 0)} TMT spent or held {period}, "
                        "and this request may cost more than what is left. Raise the cap on the API Keys tab.",
                        seconds_to_period_end(limits.spend_period, now))


# The refresh's statements, built once (it runs every second on the request loop).
_ALL_LIMITS = select(api_key_limits)
_CHANGED_LIMITS = select(api_key_limits).where(api_key_limits.c.updated_at >= bindparam("since"))


class KeyLimiter:
    def __init__(self, engine: AsyncEngine, counters: Counters, *, refresh_interval: float = 1.0) -> None:
        self._engine = engine
        self.counters = counters
        self.refresh_interval = refresh_interval
        self._limits: dict[int, KeyLimits] = {}
        self._since: datetime | None = None

    def get(self, key_id: int) -> KeyLimits | None:
        return self._limits.get(key_id)

    async def refresh(self) -> None:
        started = utcnow()
        async with self._engine.connect() as conn:
            if self._since is None:
                rows = (await conn.execute(_ALL_LIMITS)).all()
            else:  # overlap a little: replicas' clocks and commit order differ
                rows = (await conn.execute(_CHANGED_LIMITS, {"since": self._since - timedelta(seconds=2)})).all()
        for row in rows:
            self._limits[row.key_id] = to_limits(row)
        self._since = started

    async def _base(self, limits: KeyLimits, now: datetime) -> int:
        async with self._engine.connect() as conn:
            return await spent_since(conn, limits.key_id, period_start(limits.spend_period, now))

    async def admit(self, limits: KeyLimits, request_id: str, most: int) -> Admission | None:
        if limits.spend_cap is None and not (limits.rpm or limits.tpm or limits.concurrency):
            return None
        return await self.counters.admit(limits, request_id, most, time.time(), self._base)

    async def settle(self, admission: Admission, cost: int, tokens: int) -> None:
        await self.counters.settle(admission, cost, tokens, time.time())

    async def close(self) -> None:
        await self.counters.close()


class LocalCounters:
    """Counters in this process. Atomic because every check-and-take runs without an await."""

    def __init__(self, hold_ttl: float = 900.0) -> None:
        self._hold_ttl = hold_ttl
        self._spent: dict[tuple[int, str], int] = {}
        self._held: dict[int, dict[str, tuple[int, str, float]]] = {}  # key -> request -> (amount, period, expiry)
        self._slots: dict[int, dict[str, float]] = {}  # key -> request -> expiry
        self._minute: dict[int, list[int]] = {}  # key -> [minute, requests, tokens]

    def _window(self, key_id: int, now: float) -> list[int]:
        minute = int(now // 60)
        window = self._minute.get(key_id)
        if window is None or window[0] != minute:
            window = self._minute[key_id] = [minute, 0, 0]
        return window

    async def admit(self, limits: KeyLimits, request_id: str, most: int, now: float, base: Base) -> Admission:
        wall = datetime.fromtimestamp(now, UTC)
        pid = period_id(limits.spend_period, wall)
        if limits.spend_cap is not None and (limits.key_id, pid) not in self._spent:
            spent = await base(limits, wall)
            self._spent.setdefault((limits.key_id, pid), spent)
        # From here on no await: check and take in one step.
        slots = self._slots.setdefault(limits.key_id, {})
        if limits.concurrency:
            for rid in [r for r, expiry in slots.items() if expiry <= now]:
                del slots[rid]
            if len(slots) >= limits.concurrency:
                raise concurrency_refusal(limits.concurrency)
        window = self._window(limits.key_id, now)
        if limits.rpm and window[1] >= limits.rpm:
            raise rate_refusal("requests", limits.rpm, now)
        if limits.tpm and window[2] >= limits.tpm:
            raise rate_refusal("tokens", limits.tpm, now)
        held = 0
        if limits.spend_cap is not None:
            holds = self._held.setdefault(limits.key_id, {})
            for rid in [r for r, h in holds.items() if h[2] <= now]:
                del holds[rid]
            spent = self._spent[(limits.key_id, pid)] + sum(h[0] for h in holds.values() if h[1] == pid)
            if spent + most > limits.spend_cap:
                raise spend_refusal(limits, spent, wall)
            holds[request_id] = (most, pid, now + self._hold_ttl)
            held = most
        if limits.concurrency:
            slots[request_id] = now + self._hold_ttl
        window[1] += 1
        return Admission(limits.key_id, request_id, held, pid, bool(limits.concurrency), bool(limits.tpm))

    async def settle(self, admission: Admission, cost: int, tokens: int, now: float) -> None:
        self._slots.get(admission.key_id, {}).pop(admission.request_id, None)
        self._held.get(admission.key_id, {}).pop(admission.request_id, None)
        if admission.held and (admission.key_id, admission.period) in self._spent:
            self._spent[(admission.key_id, admission.period)] += cost
        if admission.count_tokens and tokens:
            self._window(admission.key_id, now)[2] += tokens

    async def close(self) -> None:
        return None
