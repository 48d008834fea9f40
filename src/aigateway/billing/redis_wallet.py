"""Holds shared by several gateway replicas through Redis (one PostgreSQL, one Redis).

Every replica places and settles holds with one Redis round trip and no
database round trip, and all of them see the same open holds, so concurrent
requests spread over replicas cannot overdraw a balance.

State, per customer (``P`` is the configurable key prefix, "aigw" by default):

``P:w:{id}``  hash
    ``bal``, ``ver``  a snapshot of ``customers.balance`` and its ``balance_version``
    ``held``          the sum of open holds
    ``p:{replica}``   charges settled by that replica that its recorder has not yet
                      committed to the database ("pending"); one field per replica
``P:h:{id}``  sorted set of open holds, member ``{replica}:{n}:{amount}``,
              score = expiry (Redis server time, ms)
``P:r:{replica}``  exists while that replica is alive (renewed by a heartbeat)
``P:since``   when the last balance refresh pass (of any replica) started

available = bal - sum(p:* of live replicas) - held

Lua scripts, each atomic and one round trip:

hold      drop expired holds (subtracting them from ``held``) and the pending
          fields of dead replicas; without ``bal`` answer "load" (the client reads
          balance and version from the database, ``seed``s them and retries);
          refuse with the available amount if it is below the hold; else ZADD it
          and add it to ``held``.
release   ZREM the hold and subtract it from ``held`` if it was still there
          (idempotent; an expired hold was already subtracted).
settle    release + add the cost to this replica's pending field.
flushed   the recorder committed ``amount`` of this replica's charges: subtract it
          from this replica's pending field and, atomically with that, install
          the balance the commit returned if its version is newer. Pending and
          snapshot therefore never disagree in the unsafe direction: a charge
          leaves ``p:`` only in the same step that puts a snapshot containing it.
seed / refresh  install (balance, version) if newer than the stored version
          (seed also when absent). Versions make every snapshot write order-free:
          a replica that read an older row cannot overwrite a newer one. Refresh
          runs every second on every replica and applies the customers whose
          ``updated_at`` moved since the previous pass (minus 2 s of slack), which
          picks up credits from the CLI, deposits and other tools.

Changes to the design first sketched (a single ``pend`` counter):

* Pending is kept per replica. A replica that dies after committing a batch but
  before ``flushed`` (or with settled charges it never committed) would leave a
  single counter too high for ever. With one field per replica, its fields stop
  counting once its heartbeat key ``P:r:{replica}`` expires (``replica_ttl``,
  30 s; the heartbeat runs every ``replica_ttl``/4 on its own task, independent of
  database health) and are deleted by the next hold. By then a refresh pass has
  long put its last committed batch into ``bal``; its uncommitted charges were
  lost with the process (the recorder's documented loss), so dropping them is
  exact. So the crash window costs the customer, for at most ``replica_ttl``,
  some available balance, never an overdraft. A clean shutdown deletes the key.
* ``flushed`` ignores a pending field that no longer exists and deletes one that
  reaches zero, so a lost or expired hash can never make pending negative (which
  would have offered money that does not exist).
* When the recorder reports a batch whose charges were all committed by an
  earlier, failed-looking attempt (version -1: no balance was returned), the
  wallet reads the balance from the database before subtracting pending,
  instead of subtracting it against a snapshot that may lack those charges.
* Expiry uses Redis server time, so clock skew between replicas does not matter.
* The refresh watermark is shared (``P:since``): a replica starting after all
  others were down first catches up on every change since the last pass of any
  replica, and it does that pass before its first hold.

Residual risks (documented, bounded): if Redis loses data (restart without
persistence, eviction) the open holds and pending charges of that moment are
forgotten and snapshots are reloaded from the database, so use AOF persistence
and ``maxmemory-policy noeviction``. A replica whose event loop stalls longer than
``replica_ttl`` is presumed dead; its unflushed charges of that moment (one
flush interval's worth) stop counting until its recorder commits them. Redis
being unreachable fails requests closed (an error, not a free request). The
scripts touch keys they do not declare (the heartbeat keys), so this needs a
standalone or Sentinel Redis, not Redis Cluster. Idle state expires after
``state_ttl`` (7 days) and is reloaded from the database when needed.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from datetime import datetime, timedelta, timezone

import redis.asyncio as aioredis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from aigateway.accounts.tables import customers
from aigateway.billing.wallet import Hold, InsufficientBalance
from aigateway.store.metadata import utcnow

log = logging.getLogger(__name__)

# Shared Lua: server time, and the available amount after dropping expired holds
# and the pending charges of dead replicas. nil = no snapshot yet (load it).
_PRELUDE = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function amount_of(member)
  return tonumber(string.match(member, ':(%d+)$'))
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
        pend = pend + tonumber(v)
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

# KEYS: w, h   ARGV: amount, member prefix "{replica}:{n}", hold ttl ms, state ttl ms, replica key prefix
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

# KEYS: w, h   ARGV: replica key prefix -> available | false (load first)
_AVAILABLE = _PRELUDE + """
local avail = available(KEYS[1], KEYS[2], ARGV[1], now_ms())
if avail == nil then return false end
return avail
"""

# KEYS: w, h   ARGV: member
_RELEASE = _PRELUDE + """
release(KEYS[1], KEYS[2], ARGV[1])
return 1
"""

# KEYS: w, h   ARGV: member, cost, pending field
_SETTLE = _PRELUDE + """
release(KEYS[1], KEYS[2], ARGV[1])
local cost = tonumber(ARGV[2])
if cost > 0 then redis.call('HINCRBY', KEYS[1], ARGV[3], cost) end
return 1
"""

# KEYS: w   ARGV: pending field, amount, balance, version, state ttl ms
_FLUSHED = _PRELUDE + """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  local left = redis.call('HINCRBY', KEYS[1], ARGV[1], -tonumber(ARGV[2]))
  if left <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
