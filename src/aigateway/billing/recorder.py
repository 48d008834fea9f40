"""Group commit of usage records and ledger charges, off the response path.

Requests append a `UsageEvent` to a list (no I/O). Every `flush_interval`
seconds, or sooner once `flush_max` events wait, the waiting events are written
to the local spool (`billing.spool`: one write per group, fsync on a thread)
and then one transaction inserts all usage rows, all ledger charges, and one
balance update per customer. The spool is written on its own schedule, never
behind a slow or failed commit, so a process kill loses at most the events of
the last interval; everything spooled is replayed at the next start. A
transaction that fails is retried with the same events, and charges keep their
unique ledger reference (`usage:<id>`), so neither a retry nor a replay can
charge twice. On shutdown the rest is committed for up to `shutdown_grace`
seconds, then left in the spool.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field, fields
from datetime import datetime
from operator import attrgetter
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from aigateway.accounts.tables import api_keys
from aigateway.background import repeat
from aigateway.billing import rollups
from aigateway.billing.ledger import LedgerError, move_balance
from aigateway.billing.spool import Spool
from aigateway.billing.tables import ledger_entries, usage_records
from aigateway.billing.wallet import Wallet
from aigateway.metrics import observe_commit
from aigateway.store.bulk import bulk_insert, insert_ignoring_duplicates
from aigateway.store.metadata import utcnow

log = logging.getLogger(__name__)


def _is_duplicate(exc: Exception) -> bool:
    """What a driver raises when a row of the batch is already there. asyncpg's error is looked
    up only once asyncpg is loaded (it is whenever the database is PostgreSQL), so a SQLite
    install never imports the driver (~2.8 MiB of every process)."""
    if isinstance(exc, (sqlite3.IntegrityError, IntegrityError)):
        return True
    asyncpg_errors = sys.modules.get("asyncpg.exceptions")
    return asyncpg_errors is not None and isinstance(exc, asyncpg_errors.UniqueViolationError)


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
    # The breakdown the cost was computed from (aigateway.usage.Counts); parts of input/output tokens.
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_long_tokens: int = 0
    reasoning_tokens: int = 0
    images: int = 0
    request_fees: int = 0


class UsageRecorder:
    def __init__(self, engine: AsyncEngine, wallet: Wallet, *, flush_interval: float = 0.05,
                 flush_max: int = 500, spool: Spool[UsageEvent] | None = None,
                 shutdown_grace: float = 30.0) -> None:
        self._engine = engine
        self._wallet = wallet
        self._interval = flush_interval
        self._max = flush_max
        self._spool = spool
        self._grace = shutdown_grace
        self._waiting: list[UsageEvent] = []  # recorded, not yet in the spool
        self._pending: list[UsageEvent] = []  # in the spool (or no spool), not yet committed
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._retry_at = 0.0
        self._closing = False
        # One flush at a time: two concurrent flushes would write the same batch and
        # then each remove it from the queue, dropping newer events.
        self._flush_lock = asyncio.Lock()

    def record(self, event: UsageEvent) -> None:
        self._waiting.append(event)
        if len(self._waiting) >= self._max:
            self._wake.set()

    def uncommitted_event(self, event_id: str) -> UsageEvent | None:
        """The event with this id if it is still waiting for the group commit (receipts read it)."""
        for queue in (self._waiting, self._pending):
            for event in reversed(queue):
                if event.id == event_id:
                    return event
        return None

    @property
    def uncommitted(self) -> int:
        return len(self._waiting) + len(self._pending)

    async def replay(self) -> int:
        """Open the spool and commit what earlier processes left in it, before any request
        is served (so the wallet, which reads balances from the database, counts them).
        Idempotent: events already committed are skipped by their usage id."""
        if self._spool is None:
            return 0
        recovered = self._spool.open()
        events = recovered.events
        for start in range(0, len(events), self._max):
            await self._write(events[start:start + self._max], replay=True)
        self._spool.forget_recovered()
        if events or recovered.torn:
            log.warning("replayed %d usage events from the spool %s (%d torn lines skipped)",
                        len(events), self._spool.directory, recovered.torn)
        return len(events)

    def start(self) -> None:
        # Every `flush_interval`, or at once when `flush_max` events wait (`record` sets `_wake`).
        self._task = asyncio.create_task(
            repeat(self._turn, self._interval, "usage-recorder", wake=self._wake, until=lambda: self._closing),
            name="usage-recorder")

    def _spool_waiting(self) -> None:
        """Move the waiting events to the spool: one write, never waiting for the database."""
        if not self._waiting:
            return
        group, self._waiting = self._waiting, []
        if self._spool is not None:
            try:
                self._spool.append(group)
            except OSError:
                self._waiting[:0] = group  # keep them in order; the next pass retries
                log.exception("writing %d usage events to the spool failed", len(group))
                return
        self._pending.extend(group)

    async def _turn(self) -> None:
        """Spool what waits; start a commit unless one is running or a failed one is pausing."""
        self._spool_waiting()
        if (self._pending and (self._flusher is None or self._flusher.done())
                and time.monotonic() >= self._retry_at):
            self._flusher = asyncio.create_task(self._background_flush(), name="usage-commit")

    async def _background_flush(self) -> None:
        try:
            await self.flush()
        except Exception:  # keep the events (they are in the spool too); retried after a pause
            log.exception("usage flush failed; %d events kept for retry", self.uncommitted)
            self._retry_at = time.monotonic() + min(1.0, self._interval * 10)

    async def flush(self) -> None:
        self._spool_waiting()
        async with self._flush_lock:
            while self._pending:
                batch = self._pending[: self._max]
                started = time.monotonic()
                await self._write(batch)
                took = time.monotonic() - started
                del self._pending[: len(batch)]
                if self._spool is not None:
                    self._spool.committed(len(batch))
                observe_commit(len(batch), took)  # Prometheus, in memory (after the bookkeeping)

    async def _write(self, batch: list[UsageEvent], *, replay: bool = False) -> None:
        charges = [e for e in batch if e.cost]
        async with self._wallet.lock:
            if replay:  # probably partly committed already
                balances = await self._commit(batch, charges, careful=True)
            else:
                try:
                    balances = await self._commit(batch, charges, careful=False)
                except Exception as exc:
                    if not _is_duplicate(exc):
                        raise
                    # Part of this batch is already in the database: an earlier attempt did
                    # commit although it reported a failure. Write only what is missing.
                    balances = await self._commit(batch, charges, careful=True)
            per_customer: dict[int, int] = defaultdict(int)
            for e in charges:
                # Replayed charges were never settled in this process's wallet: only the new
                # balance is passed on, nothing leaves its unflushed sum.
                per_customer[e.customer_id] += 0 if replay else e.cost
            for customer_id, amount in per_customer.items():
                balance, version = balances.get(customer_id, (0, -1))
                await self._wallet.flushed(customer_id, amount, balance, version)

    async def _commit(self, batch: list[UsageEvent], charges: list[UsageEvent], *,
                      careful: bool) -> dict[int, tuple[int, int]]:
        """One transaction: balances, key last-use, usage rows, ledger charges, daily rollups."""
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
                new = [e for ref, e in zip(refs, charges, strict=True) if ref not in seen]
            moved: dict[int, int] = defaultdict(int)
            for e in new:
                moved[e.customer_id] -= e.cost
            balances: dict[int, tuple[int, int]] = {}
            # SQLAlchemy statements first: they open the transaction the bulk inserts join.
            for customer_id, amount in moved.items():
                row = await move_balance(conn, customer_id, amount)
                if row is None:  # customers are never deleted; fail the batch (retried) rather than lose it
                    raise LedgerError(f"no customer with id {customer_id}")
                balances[customer_id] = (row.balance, row.balance_version)
            if last_used:  # one executemany for all keys of the batch
                await conn.execute(_KEY_USED, [{"used_key": k, "used_at": when} for k, when in last_used.items()])
            if careful:
                # Roll up only the records this attempt inserts: the rest were counted when they were.
                ids = [e.id for e in batch]
                present = set((await conn.execute(
                    select(usage_records.c.id).where(usage_records.c.id.in_(ids))
                )).scalars())
                await conn.execute(insert_ignoring_duplicates(conn, usage_records), [_row(e) for e in batch])
                fresh = {e.id: e for e in batch if e.id not in present}
                await rollups.add(conn, rollups.summarize(fresh.values()))
                if new:
                    await conn.execute(ledger_entries.insert(), [_charge(e) for e in new])
            else:
                if not moved and not last_used:
                    await conn.execute(select(1))  # open the transaction for the bulk inserts
                await bulk_insert(conn, usage_records, _FIELDS, list(map(_row_values, batch)))
                await bulk_insert(conn, ledger_entries, _CHARGE_FIELDS, list(map(_charge_values, new)))
                # One upsert per (customer, day, model) of the batch, in this same transaction.
                await rollups.add(conn, rollups.summarize(batch))
        return balances

    async def close(self, grace: float | None = None) -> None:
        """Commit what is left, trying for up to `grace` seconds (default `shutdown_grace`);
        then leave the rest in the spool for the next start."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        self._spool_waiting()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self._grace if grace is None else grace)
        while True:
            try:
                await asyncio.wait_for(self.flush(), max(0.01, deadline - loop.time()))
                break
            except Exception as exc:  # noqa: BLE001 - any failure: retry until the deadline
                if loop.time() >= deadline:
                    if self._spool is not None:
                        log.error("database unavailable at shutdown (%s): %d usage events kept in the "
                                  "spool %s for the next start", type(exc).__name__, self.uncommitted,
                                  self._spool.directory)
                    else:
                        log.error("database unavailable at shutdown (%s): %d usage events LOST (no spool)",
                                  type(exc).__name__, self.uncommitted)
                    break
                await asyncio.sleep(min(0.5, max(0.0, deadline - loop.time())))
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
        if self._spool is not None:
            self._spool.close()


_FIELDS = tuple(f.name for f in fields(UsageEvent))
_row_values = attrgetter(*_FIELDS)  # an event's values in _FIELDS order, read in C (one tuple per row)

# Built once (building it per batch cost more Python than running it); `updated_at` is set to
# itself so its on-update default does not count a key's use as an edit.
_KEY_USED = (update(api_keys).where(api_keys.c.id == bindparam("used_key"))
             .values(last_used_at=bindparam("used_at"), updated_at=api_keys.c.updated_at))


def _row(event: UsageEvent) -> dict[str, Any]:
    # dataclasses.asdict deep-copies every value; this is a flat shallow read.
    return {name: getattr(event, name) for name in _FIELDS}


_CHARGE_FIELDS = ("customer_id", "amount", "kind", "reference", "memo", "created_at")


def _charge_values(event: UsageEvent) -> tuple[Any, ...]:
    """The ledger charge of an event, in _CHARGE_FIELDS order."""
    return event.customer_id, -event.cost, "charge", f"usage:{event.id}", event.model, event.created_at


def _charge(event: UsageEvent) -> dict[str, Any]:
    return dict(zip(_CHARGE_FIELDS, _charge_values(event), strict=True))
