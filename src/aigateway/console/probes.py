"""`/healthz`, `/readyz` and `/metrics` on the admin listener (no log-in: loopback by default).

/healthz: the process answers (alive). /readyz: 200 only when the database answers a
query, Redis answers PING (when configured) and the usage recorder is not falling behind;
else 503 with Retry-After and the failing checks named (never a URL or a password).
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select, text

from aigateway.appkeys import ENGINE, GATEWAY
from aigateway.console.web import MAIN
from aigateway.metrics import REGISTRY

log = logging.getLogger(__name__)
RECORDER_BACKLOG_LIMIT = 50_000  # uncommitted usage events beyond which the replica is not ready


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    main = request.app[MAIN]
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(2):
            async with main[ENGINE].connect() as conn:
                await conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception:
        checks["database"] = "failing"
    wallet = main[GATEWAY].wallet
    client = getattr(wallet, "_redis", None)  # RedisWallet's pooled client; None in local mode
    if client is not None and hasattr(client, "ping"):
        try:
            async with asyncio.timeout(2):
                await client.ping()
            checks["redis"] = "ok"
        except Exception:
            checks["redis"] = "failing"
    recorder = main[GATEWAY].recorder
    if recorder is not None:
        checks["recorder"] = "ok" if recorder.uncommitted < RECORDER_BACKLOG_LIMIT else "behind"
    ok = all(v == "ok" for v in checks.values())
    return web.json_response({"status": "ready" if ok else "not ready", "checks": checks},
                             status=200 if ok else 503, headers=None if ok else {"Retry-After": "5"})


async def _state_metrics(main: web.Application) -> list:
    gateway = main[GATEWAY]
    out = []
    holds = GaugeMetricFamily("aigateway_holds_open", "Holds of requests in flight (this replica)")
    accounts = getattr(gateway.wallet, "_accounts", None)
    holds.add_metric([], sum(len(a.holds) for a in accounts.values()) if accounts else 0)
    out.append(holds)
    backlog = GaugeMetricFamily("aigateway_usage_uncommitted", "Usage events waiting for the group commit")
    backlog.add_metric([], gateway.recorder.uncommitted if gateway.recorder else 0)
    out.append(backlog)
    # The number of group commits is aigateway_usage_commit_batch_size_count (metrics.py).
    try:
        out.extend(await _database_metrics(main))
    except Exception:  # the database is down: the in-memory metrics still answer; /readyz says why
        log.warning("metrics: database figures unavailable", exc_info=True)
    return out


async def _database_metrics(main: web.Application) -> list:
    out = []
    async with main[ENGINE].connect() as conn:
        try:
            from aigateway.pricing.tables import price_fetches as f

            latest = (select(f.c.source, func.max(f.c.id).label("id")).where(f.c.ok.is_not(None))
                      .group_by(f.c.source).subquery())
            rows = (await conn.execute(select(f.c.source, f.c.ok, f.c.finished_at)
                                       .where(f.c.id.in_(select(latest.c.id))))).all()
            fetch = GaugeMetricFamily("aigateway_price_fetch_ok", "1 when the last fetch of a price source worked",
                                      labels=["source"])
            for r in rows:
                fetch.add_metric([r.source], 1 if r.ok else 0)
            out.append(fetch)
        except ModuleNotFoundError:  # pragma: no cover
            pass
        try:
            from aigateway.deposits.tables import deposit_addresses as a

            last = await conn.scalar(select(func.max(a.c.last_polled_ms)))
            lag = GaugeMetricFamily("aigateway_deposit_watcher_lag_seconds",
                                    "Seconds since the deposit watcher last polled any address")
            if last:
                lag.add_metric([], max(0.0, time.time() - last / 1000))
                out.append(lag)
        except ModuleNotFoundError:  # pragma: no cover
            pass
    return out


class _Snapshot:
    def __init__(self, families) -> None:
        self._families = families

    def collect(self):
        return self._families


async def metrics(request: web.Request) -> web.Response:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(await _state_metrics(request.app[MAIN])))
    body = generate_latest(REGISTRY) + generate_latest(registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