end
return apply(KEYS[1], ARGV[3], ARGV[4], true, ARGV[5])
"""

# KEYS: w   ARGV: balance, version, create (0/1), state ttl ms
_APPLY = _PRELUDE + """
return apply(KEYS[1], ARGV[1], ARGV[2], ARGV[3] == '1', ARGV[4])
"""


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
        # The recorder commits and calls `flushed` under this lock (protocol); in Redis,
        # snapshot versions already order concurrent writers.
        self.lock = asyncio.Lock()
        self._since: datetime | None = None
        self._started: asyncio.Future | None = None
        self._beat_task: asyncio.Task | None = None
        self._loading: dict[int, asyncio.Future] = {}
        self._closed = False
        r = self._redis
        self._hold_script = r.register_script(_HOLD)
        self._available_script = r.register_script(_AVAILABLE)
        self._release_script = r.register_script(_RELEASE)
        self._settle_script = r.register_script(_SETTLE)
        self._flushed_script = r.register_script(_FLUSHED)
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
            log.warning("wallet replica %s was presumed dead (no heartbeat for %.0fs); its unflushed "
                        "charges counted again only once committed", self.replica, self._replica_ttl_ms / 1000)

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
        await self._release_script(keys=self._keys(hold.customer_id), args=[self._member(hold)])

    async def settle(self, hold: Hold, cost: int) -> None:
        await self._settle_script(keys=self._keys(hold.customer_id),
                                  args=[self._member(hold), cost, self._pending_field])

    async def flushed(self, customer_id: int, amount: int, balance: int, version: int) -> None:
        """The recorder committed `amount` of this replica's charges; the database now says `balance`."""
        if version < 0:
            # Every charge of the batch had been committed by an earlier attempt, so no
            # balance came back: read one that surely contains them.
            balance, version = await self._read_balance(customer_id)
        await self._flushed_script(keys=self._keys(customer_id)[:1],
                                   args=[self._pending_field, amount, balance, version, self._state_ttl_ms])

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
        """Pick up balance changes made elsewhere (credits from the CLI, deposits, other tools)."""
        if self._started is None or not self._started.done():
            await self._ensure_started()  # the first pass runs there
            return
        await self._refresh()

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

