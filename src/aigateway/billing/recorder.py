"""Group commit of usage records and ledger charges, off the response path.

Requests append a `UsageEvent` to a list (no I/O). Every `flush_interval`
seconds, or sooner once `flush_max` events wait, one transaction inserts all
usage rows, all ledger charges, and one balance update per customer. On
shutdown the rest is flushed. A process that crashes loses at most the events
of the last interval (50 ms by default); a transaction that fails is retried
with the same events, and charges keep their unique ledger reference, so a
retry cannot charge twice.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field, fields
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from aigateway.accounts.tables import api_keys
from aigateway.billing.ledger import insert_ignoring_duplicates, move_balance
from aigateway.billing.tables import ledger_entries, usage_records
from aigateway.billing.wallet import Wallet
from aigateway.store.bulk import bulk_insert
from aigateway.store.metadata import utcnow

log = logging.getLogger(__name__)

# What a driver raises when a row of the batch is already there.
_DUPLICATE_ERRORS: tuple[type[Exception], ...] = (sqlite3.IntegrityError, IntegrityError)
try:
    from asyncpg.exceptions import UniqueViolationError

    _DUPLICATE_ERRORS += (UniqueViolationError,)
except ImportError:  # pragma: no cover - asyncpg is a dependency
    pass


@dataclass(slots=True)
class UsageEvent:
    id: str
    customer_id: int
    api_key_id: int | None
    model: str
    endpoint: str
    status: int
    provider: str | None = None
    upstream_model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    estimated: bool = False
    cost: int = 0
    price_version_id: int | None = None
    stream: bool = False
    error: str | None = None
    latency_ms: int = 0
    created_at: datetime = field(default_factory=utcnow)
    # The upstream reported more than the hold covered: charged the hold, counts kept as reported.
    capped: bool = False


class UsageRecorder:
    def __init__(self, engine: AsyncEngine, wallet: Wallet, *, flush_interval: float = 0.05,
                 flush_max: int = 500) -> None:
        self._engine = engine
        self._wallet = wallet
        self._interval = flush_interval
        self._max = flush_max
        self._pending: list[UsageEvent] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closing = False
        # One flush at a time: two concurrent flushes would write the same batch and
        # then each remove it from the queue, dropping newer events.
        self._flush_lock = asyncio.Lock()
        self.flushes = 0

    def record(self, event: UsageEvent) -> None:
        self._pending.append(event)
        if len(self._pending) >= self._max:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="usage-recorder")

    async def _run(self) -> None:
        while not self._closing:
            try:
                await asyncio.wait_for(self._wake.wait(), self._interval)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # keep the events; the next pass retries them
                log.exception("usage flush failed; %d events kept for retry", len(self._pending))
                await asyncio.sleep(min(1.0, self._interval * 10))

    async def flush(self) -> None:
        async with self._flush_lock:
            while self._pending:
                batch = self._pending[: self._max]
                await self._write(batch)
                del self._pending[: len(batch)]
                self.flushes += 1

    async def _write(self, batch: list[UsageEvent]) -> None:
        charges = [e for e in batch if e.cost]
        async with self._wallet.lock:
            try:
                balances = await self._commit(batch, charges, careful=False)
            except _DUPLICATE_ERRORS:
                # Part of this batch is already in the database: an earlier attempt did
                # commit although it reported a failure. Write only what is missing.
                balances = await self._commit(batch, charges, careful=True)
            per_customer: dict[int, int] = defaultdict(int)
            for e in charges:
                per_customer[e.customer_id] += e.cost
            for customer_id, amount in per_customer.items():
                balance, version = balances.get(customer_id, (0, -1))
                await self._wallet.flushed(customer_id, amount, balance, version)

    async def _commit(self, batch: list[UsageEvent], charges: list[UsageEvent], *,
                      careful: bool) -> dict[int, tuple[int, int]]:
        """One transaction: balances, key last-use, usage rows, ledger charges."""
        last_used: dict[int, datetime] = {}
        for e in batch:
            if e.api_key_id is not None:
                last_used[e.api_key_id] = max(e.created_at, last_used.get(e.api_key_id, e.created_at))
        async with self._engine.begin() as conn:
            new = charges
            if careful:
                refs = [f"usage:{e.id}" for e in charges]
                seen = set((await conn.execute(
                    select(ledger_entries.c.reference).where(ledger_entries.c.reference.in_(refs))
                )).scalars()) if refs else set()
                new = [e for ref, e in zip(refs, charges) if ref not in seen]
            moved: dict[int, int] = defaultdict(int)
            for e in new:
                moved[e.customer_id] -= e.cost
            balances: dict[int, tuple[int, int]] = {}
            # SQLAlchemy statements first: they open the transaction the bulk inserts join.
            for customer_id, amount in moved.items():
                row = await move_balance(conn, customer_id, amount)
                balances[customer_id] = (row.balance, row.balance_version)
            for key_id, when in last_used.items():
                await conn.execute(
                    update(api_keys).where(api_keys.c.id == key_id)
                    .values(last_used_at=when, updated_at=api_keys.c.updated_at)
                )
            if careful:
                await conn.execute(insert_ignoring_duplicates(conn, usage_records), [_row(e) for e in batch])
                if new:
                    await conn.execute(ledger_entries.insert(), [_charge(e) for e in new])
            else:
                if not moved and not last_used:
                    await conn.execute(select(1))  # open the transaction for the bulk inserts
                await bulk_insert(conn, usage_records, _FIELDS, [tuple(getattr(e, f) for f in _FIELDS)
                                                                 for e in batch])
                await bulk_insert(conn, ledger_entries, _CHARGE_FIELDS,
                                  [tuple(_charge(e).values()) for e in new])
        return balances

    async def close(self) -> None:
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        await self.flush()


_FIELDS = tuple(f.name for f in fields(UsageEvent))


def _row(event: UsageEvent) -> dict:
    # dataclasses.asdict deep-copies every value; this is a flat shallow read.
    return {name: getattr(event, name) for name in _FIELDS}


_CHARGE_FIELDS = ("customer_id", "amount", "kind", "reference", "memo", "created_at")


def _charge(event: UsageEvent) -> dict:
    return {"customer_id": event.customer_id, "amount": -event.cost, "kind": "charge",
            "reference": f"usage:{event.id}", "memo": event.model, "created_at": event.created_at}
