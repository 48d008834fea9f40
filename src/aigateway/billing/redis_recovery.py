"""Recovery of the shared wallet (billing.redis_wallet): after Redis lost its data, after a restart.

Invariant: no moment exists where money this replica holds or owes is counted neither in
Redis nor in the database. After a data loss, holds stay refused until every live replica
has put back its open holds and pending charges; after a restart, a previous run's pending
field is zeroed only in the same script that installs a balance read after its spool was
replayed.

Redis losing its data (restart without persistence, eviction, FLUSHALL) would
forget the open holds of that moment, and new holds would be placed against the
full balance: an overdraft. So every hold checks the generation key ``P:epoch``
in the same script. A replica that finds it missing or changed (on a hold, or on
its heartbeat, once a second) opens a recovery window (``P:recovering``,
``recovery_seconds``, at least three heartbeats, extended by each replica that
notices), writes its heartbeat, re-registers every open hold it placed (``ZADD
NX`` at the hold's original expiry, idempotent) and its pending charges, and
only then adopts the new generation. While the window is open every replica
refuses new holds (``WalletUnavailable`` -> 503 with ``Retry-After``); each live
replica notices within one heartbeat, so by the window's end all open holds are
back. A replica that starts fresh against an empty Redis creates the generation
without a window (a new deployment looks the same), so a replica start that
coincides with a data loss could accept holds for up to one heartbeat before an
older replica notices: use AOF persistence and ``maxmemory-policy noeviction``.

The restart: a replica that dies with settled charges it has not committed
leaves its pending field behind, and it keeps counting, however long the replica is
down: those charges are in its usage spool (billing/spool.py) and are committed when
it starts again on that spool. The replica id is kept in the spool directory, so the
restarted process owns the same field; after replaying its spool it rewrites the field
to zero together with a snapshot read from the database (`restarted`). Charges the
crash lost before they reached the spool (at most one flush interval) are forgotten
then. Cost: a dead replica's uncommitted charges keep that money unavailable until it
is restarted (`aigateway admin reconcile` lists such fields), never an overdraft.
Sequence numbers start from the clock (microseconds), so a restarted replica's writes
win over its previous run's.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from aigateway.accounts.tables import customers
from aigateway.billing.redis_pipeline import PipelinedScript
from aigateway.billing.wallet import Hold

log = logging.getLogger(__name__)


class Pending:
    """This replica's own charges for one customer, the truth its Redis field copies."""

    __slots__ = ("balance", "inflight", "unflushed", "unsnapped", "version")

    def __init__(self) -> None:
        self.unflushed = 0  # settled, not yet committed by the recorder
        self.unsnapped = 0  # committed, but no snapshot known to contain them yet
        self.balance = 0  # the newest snapshot this replica's commits returned
        self.version = -1
        self.inflight = 0  # Redis writes under way

    @property
    def amount(self) -> int:
        return self.unflushed + self.unsnapped


