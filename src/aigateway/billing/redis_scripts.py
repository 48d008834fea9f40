"""The Redis side of the shared wallet (billing.redis_wallet): its client, key layout and Lua scripts.

Invariant: every script is atomic, one round trip, and safe to run twice (hold looks for
its own member first; release, sync, seed and reregister are idempotent), so a command
that ran but timed out may simply run again.

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

The client (``connect``) waits for a free pooled connection up to
``pool_timeout`` instead of failing, PINGs idle connections after
``health_check_interval``, and retries a command once on a dropped or stale
connection (after a Redis restart). Every script is safe to run twice: hold
looks for its own member first, release/sync/seed are idempotent. Redis being
unreachable fails new holds closed with ``WalletUnavailable`` (503, never a free
request, never a 500); settle and release keep working from memory and repair.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


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
PRELUDE = """
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
HOLD = PRELUDE + """
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
AVAILABLE = PRELUDE + """
local avail = available(KEYS[1], KEYS[2], ARGV[1], now_ms())
if avail == false or avail == nil then return false end
return avail
"""

# KEYS: w, h   ARGV: member
RELEASE = PRELUDE + """
release(KEYS[1], KEYS[2], ARGV[1])
return 1
"""

# KEYS: w, h   ARGV: member ('' = none), pending field, seq, pending amount, balance, version (-1 = none),
# state ttl ms
SYNC = PRELUDE + """
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
APPLY = PRELUDE + """
return apply(KEYS[1], ARGV[1], ARGV[2], ARGV[3] == '1', ARGV[4])
"""

# KEYS: alive, epoch   ARGV: replica ttl ms -> {had the key (0/1), epoch or ''}
BEAT = """
local previous = redis.call('SET', KEYS[1], '1', 'PX', ARGV[1], 'GET')
local epoch = redis.call('GET', KEYS[2])
return {previous and 1 or 0, epoch or ''}
"""

# KEYS: epoch, recovering   ARGV: known epoch ('' = none), new epoch if missing, recovery ms
# -> {current epoch, ms left in the recovery window}
# A replica that knew another generation saw the data go: it opens (or extends) the window.
ADOPT = """
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
REREGISTER = PRELUDE + """
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
