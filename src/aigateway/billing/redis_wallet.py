"""Holds shared by several gateway replicas through Redis (one PostgreSQL, one Redis).

Every replica places and settles holds with one Redis round trip and no
database round trip, and all of them see the same open holds, so concurrent
requests spread over replicas cannot overdraw a balance. Needs Redis 6.2+,
standalone or Sentinel (the scripts read heartbeat keys they do not declare,
which Redis Cluster forbids).

State, per customer (``P`` is the configurable key prefix, "aigw" by default):

``P:w:{id}``  hash
    ``bal``, ``ver``  a snapshot of ``customers.balance`` and its ``balance_version``
    ``held``          the sum of open holds
    ``p:{replica}``   ``"{seq}:{amount}"``: charges that replica settled and has not
                      yet committed to the database ("pending"), one field per replica
``P:h:{id}``  sorted set of open holds, member ``{replica}:{n}:{amount}``,
              score = expiry in Redis server time (ms)
``P:r:{replica}``  exists while that replica is alive (heartbeat, ``replica_ttl``)
``P:since``   when the last balance refresh pass (of any replica) started
``P:epoch``   the generation of this state: a random token written once; missing or
              changed = Redis lost its data since the replica last looked
``P:recovering``  exists (with a TTL) while replicas re-register after a data loss

    available = bal - sum(pending of live replicas) - held

Lua scripts, each atomic and one round trip:

hold     refuse when ``P:epoch`` is not the generation this replica knows ("epoch")
         or ``P:recovering`` exists ("recovering"); drop expired holds (subtracting them from ``held``) and the
         pending fields of dead replicas; without ``bal`` answer "load" (the client reads balance
         and version from the database, ``seed``s them - only if absent or older -
         and retries); refuse with the available amount when it is below the hold;
         else ZADD the hold and add it to ``held``.
release  ZREM the hold and subtract it from ``held`` if it was still there
         (idempotent: an expired or settled hold is not subtracted twice).
sync     used by settle, flushed and repairs: release the hold (settle), install
         the newest balance snapshot this replica's commits returned (if newer),
         then set this replica's pending field to its absolute value, unless a write
         with a higher sequence number got there first.
seed / refresh  install (balance, version) if newer than the stored version (seed
         also when absent). Versions make snapshot writes order-free: a replica that
         read an older row cannot overwrite a newer one. Refresh runs every second
         on every replica and applies the customers whose ``updated_at`` moved since
         the previous pass (with 2 s of slack): credits from the CLI, deposits.

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
* Expiry uses Redis server time, so clock skew between replicas does not matter.
* The refresh watermark is shared (``P:since``): a replica that starts after all
  others were down first catches up on every change since the last pass of any
  replica, before its first hold.

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

The client (``connect``) waits for a free pooled connection up to
``pool_timeout`` instead of failing, PINGs idle connections after
``health_check_interval``, and retries a command once on a dropped or stale
connection (after a Redis restart). Every script is safe to run twice: hold
looks for its own member first, release/sync/seed are idempotent. Redis being
unreachable fails new holds closed with ``WalletUnavailable`` (503, never a free
request, never a 500); settle and release keep working from memory and repair.

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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from aigateway.accounts.tables import customers
from aigateway.billing.wallet import Hold, InsufficientBalance, WalletUnavailable
from aigateway.store.metadata import utcnow

log = logging.getLogger(__name__)

# What "the state cannot be reached right now" looks like: new holds get a 503, not a 500.
_UNREACHABLE = (RedisError, OSError, TimeoutError, DBAPIError)
# Retry-After for a Redis that does not answer (a restart takes a second or two).
_UNREACHABLE_RETRY_AFTER = 2


def connect(url: str, *, max_connections: int = 64, pool_timeout: float = 2.0, connect_timeout: float = 1.0,
            socket_timeout: float = 2.0, health_check_interval: float = 10.0) -> aioredis.Redis:
    """The wallet's Redis client: a bounded pool that waits for a free connection.

    redis-py's default async pool fails at once when all its connections are busy
    (400 requests in flight gave 300 errors); a BlockingConnectionPool queues them
    for up to `pool_timeout` seconds. One retry, after a short backoff, on a dropped
    or stale connection (a Redis restart leaves every pooled connection dead); the
    wallet's scripts are idempotent, so a command that ran but timed out may rerun.
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        url, decode_responses=True, max_connections=max_connections, timeout=pool_timeout,
        socket_connect_timeout=connect_timeout, socket_timeout=socket_timeout,
        health_check_interval=health_check_interval,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=1,
                    supported_errors=(RedisConnectionError, RedisTimeoutError)),
    )
    return aioredis.Redis.from_pool(pool)

# Shared Lua: server time, available amount (after dropping expired holds; nil = no
# snapshot yet), release, snapshots.
_PRELUDE = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function amount_of(s)
  return tonumber(string.match(s, ':(%-?%d+)$'))
