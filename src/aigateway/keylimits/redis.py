"""Key-limit counters in Redis, shared by every replica (beside the Redis wallet, own keys).

Each check-and-take is one Lua script, so two replicas admitting at once cannot both take the
last slot, request or the last of the spend cap. Keys, under `<prefix>:kl:<key id>:`:
`inflight` (zset request -> expiry), `rpm:<minute>` / `tpm:<minute>` (counters, 2 min TTL),
`spent:<period>` (units settled this period), `held:<period>` (hash request -> units) with
`holdexp:<period>` (zset request -> expiry). Scripts are idempotent per request id (a retried
settle removes a hold once and adds its cost once), so the client's one retry is safe.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from aigateway.keylimits.limiter import Admission, Base, concurrency_refusal, rate_refusal, spend_refusal
from aigateway.keylimits.values import KeyLimits, LimitsUnavailable, period_id

log = logging.getLogger(__name__)

_ADMIT = """
local now = tonumber(ARGV[1])
local rid = ARGV[2]
local most = tonumber(ARGV[3])
local conc, rpm, tpm, cap = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local expiry, ttl = tonumber(ARGV[8]), tonumber(ARGV[9])
if cap >= 0 and redis.call('EXISTS', KEYS[4]) == 0 then return {-1} end
if conc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  if not redis.call('ZSCORE', KEYS[1], rid) and redis.call('ZCARD', KEYS[1]) >= conc then return {1} end
end
if rpm > 0 and tonumber(redis.call('GET', KEYS[2]) or '0') >= rpm then return {2} end
if tpm > 0 and tonumber(redis.call('GET', KEYS[3]) or '0') >= tpm then return {3} end
if cap >= 0 then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', now)) do redis.call('HDEL', KEYS[5], id) end
  redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now)
  local held = 0
  for _, v in ipairs(redis.call('HVALS', KEYS[5])) do held = held + tonumber(v) end
  held = held - tonumber(redis.call('HGET', KEYS[5], rid) or '0')
  local spent = tonumber(redis.call('GET', KEYS[4])) + held
  if spent + most > cap then return {4, tostring(spent)} end
  redis.call('HSET', KEYS[5], rid, most)
  redis.call('ZADD', KEYS[6], expiry, rid)
  redis.call('EXPIRE', KEYS[5], ttl)
  redis.call('EXPIRE', KEYS[6], ttl)
end
if conc > 0 then
  redis.call('ZADD', KEYS[1], expiry, rid)
  redis.call('EXPIRE', KEYS[1], ttl)
end
if rpm > 0 then
  redis.call('INCR', KEYS[2])
  redis.call('EXPIRE', KEYS[2], 120)
end
return {0}
"""

_SETTLE = """
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('HDEL', KEYS[5], ARGV[1]) == 1 then
  redis.call('ZREM', KEYS[6], ARGV[1])
  if redis.call('EXISTS', KEYS[4]) == 1 then redis.call('INCRBY', KEYS[4], ARGV[2]) end
end
if tonumber(ARGV[3]) > 0 then
  redis.call('INCRBY', KEYS[3], ARGV[3])
  redis.call('EXPIRE', KEYS[3], 120)
end
return 0
"""

# How long a spend counter outlives its period's last use; a missing one restarts from the database.
_SPENT_TTL = {"day": 3 * 86400, "month": 40 * 86400, "lifetime": 30 * 86400}


class RedisCounters:
    def __init__(self, client, *, key_prefix: str, hold_ttl: float = 900.0) -> None:
        self._redis = client
        self._prefix = key_prefix
        self._hold_ttl = hold_ttl
        self._admit = client.register_script(_ADMIT)
        self._settle = client.register_script(_SETTLE)

    def _keys(self, key_id: int, minute: int, pid: str) -> list[str]:
        p = f"{self._prefix}:kl:{key_id}:"
        return [p + "inflight", f"{p}rpm:{minute}", f"{p}tpm:{minute}", f"{p}spent:{pid}", f"{p}held:{pid}",
                f"{p}holdexp:{pid}"]

    async def admit(self, limits: KeyLimits, request_id: str, most: int, now: float, base: Base) -> Admission:
        wall = datetime.fromtimestamp(now, UTC)
        pid = period_id(limits.spend_period, wall)
        keys = self._keys(limits.key_id, int(now // 60), pid)
        cap = limits.spend_cap if limits.spend_cap is not None else -1
        args = [now, request_id, most, limits.concurrency or 0, limits.rpm or 0, limits.tpm or 0, cap,
                now + self._hold_ttl, int(max(self._hold_ttl, _SPENT_TTL[limits.spend_period]))]
        try:
            result = await self._admit(keys=keys, args=args)
            if result[0] == -1:  # first use of this period's counter (or Redis lost it): start from the database
                spent = await base(limits, wall)
                await self._redis.set(keys[3], spent, nx=True, ex=_SPENT_TTL[limits.spend_period])
                result = await self._admit(keys=keys, args=args)
        except Exception as exc:  # hazard: never admit blind; the caller answers 503 with Retry-After
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            raise LimitsUnavailable(str(exc.__class__.__name__)) from exc
        code = result[0]
        if code == 1:
            raise concurrency_refusal(limits.concurrency or 0)
        if code == 2:
            raise rate_refusal("requests", limits.rpm or 0, now)
        if code == 3:
            raise rate_refusal("tokens", limits.tpm or 0, now)
        if code == 4:
            raise spend_refusal(limits, int(float(result[1])), wall)
        return Admission(limits.key_id, request_id, most if limits.spend_cap is not None else 0, pid,
                         bool(limits.concurrency), bool(limits.tpm))

    async def settle(self, admission: Admission, cost: int, tokens: int, now: float) -> None:
        keys = self._keys(admission.key_id, int(now // 60), admission.period)
        try:
            await self._settle(keys=keys, args=[admission.request_id, cost, tokens if admission.count_tokens else 0])
        except Exception:  # the charge itself is in the ledger; the slot and hold expire by their TTL
            log.warning("could not settle key limits of %s in Redis", admission.request_id)

    async def close(self) -> None:
        await self._redis.aclose()
