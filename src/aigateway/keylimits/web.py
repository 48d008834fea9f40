"""Plugs key limits into the gateway: builds the limiter at start-up (Redis counters when
`[redis] url` is set, else in-process) and refreshes every key's limits each second."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from aigateway.appkeys import CONFIG, ENGINE, GATEWAY
from aigateway.background import Periodic
from aigateway.keylimits.limiter import Counters, KeyLimiter, LocalCounters


async def _limits(app: web.Application) -> AsyncIterator[None]:
    config, gateway = app[CONFIG], app[GATEWAY]
    counters: Counters
    r = config.redis
    if r.url:
        from aigateway.billing.redis_scripts import connect
        from aigateway.keylimits.redis import RedisCounters

        client = connect(r.url, max_connections=r.max_connections, pool_timeout=r.pool_timeout,
                         connect_timeout=r.connect_timeout, socket_timeout=r.socket_timeout,
                         health_check_interval=r.health_check_interval)
        counters = RedisCounters(client, key_prefix=r.key_prefix, hold_ttl=config.billing.hold_ttl)
    else:
        counters = LocalCounters(hold_ttl=config.billing.hold_ttl)
    limiter = KeyLimiter(app[ENGINE], counters)
    await limiter.refresh()
    gateway.key_limits = limiter
    periodic = Periodic()
    periodic.every(limiter.refresh_interval, limiter.refresh, "refresh-key-limits")
    yield
    await periodic.stop()
    await limiter.close()


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(_limits)