end

local function available(w, h, rprefix, now)
  local gone = redis.call('ZRANGEBYSCORE', h, '-inf', now)
  if #gone > 0 then
    local sum = 0
    for _, m in ipairs(gone) do sum = sum + amount_of(m) end
    redis.call('ZREMRANGEBYSCORE', h, '-inf', now)
    redis.call('HINCRBY', w, 'held', -sum)
  end
  local f = redis.call('HGETALL', w)
  local bal, held, pend = nil, 0, 0
  for i = 1, #f, 2 do
    local k, v = f[i], f[i + 1]
    if k == 'bal' then
      bal = tonumber(v)
    elseif k == 'held' then
      held = tonumber(v)
    elseif string.sub(k, 1, 2) == 'p:' then
      -- A dead replica's pending charges count too: they wait in its usage spool and are
      -- committed when it starts again on it (`restarted` then clears this field).
      pend = pend + amount_of(v)
    end
  end
  if held ~= 0 and redis.call('ZCARD', h) == 0 then  -- self-heal after lost keys
    held = 0
    redis.call('HDEL', w, 'held')
  end
  if bal == nil then return nil end
  return bal - pend - held
end

local function release(w, h, member)
  if redis.call('ZREM', h, member) == 1 then
    redis.call('HINCRBY', w, 'held', -amount_of(member))
  end
end

-- Install a (balance, version) snapshot if newer; create = also when absent.
local function apply(w, balance, version, create, state_ttl)
  local cur = redis.call('HGET', w, 'ver')
  if cur == false then
    if not create then return 0 end
    redis.call('HSET', w, 'bal', balance, 'ver', version)
    redis.call('PEXPIRE', w, state_ttl)
    return 1
  end
  if tonumber(version) > tonumber(cur) then
    redis.call('HSET', w, 'bal', balance, 'ver', version)
    return 1
  end
  return 0
end
"""

# KEYS: w, h, epoch, recovering
# ARGV: amount, member prefix "{replica}:{n}", hold ttl ms, state ttl ms, heartbeat key prefix, known epoch
# -> {1, expiry ms} | {0, available} | {-1, 0} (load the snapshot first)
#    | {-2, 0} (the generation changed: Redis lost data) | {-3, ms left} (replicas are re-registering)
_HOLD = _PRELUDE + """
if redis.call('GET', KEYS[3]) ~= ARGV[6] then return {-2, 0} end
local wait = redis.call('PTTL', KEYS[4])
if wait > 0 then return {-3, wait} end
local placed = redis.call('ZSCORE', KEYS[2], ARGV[2] .. ':' .. ARGV[1])
if placed then return {1, tonumber(placed)} end  -- a retried call whose first run got through
local now = now_ms()
local avail = available(KEYS[1], KEYS[2], ARGV[5], now)
if avail == nil then return {-1, 0} end
local amount = tonumber(ARGV[1])
if avail < amount then return {0, avail} end
local expiry = now + tonumber(ARGV[3])
redis.call('ZADD', KEYS[2], expiry, ARGV[2] .. ':' .. ARGV[1])
redis.call('HINCRBY', KEYS[1], 'held', amount)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return {1, expiry}
"""

# KEYS: w, h   ARGV: heartbeat key prefix -> available | false (load first)
_AVAILABLE = _PRELUDE + """
local avail = available(KEYS[1], KEYS[2], ARGV[1], now_ms())
if avail == false or avail == nil then return false end
return avail
"""

# KEYS: w, h   ARGV: member
_RELEASE = _PRELUDE + """
release(KEYS[1], KEYS[2], ARGV[1])
return 1
"""

# KEYS: w, h   ARGV: member ('' = none), pending field, seq, pending amount, balance, version (-1 = none),
# state ttl ms
_SYNC = _PRELUDE + """
if ARGV[1] ~= '' then release(KEYS[1], KEYS[2], ARGV[1]) end
if tonumber(ARGV[6]) >= 0 then apply(KEYS[1], ARGV[5], ARGV[6], true, ARGV[7]) end
local cur = redis.call('HGET', KEYS[1], ARGV[2])
if cur == false or tonumber(string.match(cur, '^(%d+):')) < tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3] .. ':' .. ARGV[4])
  return 1
end
return 0
"""

# KEYS: w   ARGV: balance, version, create (0/1), state ttl ms
_APPLY = _PRELUDE + """
return apply(KEYS[1], ARGV[1], ARGV[2], ARGV[3] == '1', ARGV[4])
"""

# KEYS: alive, epoch   ARGV: replica ttl ms -> {had the key (0/1), epoch or ''}
_BEAT = """
local previous = redis.call('SET', KEYS[1], '1', 'PX', ARGV[1], 'GET')
local epoch = redis.call('GET', KEYS[2])
return {previous and 1 or 0, epoch or ''}
"""

# KEYS: epoch, recovering   ARGV: known epoch ('' = none), new epoch if missing, recovery ms
# -> {current epoch, ms left in the recovery window}
# A replica that knew another generation saw the data go: it opens (or extends) the window.
_ADOPT = """
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then return {cur, 0} end
if cur == false then
  redis.call('SET', KEYS[1], ARGV[2])
  cur = ARGV[2]
