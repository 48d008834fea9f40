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

    available = bal - sum(pending of live replicas) - held

Lua scripts, each atomic and one round trip:

hold     drop expired holds (subtracting them from ``held``) and the pending fields
         of dead replicas; without ``bal`` answer "load" (the client reads balance
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
* The crash window: a replica that dies after committing a batch but before
  ``flushed`` (or with settled charges it never committed) leaves its pending
  field behind. It counts only while the replica's heartbeat key lives: the next
  hold after ``replica_ttl`` (30 s; the heartbeat runs every ``replica_ttl``/4 on
  its own task, independent of database health) deletes it. By then a refresh
  pass has long put the dead replica's last commit into ``bal``; its uncommitted
  charges died with it (the recorder's documented loss), so dropping them is
  exact. Cost of the window: some available balance for up to ``replica_ttl``,
  never an overdraft. A clean shutdown deletes the key at once.
* Expiry uses Redis server time, so clock skew between replicas does not matter.
* The refresh watermark is shared (``P:since``): a replica that starts after all
  others were down first catches up on every change since the last pass of any
  replica, before its first hold.

Residual risks (bounded, documented): if Redis loses data (restart without
persistence, eviction) the open holds of that moment are forgotten, and pending
charges until the owning replica's next repair pass (~1 s); use AOF persistence
and ``maxmemory-policy noeviction``. A replica whose event loop stalls longer than
``replica_ttl`` is presumed dead; its pending charges stop counting until its next
repair pass. Redis being unreachable fails new requests closed (an error, never
a free request). Idle state expires after ``state_ttl`` (7 days) and is reloaded
from the database when needed.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from aigateway.accounts.tables import customers
from aigateway.billing.wallet import Hold, InsufficientBalance
from aigateway.store.metadata import utcnow

log = logging.getLogger(__name__)

# Shared Lua: server time, available amount (after dropping expired holds and the
# pending charges of dead replicas; nil = no snapshot yet), release, snapshots.
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
      if redis.call('EXISTS', rprefix .. string.sub(k, 3)) == 1 then
        pend = pend + amount_of(v)
      else
        redis.call('HDEL', w, k)  -- a dead replica's: its commits are in bal by now
      end
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

# KEYS: w, h   ARGV: amount, member prefix "{replica}:{n}", hold ttl ms, state ttl ms, heartbeat key prefix
# -> {1, expiry ms} | {0, available} | {-1, 0} (load the snapshot first)
_HOLD = _PRELUDE + """
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
                 replica_ttl: float = 30.0, state_ttl: float = 7 * 86400.0,
                 client: aioredis.Redis | None = None) -> None:
        self._engine = engine
        self._redis = client or aioredis.Redis.from_url(url, decode_responses=True)
        self._hold_ttl_ms = max(1, int(hold_ttl * 1000))
        self._state_ttl_ms = int(max(state_ttl, 2 * hold_ttl, 3600.0) * 1000)
        self._replica_ttl_ms = max(100, int(replica_ttl * 1000))
        self._prefix = key_prefix
        self.replica = uuid.uuid4().hex[:12]
        self._pending_field = f"p:{self.replica}"
        self._replica_prefix = f"{key_prefix}:r:"
        self._alive_key = self._replica_prefix + self.replica
        self._since_key = f"{key_prefix}:since"
        self._ids = itertools.count(1)
        self._seq = itertools.count(1)
        # The recorder commits and calls `flushed` under this lock (protocol); in Redis,
        # snapshot versions and sequence numbers already order concurrent writers.
        self.lock = asyncio.Lock()
        self._pending: dict[int, _Pending] = {}
        self._dirty: set[int] = set()  # customers whose Redis copy may be off: rewrite it
        self._stale_holds: list[tuple[int, str]] = []  # releases that failed: retry them
        self._since: datetime | None = None
        self._started: asyncio.Future | None = None
        self._beat_task: asyncio.Task | None = None
        self._loading: dict[int, asyncio.Future] = {}
        self._closed = False
        r = self._redis
        self._hold_script = r.register_script(_HOLD)
        self._available_script = r.register_script(_AVAILABLE)
        self._release_script = r.register_script(_RELEASE)
        self._sync_script = r.register_script(_SYNC)
        self._apply_script = r.register_script(_APPLY)

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

    async def _start(self) -> None:
        await self._beat()
        self._beat_task = asyncio.create_task(self._beat_loop(), name="wallet-heartbeat")
        try:  # catch up on changes made while no replica was watching, before the first hold
            await self._refresh()
        except Exception:
            log.exception("first balance refresh failed; the periodic refresh retries it")

    async def _beat(self) -> None:
        previous = await self._redis.set(self._alive_key, "1", px=self._replica_ttl_ms, get=True)
        if previous is None and self._beat_task is not None:
            # Presumed dead (event loop stalled, or Redis lost its data): other replicas may
            # have deleted our pending fields. Write them all again.
            log.warning("wallet replica %s had lost its heartbeat key; rewriting its pending charges",
                        self.replica)
            self._dirty.update(self._pending)

    async def _beat_loop(self) -> None:
        while True:
            await asyncio.sleep(self._replica_ttl_ms / 4000)
            try:
                await self._beat()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("wallet heartbeat failed")

    async def close(self) -> None:
        """Stop the heartbeat and say goodbye (after the recorder's last flush)."""
        if self._closed:
            return
        self._closed = True
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
        await self._ensure_started()
        hold_id = next(self._ids)
        keys = self._keys(customer_id)
        args = [amount, f"{self.replica}:{hold_id}", self._hold_ttl_ms, self._state_ttl_ms, self._replica_prefix]
        for _attempt in range(3):
            code, value = await self._hold_script(keys=keys, args=args)
            if code == 1:
                return Hold(hold_id, customer_id, amount, int(value) / 1000)
            if code == 0:
                raise InsufficientBalance(amount, max(int(value), 0))
            await self._load(customer_id)
        raise RuntimeError(f"could not load the balance of customer {customer_id} into Redis")

    async def release(self, hold: Hold) -> None:
        member = self._member(hold)
        try:
            await self._release_script(keys=self._keys(hold.customer_id), args=[member])
        except (RedisError, OSError) as exc:
            log.warning("releasing a hold of customer %s failed (%s); retried on the next pass",
                        hold.customer_id, exc)
            self._stale_holds.append((hold.customer_id, member))

    async def settle(self, hold: Hold, cost: int) -> None:
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
        await self._ensure_started()
        keys = self._keys(customer_id)
        for _attempt in range(3):
            value = await self._available_script(keys=keys, args=[self._replica_prefix])
            if value is not None:
                return int(value)
            await self._load(customer_id)
        raise RuntimeError(f"could not load the balance of customer {customer_id} into Redis")

    async def refresh(self) -> None:
        """Pick up balance changes made elsewhere (credits from the CLI, deposits, other tools),
        and repair what failed Redis writes left behind."""
        if self._started is None or not self._started.done():
            await self._ensure_started()  # the first pass runs there
        else:
            await self._refresh()
        if self._dirty or self._stale_holds:
            await self._repair()

    async def _refresh(self) -> None:
        started = utcnow()
        since = self._since
        if since is None:  # first pass: from the last pass of any replica
            shared = await self._redis.get(self._since_key)
            since = datetime.fromtimestamp(float(shared), timezone.utc) if shared else started
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
