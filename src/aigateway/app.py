"""Assemble the aiohttp application: storage, caches, billing, routing, views.

Start-up order matters and reads top to bottom: database -> prices -> catalog
-> key cache -> wallet and recorder -> background refreshers -> views. Each
concern (pricing, deposits, portal, vouchers) then adds its own start-up and
clean-up to `app.cleanup_ctx` in `setup(app)`; aiohttp runs them in that order
and cleans up in reverse, so a concern always stops before the engine, wallet
and recorder it uses are closed.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from aigateway import extras
from aigateway.accounts.keycache import KeyCache
from aigateway.api.gateway import Gateway
from aigateway.api.routes import add_api_routes, api_errors
from aigateway.appkeys import CONFIG, ENGINE, GATEWAY
from aigateway.background import Periodic
from aigateway.billing.recorder import UsageEvent, UsageRecorder
from aigateway.billing.spool import Spool, default_spool_dir, replica_id
from aigateway.billing.wallet import LocalWallet, Wallet
from aigateway.config import Config
from aigateway.console import web as console_web
from aigateway.deposits import web as deposits_web
from aigateway.keylimits import web as keylimits_web
from aigateway.portal import web as portal_web
from aigateway.pricing import web as pricing_web
from aigateway.pricing.catalog import Catalog
from aigateway.pricing.service import current_price, set_price
from aigateway.pricing.sync import apply_config_prices
from aigateway.providers.catalog_from_config import build_models, build_providers
from aigateway.providers.ollama import discover_ollama
from aigateway.providers.router import Router
from aigateway.providers.upstream import UpstreamClient
from aigateway.store.db import create_engine
from aigateway.store.migrate import upgrade
from aigateway.vouchers import web as vouchers_web

log = logging.getLogger("aigateway")


async def _offer_ollama(config: Config, catalog: Catalog, engine: AsyncEngine) -> None:
    models = await discover_ollama(config.ollama_url)
    if not models:
        log.warning("No providers are configured and no Ollama answered at %s. Add a [providers.NAME] "
                    "section and [[models]] to the config (see README), or run `aigateway serve --demo`.",
                    config.ollama_url)
        return
    async with engine.begin() as conn:
        for model in models:
            catalog.add(model)
            if await current_price(conn, model.name) is None:  # free until the operator prices it
                await set_price(conn, model.name, 0, 0, source="ollama-discovery", free=True)
    log.warning("No providers configured: offering %d model(s) of the local Ollama at %s, free until priced: %s",
                len(models), config.ollama_url, ", ".join(m.name for m in models))


def _make_wallet(config: Config, engine: AsyncEngine, replica: str) -> Wallet:
    r = config.redis
    if r.url:
        from aigateway.billing.redis_scripts import connect
        from aigateway.billing.redis_wallet import RedisWallet

        client = connect(r.url, max_connections=r.max_connections, pool_timeout=r.pool_timeout,
                         connect_timeout=r.connect_timeout, socket_timeout=r.socket_timeout,
                         health_check_interval=r.health_check_interval)
        wallet = RedisWallet(engine, r.url, hold_ttl=config.billing.hold_ttl, key_prefix=r.key_prefix,
                             recovery_seconds=r.recovery_seconds, replica_ttl=r.replica_ttl, client=client,
                             replica=replica)
        wallet.start_soon()  # learn the Redis generation before the first request
        return wallet
    return LocalWallet(engine, hold_ttl=config.billing.hold_ttl)


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    engine = create_engine(config.database.url)
    await upgrade(engine)
    await apply_config_prices(engine, config)
    providers = build_providers(config)
    catalog = Catalog(build_models(config, providers), providers=providers)
    if not config.providers and config.discover_ollama:
        await _offer_ollama(config, catalog, engine)
    await catalog.refresh(engine)
    unpriced = [m.name for m in catalog.models.values() if not m.servable]
    if unpriced:
        log.warning("Models without a price are not served until priced: %s", ", ".join(unpriced))
    upstream = UpstreamClient()
    await upstream.start()
    keys = KeyCache(engine)
    wallet = recorder = None
    if config.billing.enabled:
        spool_dir = config.billing.spool_dir or default_spool_dir(config.database.url)
        wallet = _make_wallet(config, engine, replica_id(spool_dir))
        spool = Spool(spool_dir, UsageEvent, key=lambda e: e.id)
        recorder = UsageRecorder(engine, wallet, flush_interval=config.billing.flush_interval,
                                 flush_max=config.billing.flush_max, spool=spool,
                                 shutdown_grace=config.billing.shutdown_grace)
        await recorder.replay()  # committed before any request is served: balances include it
        await wallet.restarted()  # what the previous run left pending is now in the balances
        recorder.start()
    gateway = Gateway(config=config, keys=keys, catalog=catalog, router=Router(), upstream=upstream,
                      wallet=wallet, recorder=recorder)
    app[ENGINE] = engine
    app[GATEWAY] = gateway
    periodic = Periodic()
    periodic.every(keys.refresh_interval, keys.refresh, "refresh-keys")
    periodic.every(catalog.refresh_interval, lambda: catalog.refresh(engine), "refresh-prices")
    if wallet is not None:
        periodic.every(1.0, wallet.refresh, "refresh-balances")
    yield
    await periodic.stop()
    if recorder is not None:
        await recorder.close()  # commit the rest (up to shutdown_grace), else leave it in the spool
    if wallet is not None:
        await wallet.close()
    await upstream.close()
    await engine.dispose()


# The collector's thresholds once the heap is frozen (CPython's default: 700, 10, 10). A young pass
# runs every GC_THRESHOLDS[0] net allocations of container objects. Requests and relayed chunks make
# many short-lived ones: at 700, young passes ran between a request's allocations, promoted live
# requests' objects to the older generations, and full passes followed. At 20,000 most of those objects are
# freed by reference counting first. bench/ streams_1k (1,000 streams open) with a gc-callback probe,
# start-up excluded: 31 pauses over 1 ms totalling 200 ms, one a 58 ms full pass -> 8 pauses, 61 ms,
# the longest 11.5 ms, no full pass. Under request load (bench/ sweep_zero, A/B in one session) a
# request's CPU fell from 0.56-0.59 to 0.46-0.47 ms. Cyclic garbage waits for at most that many
# allocations longer; bench/soak.py stays flat (5 min on SQLite, 30 min on PostgreSQL; RESULTS.md).
GC_THRESHOLDS = (20_000, 20, 10)


async def _ready(app: web.Application) -> AsyncIterator[None]:
    """Last start-up step, after every concern's: the process is ready to serve."""
    gateway = app[GATEWAY]
    # Everything allocated by now (modules, config, caches) lives as long as the process.
    # Freezing it keeps it out of the collector's full passes, which otherwise stop the
    # event loop for 60-80 ms every few seconds under load (measured with bench/).
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    log.info("aigateway ready: %d model(s) served, billing %s, database %s",
             sum(m.servable for m in gateway.catalog.models.values()), "on" if gateway.wallet else "OFF",
             app[ENGINE].url.render_as_string(hide_password=True))
    yield


# Concerns beyond the API: each `setup(app)` adds its routes and middlewares and appends its
# start-up/clean-up to `app.cleanup_ctx` (after the core's, so it is cleaned up before it).
CONCERNS = (pricing_web.setup, deposits_web.setup, portal_web.setup, vouchers_web.setup, console_web.setup,
            keylimits_web.setup)


def create_app(config: Config) -> web.Application:
    extras.check(config)  # a feature whose optional package is missing: one line, before anything starts
    app = web.Application(middlewares=[api_errors], client_max_size=64 * 1024**2)
    app[CONFIG] = config
    app.cleanup_ctx.append(_lifecycle)
    add_api_routes(app)
    app.router.add_get("/healthz", _health)
    for setup in CONCERNS:
        setup(app)
    app.cleanup_ctx.append(_ready)
    return app


async def _health(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})