end
if ARGV[1] ~= '' and redis.call('PTTL', KEYS[2]) < tonumber(ARGV[3]) then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
end
return {cur, math.max(redis.call('PTTL', KEYS[2]), 0)}
"""

# KEYS: w, h   ARGV: state ttl ms, then member, expiry ms pairs -> holds put back
# Re-registers open holds at their original expiry; ZADD NX makes a rerun a no-op.
_REREGISTER = _PRELUDE + """
local now, added = now_ms(), 0
for i = 2, #ARGV, 2 do
  if tonumber(ARGV[i + 1]) > now and redis.call('ZADD', KEYS[2], 'NX', ARGV[i + 1], ARGV[i]) == 1 then
    redis.call('HINCRBY', KEYS[1], 'held', amount_of(ARGV[i]))
    added = added + 1
  end
end
if added > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  redis.call('PEXPIRE', KEYS[2], ARGV[1])
end
return added
"""


@dataclass(slots=True)
class _Pending:
    """This replica's own charges for one customer, the truth its Redis field copies."""

    unflushed: int = 0  # settled, not yet committed by the recorder
    unsnapped: int = 0  # committed, but no snapshot known to contain them yet
    balance: int = 0  # the newest snapshot this replica's commits returned
    version: int = -1
    inflight: int = 0  # Redis writes under way

    @property
    def amount(self) -> int:
        return self.unflushed + self.unsnapped


class RedisWallet:
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
        self._pending: dict[int, _Pending] = {}
        self._dirty: set[int] = set()  # customers whose Redis copy may be off: rewrite it
        self._stale_holds: list[tuple[int, str]] = []  # releases that failed: retry them
        self._since: datetime | None = None
        self._started: asyncio.Future[Any] | None = None
        self._beat_task: asyncio.Task[None] | None = None
        self._loading: dict[int, asyncio.Future[Any]] = {}
        self._closed = False
        r = self._redis
        self._hold_script = r.register_script(_HOLD)
        self._available_script = r.register_script(_AVAILABLE)
        self._release_script = r.register_script(_RELEASE)
        self._sync_script = r.register_script(_SYNC)
        self._apply_script = r.register_script(_APPLY)
        self._beat_script = r.register_script(_BEAT)
        self._adopt_script = r.register_script(_ADOPT)
        self._reregister_script = r.register_script(_REREGISTER)

    # -- keys --------------------------------------------------------------------------

    def _keys(self, customer_id: int) -> list[str]:
        return [f"{self._prefix}:w:{customer_id}", f"{self._prefix}:h:{customer_id}"]

    def _member(self, hold: Hold) -> str:
        return f"{self.replica}:{hold.id}:{hold.amount}"

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
        self._beat_task = asyncio.create_task(self._beat_loop(), name="wallet-heartbeat")
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

    async def _beat_loop(self) -> None:
        while True:
            await asyncio.sleep(self._beat_interval)
            try:
                await self._beat()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("wallet heartbeat failed")

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
                    await self._sync_script(
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
        pending = self._loading.get(customer_id)
        if pending is None:
            pending = asyncio.ensure_future(self._seed(customer_id))
            self._loading[customer_id] = pending
            pending.add_done_callback(lambda _f: self._loading.pop(customer_id, None))
        await asyncio.shield(pending)

    async def _seed(self, customer_id: int) -> None:
        await self._seed_snapshot(customer_id, *await self._read_balance(customer_id))

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

    async def _seed_snapshot(self, customer_id: int, balance: int, version: int) -> None:
        """Install a snapshot read from the database, unless Redis already has a newer one."""
        await self._apply_script(keys=self._keys(customer_id)[:1], args=[balance, version, 1, self._state_ttl_ms])

    # -- this replica's pending charges ------------------------------------------------

    async def _sync(self, customer_id: int, member: str = "") -> None:
        """Write this replica's pending amount (and newest snapshot) for the customer to Redis.

        Never raises on a Redis error: the customer is marked for the next repair pass
        (a failed release leaves the hold counted until then: conservative).
        """
        mine = self._pending.setdefault(customer_id, _Pending())
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
            args = [amount, f"{self.replica}:{hold_id}", self._hold_ttl_ms, self._state_ttl_ms,
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
            self._pending.setdefault(hold.customer_id, _Pending()).unflushed += cost
        await self._sync(hold.customer_id, self._member(hold))

    async def flushed(self, customer_id: int, amount: int, balance: int, version: int) -> None:
        """The recorder committed `amount` of this replica's charges; the database now says `balance`."""
        mine = self._pending.setdefault(customer_id, _Pending())
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