class Recovery:
    """RedisWallet's recovery steps; the state they work on is the wallet's (declared here for the type checker)."""

    replica: str
    _engine: AsyncEngine
    _redis: aioredis.Redis
    _prefix: str
    _pending_field: str
    _alive_key: str
    _epoch_key: str
    _recovering_key: str
    _replica_ttl_ms: int
    _state_ttl_ms: int
    _recovery_ms: int
    _epoch: str | None
    _recovery: asyncio.Future[Any] | None
    _open: dict[int, Hold]
    _pending: dict[int, Pending]
    _seq: Any  # itertools.count
    _previous_run_owed: bool
    _adopt_script: AsyncScript
    _reregister_script: AsyncScript
    _sync_script: PipelinedScript
    _sync_direct: AsyncScript  # the same script, for an explicit pipeline

    def _keys(self, customer_id: int) -> list[str]:
        return [f"{self._prefix}:w:{customer_id}", f"{self._prefix}:h:{customer_id}"]

    def _member(self, hold: Hold) -> str:
        return f"{self.replica}:{hold.id}:{hold.amount}"

    async def _recover(self) -> None:
        """Adopt the current generation; after a data loss, first put back what this replica owns.

        One recovery at a time per replica; if it fails (Redis flapping) the generation is not
        adopted, so the next hold or heartbeat tries again, and holds stay refused meanwhile.
        """
        task = self._recovery
        if task is None or task.done():
            task = self._recovery = asyncio.ensure_future(self._reregister())
        await asyncio.shield(task)

    async def _reregister(self) -> None:
        known = self._epoch
        epoch, _left = await self._adopt_script(keys=[self._epoch_key, self._recovering_key],
                                                args=[known or "", uuid.uuid4().hex, self._recovery_ms])
        if epoch == known:
            return
        if known is not None:
            holds = self._live_holds()
            log.warning("wallet replica %s: Redis lost its data (generation %s -> %s); re-registering %d open "
                        "hold(s) and the pending charges of %d customer(s); new holds wait %.1f s",
                        self.replica, known, epoch, len(holds), len(self._pending), self._recovery_ms / 1000)
            by_customer: dict[int, list[Any]] = {}
            for hold in holds:
                by_customer.setdefault(hold.customer_id, []).extend(
                    [self._member(hold), int(hold.expires_at * 1000)])
            # Heartbeat first: other replicas' holds would drop pending fields of a "dead" replica.
            await self._redis.set(self._alive_key, "1", px=self._replica_ttl_ms)
            async with self._redis.pipeline(transaction=False) as pipe:
                for customer_id, pairs in by_customer.items():
                    await self._reregister_script(keys=self._keys(customer_id), args=[self._state_ttl_ms, *pairs],
                                                  client=pipe)
                for customer_id, mine in self._pending.items():
                    await self._sync_direct(
                        keys=self._keys(customer_id),
                        args=["", self._pending_field, next(self._seq), mine.amount, mine.balance, mine.version,
                              self._state_ttl_ms], client=pipe)
                await pipe.execute()
        self._epoch = epoch

    def _live_holds(self) -> list[Hold]:
        """This replica's open holds, dropping those long past their expiry (never settled)."""
        stale = time.time() - 60.0  # expiry is Redis server time: allow for clock skew
        for hold_id in [i for i, h in self._open.items() if h.expires_at < stale]:
            del self._open[hold_id]
        return list(self._open.values())

    async def restarted(self) -> None:
        """Clear what this replica's previous run left in Redis, once its spool is replayed.

        Its pending fields counted the charges that run settled and had not committed; the
        replay has committed those that reached the spool. Each field is rewritten to zero
        in one script with the customer's balance read from the database now, so at no moment
        are those charges missing from both the balance and pending. If Redis or the database
        cannot be reached, `refresh` tries again; until then the old fields keep counting
        (conservative).
        """
        self._previous_run_owed = True
        try:
            await self._clear_previous_run()
        except (RedisError, OSError, DBAPIError) as exc:
            log.warning("wallet replica %s could not clear its previous run's pending charges yet (%s); "
                        "retrying", self.replica, type(exc).__name__)

    async def _clear_previous_run(self) -> None:
        field = self._pending_field
        keys = [key async for key in self._redis.scan_iter(match=f"{self._prefix}:w:*", count=1000)]
        owed: list[int] = []
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in chunk:
                    pipe.hget(key, field)
                values = await pipe.execute()
            owed += [int(key.rsplit(":", 1)[1]) for key, value in zip(chunk, values, strict=True)
                     if value is not None]
        if owed:
            await self._zero_previous_fields(owed)
        self._previous_run_owed = False

    async def _zero_previous_fields(self, owed: list[int]) -> None:
        field = self._pending_field
        async with self._engine.connect() as conn:
            rows = (await conn.execute(
                select(customers.c.id, customers.c.balance, customers.c.balance_version)
                .where(customers.c.id.in_(owed))
            )).all()
        for row in rows:
            # This run's own pending amount (zero at start-up; a retry from `refresh` may run
            # after this run settled charges of its own, which the field must keep counting).
            mine = self._pending.get(row.id)
            await self._sync_script(keys=self._keys(row.id), args=[
                "", field, next(self._seq), mine.amount if mine else 0, row.balance, row.balance_version,
                self._state_ttl_ms])
        log.info("wallet replica %s: cleared the pending charges of its previous run for %d customer(s)",
                 self.replica, len(rows))
