"""Holds shared by several gateway replicas through Redis (one PostgreSQL, one Redis).

Every replica places and settles holds with one Redis round trip and no
database round trip, and all of them see the same open holds, so concurrent
requests spread over replicas cannot overdraw a balance. Needs Redis 6.2+,
standalone or Sentinel (the scripts read heartbeat keys they do not declare,
which Redis Cluster forbids).

Invariant: available = balance - pending charges of every replica - open holds, in one
atomic script per hold, so no interleaving of replicas can overdraw. The key layout and
the scripts are in billing.redis_scripts; recovery after a data loss or a restart in
billing.redis_recovery.

Why pending is per replica, absolute and sequenced (the design first sketched had
one ``pend`` counter, incremented by settle and decremented by flushed):

* Each replica knows exactly which of its charges are settled but not committed
  (settle adds, the recorder's ``flushed`` subtracts). Redis holds a copy, written
  as an absolute value with a per-replica sequence number, so a write that timed
  out (outcome unknown) is simply written again, never counted twice; a late,
  reordered write cannot undo a newer one; and a field lost with Redis data or
  deleted while the replica was presumed dead is restored at the next repair
  pass (every second, with the refresh). Settle and release never fail the
  request over a Redis error: the hold stays counted (conservative) and the
  state is repaired later; so a Redis blip never loses a usage record.
* A charge leaves pending only in the same atomic write that installs a snapshot
  containing it (the balance the recorder's commit returned), so balance and
  pending never disagree in the unsafe direction. When a batch's charges had all
  been committed by an earlier attempt (the recorder passes version -1), the
  wallet reads the balance from the database before they leave pending.
* The crash window: a replica that dies with settled charges it has not committed
  leaves its pending field behind, and it keeps counting until the replica starts again
  on its spool and clears it (billing.redis_recovery). Sequence numbers start from the
  clock (microseconds), so a restarted replica's writes win over its previous run's.
* Expiry uses Redis server time, so clock skew between replicas does not matter.
* The refresh watermark is shared (``P:since``): a replica that starts after all
  others were down first catches up on every change since the last pass of any
  replica, before its first hold.

Redis being unreachable fails new holds closed with ``WalletUnavailable`` (503, never a
free request, never a 500); settle and release keep working from memory and repair.

Residual risks (bounded, documented): a replica whose event loop stalls longer
than ``replica_ttl`` is presumed dead; its pending charges stop counting until its
next repair pass. Idle state expires after ``state_ttl`` (7 days) and is reloaded
from the database when needed.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from aigateway.accounts.tables import customers
from aigateway.background import repeat
from aigateway.billing import redis_scripts as scripts
from aigateway.billing.redis_pipeline import ScriptPipeline
from aigateway.billing.redis_recovery import Pending, Recovery
from aigateway.billing.redis_scripts import connect
from aigateway.billing.wallet import Hold, InsufficientBalance, WalletUnavailable
from aigateway.singleflight import load_once
from aigateway.store.metadata import utcnow

log = logging.getLogger(__name__)

# What "the state cannot be reached right now" looks like: new holds get a 503, not a 500.
_UNREACHABLE = (RedisError, OSError, TimeoutError, DBAPIError)
# Retry-After for a Redis that does not answer (a restart takes a second or two).
_UNREACHABLE_RETRY_AFTER = 2


class RedisWallet(Recovery):
    """The `Wallet` of several replicas: holds and pending charges live in Redis."""

    def __init__(self, engine: AsyncEngine, url: str, *, hold_ttl: float = 900.0, key_prefix: str = "aigw",
                 replica_ttl: float = 30.0, state_ttl: float = 7 * 86400.0, recovery_seconds: float = 5.0,
                 client: aioredis.Redis | None = None, replica: str | None = None) -> None:
        self._engine = engine
        self._redis = client or connect(url)
        self._hold_ttl_ms = max(1, int(hold_ttl * 1000))
        self._state_ttl_ms = int(max(state_ttl, 2 * hold_ttl, 3600.0) * 1000)
        self._replica_ttl_ms = max(100, int(replica_ttl * 1000))
        # The heartbeat also watches the generation key, so it runs at least once a second.
        self._beat_interval = min(self._replica_ttl_ms / 4000, 1.0)
        # Long enough for every live replica to notice a data loss (a heartbeat, with retries).
        self._recovery_ms = int(max(recovery_seconds, 3 * self._beat_interval) * 1000)
        self._prefix = key_prefix
        # Stable across restarts when given (kept in the usage spool directory): see `restarted`.
        self.replica = replica or uuid.uuid4().hex[:12]
        self._pending_field = f"p:{self.replica}"
        self._replica_prefix = f"{key_prefix}:r:"
        self._alive_key = self._replica_prefix + self.replica
        self._since_key = f"{key_prefix}:since"
        self._epoch_key = f"{key_prefix}:epoch"
        self._recovering_key = f"{key_prefix}:recovering"
        self._epoch: str | None = None  # the generation of the Redis state this replica registered in
        self._recovery: asyncio.Future[Any] | None = None
        self._open: dict[int, Hold] = {}  # holds placed here and not yet settled or released
        self._eager: asyncio.Future[Any] | None = None
        self._warned_at = float("-inf")
        self._ids = itertools.count(1)
        # From the clock, so a restarted replica's writes win over its previous run's.
        self._seq = itertools.count(time.time_ns() // 1000)
        self._previous_run_owed = False  # set by `restarted` until its fields are cleared
        # The recorder commits and calls `flushed` under this lock (protocol); in Redis,
        # snapshot versions and sequence numbers already order concurrent writers.
        self.lock = asyncio.Lock()
        self._pending: dict[int, Pending] = {}
        self._dirty: set[int] = set()  # customers whose Redis copy may be off: rewrite it
        self._stale_holds: list[tuple[int, str]] = []  # releases that failed: retry them
        self._since: datetime | None = None
        self._started: asyncio.Future[Any] | None = None
        self._beat_task: asyncio.Task[None] | None = None
        self._loading: dict[int, asyncio.Future[None]] = {}
        self._closed = False
        r = self._redis
        # The scripts every request runs (hold, then settle or release) share round trips.
        self._pipeline = ScriptPipeline(r)
        self._hold_script = self._pipeline.script(scripts.HOLD)
        self._available_script = r.register_script(scripts.AVAILABLE)
        self._release_script = self._pipeline.script(scripts.RELEASE)
        self._sync_script = self._pipeline.script(scripts.SYNC)
        self._sync_direct = self._sync_script.direct  # inside an explicit pipeline (recovery)
        self._apply_script = r.register_script(scripts.APPLY)
        self._beat_script = r.register_script(scripts.BEAT)
        self._adopt_script = r.register_script(scripts.ADOPT)
        self._reregister_script = r.register_script(scripts.REREGISTER)



    # -- life cycle --------------------------------------------------------------------

    async def _ensure_started(self) -> None:
        started = self._started
        if started is None or (started.done() and (started.cancelled() or started.exception() is not None)):
            started = self._started = asyncio.ensure_future(self._start())  # first use, or retry
        elif started.done():
            return
        await asyncio.shield(started)

    def start_soon(self) -> None:
        """Join the replicas now, in the background, rather than at the first request.

        A replica that never talked to Redis cannot tell a lost state from a new one; one
        that joined at start-up knows the generation, so a data loss it notices later is
        recovered from instead of trusted. Failures (Redis down) are retried by `refresh`.
        """
        async def start() -> None:
            try:
                await self._ensure_started()
            except Exception as exc:
                log.warning("wallet replica %s could not reach Redis at start-up (%s: %s); retrying",
                            self.replica, type(exc).__name__, exc)

        self._eager = asyncio.ensure_future(start())

    async def _start(self) -> None:
        await self._recover()  # adopt (or create) the generation
        await self._beat()
        if self._closed:  # shut down while starting: no heartbeat task to leak
            return
        self._beat_task = asyncio.create_task(repeat(self._beat, self._beat_interval, "wallet heartbeat"),
                                              name="wallet-heartbeat")
        try:  # catch up on changes made while no replica was watching, before the first hold
            await self._refresh()
        except Exception:
            log.exception("first balance refresh failed; the periodic refresh retries it")

    async def _beat(self) -> None:
        had_key, epoch = await self._beat_script(keys=[self._alive_key, self._epoch_key],
                                                 args=[self._replica_ttl_ms])
        if not had_key and self._beat_task is not None:
            # Presumed dead (event loop stalled, or Redis lost its data): other replicas may
            # have deleted our pending fields. Write them all again.
            log.warning("wallet replica %s had lost its heartbeat key; rewriting its pending charges",
                        self.replica)
            self._dirty.update(self._pending)
        if epoch != self._epoch:
            await self._recover()

    async def close(self) -> None:
        """Stop the heartbeat and say goodbye (after the recorder's last flush)."""
        if self._closed:
            return
        self._closed = True
        if self._eager is not None:
            self._eager.cancel()
            await asyncio.gather(self._eager, return_exceptions=True)
        if self._beat_task is not None:
            self._beat_task.cancel()
            await asyncio.gather(self._beat_task, return_exceptions=True)
        await self._pipeline.drain()
        try:
            if self._started is not None:
                await self._redis.delete(self._alive_key)
        except RedisError:
            log.warning("could not delete the heartbeat key of wallet replica %s; it expires by itself",
                        self.replica)
        finally:
            await self._redis.aclose()

    # -- snapshots ---------------------------------------------------------------------

    async def _read_balance(self, customer_id: int) -> tuple[int, int]:
        async with self._engine.connect() as conn:
            row = (await conn.execute(
                select(customers.c.balance, customers.c.balance_version).where(customers.c.id == customer_id)
            )).one()
        return int(row.balance), int(row.balance_version)

    async def _load(self, customer_id: int) -> None:
        await load_once(self._loading, customer_id, lambda: self._seed(customer_id))

    async def _seed(self, customer_id: int) -> None:
        await self._seed_snapshot(customer_id, *await self._read_balance(customer_id))




    async def _seed_snapshot(self, customer_id: int, balance: int, version: int) -> None:
        """Install a snapshot read from the database, unless Redis already has a newer one."""
        await self._apply_script(keys=self._keys(customer_id)[:1], args=[balance, version, 1, self._state_ttl_ms])

    # -- this replica's pending charges ------------------------------------------------

    async def _sync(self, customer_id: int, member: str = "") -> None:
        """Write this replica's pending amount (and newest snapshot) for the customer to Redis.

        Never raises on a Redis error: the customer is marked for the next repair pass
        (a failed release leaves the hold counted until then: conservative).
        """
        mine = self._pending.setdefault(customer_id, Pending())
        args = [member, self._pending_field, next(self._seq), mine.amount, mine.balance, mine.version,
                self._state_ttl_ms]
        mine.inflight += 1
        try:
            await self._sync_script(keys=self._keys(customer_id), args=args)
        except (RedisError, OSError) as exc:  # the write may or may not have happened
            log.warning("wallet write for customer %s failed (%s); repaired on the next pass", customer_id, exc)
            self._dirty.add(customer_id)
            if member:
                self._stale_holds.append((customer_id, member))
        finally:
            mine.inflight -= 1
        if (mine.amount == 0 and mine.inflight == 0 and customer_id not in self._dirty
                and self._pending.get(customer_id) is mine):
            del self._pending[customer_id]

    async def _snapshot_unsnapped(self, customer_id: int) -> bool:
        """Read a balance that contains the committed-but-unsnapped charges; False if the database failed."""
        mine = self._pending.get(customer_id)
        if mine is None or not mine.unsnapped:
            return True
        covered = mine.unsnapped  # committed before the read below starts
        try:
            balance, version = await self._read_balance(customer_id)
        except Exception:
            log.exception("could not read the balance of customer %s; retried on the next pass", customer_id)
            self._dirty.add(customer_id)
            return False
        mine.unsnapped -= covered
        if version > mine.version:
            mine.balance, mine.version = balance, version
        return True

    async def _repair(self) -> None:
        """Retry failed releases and rewrite the pending fields that may be off in Redis."""
        stale, self._stale_holds = self._stale_holds, []
        for customer_id, member in stale:
            try:
                await self._release_script(keys=self._keys(customer_id), args=[member])
            except (RedisError, OSError):
                self._stale_holds.append((customer_id, member))
        dirty, self._dirty = self._dirty, set()
        for customer_id in dirty:
            if await self._snapshot_unsnapped(customer_id):
                await self._sync(customer_id)

    # -- the Wallet interface ----------------------------------------------------------

    async def hold(self, customer_id: int, amount: int) -> Hold:
        """Place a hold; raises InsufficientBalance, or WalletUnavailable (Redis unreachable,
        or recovering from a data loss) so the request is refused with 503, never let through."""
        try:
            return await self._hold(customer_id, amount)
        except _UNREACHABLE as exc:
            # The message names the error class and its text: host and port, never the URL's password.
            # At most one line a second: an outage under load would otherwise flood the log.
            if time.monotonic() - self._warned_at >= 1.0:
                self._warned_at = time.monotonic()
                log.warning("wallet unavailable, refusing new holds (e.g. of customer %s): %s: %s",
                            customer_id, type(exc).__name__, exc)
            raise WalletUnavailable("redis unreachable", _UNREACHABLE_RETRY_AFTER) from exc

    async def _hold(self, customer_id: int, amount: int) -> Hold:
        await self._ensure_started()
        hold_id = next(self._ids)
        keys = [*self._keys(customer_id), self._epoch_key, self._recovering_key]
        for _attempt in range(4):
            args: list[str | int] = [amount, f"{self.replica}:{hold_id}", self._hold_ttl_ms, self._state_ttl_ms,
                    self._replica_prefix, self._epoch or ""]
            code, value = await self._hold_script(keys=keys, args=args)
            if code == 1:
                hold = Hold(hold_id, customer_id, amount, int(value) / 1000)
                self._open[hold_id] = hold
                return hold
            if code == 0:
                raise InsufficientBalance(amount, max(int(value), 0))
            if code == -1:
                await self._load(customer_id)
            elif code == -2:
                await self._recover()
            else:  # -3: replicas are still re-registering the holds Redis forgot
                raise WalletUnavailable("recovering from lost Redis data", math.ceil(int(value) / 1000))
        raise WalletUnavailable("the Redis state keeps changing", _UNREACHABLE_RETRY_AFTER)

    async def release(self, hold: Hold) -> None:
        self._open.pop(hold.id, None)
        member = self._member(hold)
        try:
            await self._release_script(keys=self._keys(hold.customer_id), args=[member])
        except (RedisError, OSError) as exc:
            log.warning("releasing a hold of customer %s failed (%s); retried on the next pass",
                        hold.customer_id, exc)
            self._stale_holds.append((hold.customer_id, member))

    async def settle(self, hold: Hold, cost: int) -> None:
        self._open.pop(hold.id, None)
        if cost > 0:
            self._pending.setdefault(hold.customer_id, Pending()).unflushed += cost
        await self._sync(hold.customer_id, self._member(hold))

    async def flushed(self, customer_id: int, amount: int, balance: int, version: int) -> None:
        """The recorder committed `amount` of this replica's charges; the database now says `balance`."""
        mine = self._pending.setdefault(customer_id, Pending())
        moved = min(amount, mine.unflushed)
        mine.unflushed -= moved
        if version >= 0:
            if version > mine.version:
                mine.balance, mine.version = balance, version
        else:
            # Every charge of the batch had been committed by an earlier attempt, so no
            # balance came back: they stay counted until a balance that contains them is read.
            mine.unsnapped += moved
            if not await self._snapshot_unsnapped(customer_id):
                return
        await self._sync(customer_id)

    async def available(self, customer_id: int) -> int:
        try:
            await self._ensure_started()
            keys = self._keys(customer_id)
            for _attempt in range(3):
                value = await self._available_script(keys=keys, args=[self._replica_prefix])
                if value is not None:
                    return int(value)
                await self._load(customer_id)
        except _UNREACHABLE as exc:
            raise WalletUnavailable("redis unreachable", _UNREACHABLE_RETRY_AFTER) from exc
        raise WalletUnavailable("the Redis state keeps changing", _UNREACHABLE_RETRY_AFTER)

    async def refresh(self) -> None:
        """Pick up balance changes made elsewhere (credits from the CLI, deposits, other tools),
        and repair what failed Redis writes left behind."""
        if self._started is None or not self._started.done():
            await self._ensure_started()  # the first pass runs there
        else:
            await self._refresh()
        if self._dirty or self._stale_holds:
            await self._repair()
        if self._previous_run_owed:
            await self._clear_previous_run()
        self._live_holds()  # forget holds that were never settled, long expired

    async def _refresh(self) -> None:
        started = utcnow()
        since = self._since
        if since is None:  # first pass: from the last pass of any replica
            shared = await self._redis.get(self._since_key)
            since = datetime.fromtimestamp(float(shared), UTC) if shared else started
        async with self._engine.connect() as conn:
            rows = (await conn.execute(
                select(customers.c.id, customers.c.balance, customers.c.balance_version)
                .where(customers.c.updated_at >= since - timedelta(seconds=2))
            )).all()
        if rows:
            async with self._redis.pipeline(transaction=False) as pipe:
                for row in rows:
                    await self._apply_script(keys=self._keys(row.id)[:1],
                                             args=[row.balance, row.balance_version, 0, self._state_ttl_ms],
                                             client=pipe)
                await pipe.execute()
        self._since = started
        await self._redis.set(self._since_key, repr(started.timestamp()))
