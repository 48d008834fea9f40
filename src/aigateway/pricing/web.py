"""Plug pricing into the app: the scheduled fetcher and the operator's JSON view.

`setup(app)` validates `[pricing]` (a bad section stops the start, with the
reason), adds to `app.cleanup_ctx` a start-up that records config exchange
rates and starts the fetch schedule (stopped again at clean-up), and, when `admin_token_env` names a set environment
variable, `GET /admin/pricing` and `POST /admin/pricing/fetch` behind
`Authorization: Bearer <that token>`.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import AsyncIterator

import orjson
from aiohttp import web

from aigateway.appkeys import CONFIG, ENGINE, GATEWAY
from aigateway.background import Periodic
from aigateway.money import format_tmt
from aigateway.pricing.fetcher import Fetcher, fetch_status
from aigateway.pricing.followers import price_followers
from aigateway.pricing.fx import apply_config_rates, current_rate_row
from aigateway.pricing.service import current_prices, pending_versions
from aigateway.pricing.settings import PricingSettings, load_settings
from aigateway.timeutil import iso

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("pricing_settings", PricingSettings)
FETCHER = web.AppKey("pricing_fetcher", Fetcher)


def setup(app: web.Application) -> None:
    settings = load_settings(app[CONFIG])
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_lifecycle)
    app.router.add_get("/admin/pricing", admin_view)
    app.router.add_post("/admin/pricing/fetch", admin_fetch)


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    periodic = Periodic()
    await _start(app, periodic)
    yield
    await periodic.stop()


async def _start(app: web.Application, periodic: Periodic) -> None:
    config, settings, engine = app[CONFIG], app[SETTINGS], app[ENGINE]
    for currency in await apply_config_rates(engine, settings):
        log.info("exchange rate %s -> TMT set from the config: %s", currency, settings.fx[currency])
    fetcher = Fetcher(engine, config, settings, catalog=app[GATEWAY].catalog)
    app[FETCHER] = fetcher
    if not fetcher.tied and not settings.sources:  # with sources, a console model may follow one later
        return
    if settings.fetch:
        periodic.every(settings.tick, fetcher.tick, "fetch-prices")
        log.info("prices of %d model(s) follow %s, fetched every %gs (one replica at a time)",
                 sum(map(len, fetcher.tied.values())), ", ".join(sorted(fetcher.tied or settings.sources)),
                 settings.fetch_interval)
    else:
        log.info("pricing.fetch = false: this process does not fetch prices; it picks them up from the database")


def _authorized(request: web.Request) -> None:
    settings = request.app[SETTINGS]
    token = os.environ.get(settings.admin_token_env) if settings.admin_token_env else None
    if not token:
        raise web.HTTPNotFound()  # the admin view is off unless a token is configured
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise web.HTTPUnauthorized(headers={"WWW-Authenticate": "Bearer"})


async def pricing_overview(app: web.Application) -> dict:
    """What the operator needs to see: rate, sources' health, prices in force, held changes."""
    config, engine = app[CONFIG], app[ENGINE]
    follows = {m.name: m.price_source for m in config.models}
    catalog = app[GATEWAY].catalog
    async with engine.connect() as conn:
        rate = await current_rate_row(conn, "USD")
        status = await fetch_status(conn)
        prices = await current_prices(conn)
        held = await pending_versions(conn)
        for follower in await price_followers(conn):  # models added in the console (the config wins a name)
            follows.setdefault(follower.name, follower.price_source)
    sources = {}
    for name, entry in status["sources"].items():
        last = entry["last"]
        sources[name] = {
            "last_fetch": {"started_at": iso(last.started_at), "finished_at": iso(last.finished_at),
                           "ok": last.ok, "error": last.error, "applied": last.applied, "held": last.held,
                           "unchanged": last.unchanged, "problems": last.problems,
                           "detail": orjson.loads(last.detail) if last.detail else {}},
            "last_ok_at": iso(entry["last_ok_at"]),
        }
    models = []
    for name in sorted(set(catalog.models) | set(prices)):
        row, model = prices.get(name), catalog.get(name)
        models.append({
            "model": name, "follows": follows.get(name),
            "input": format_tmt(row.input_price) if row else None,
            "output": format_tmt(row.output_price) if row else None,
            "free": bool(row and row.free), "version_id": row.id if row else None,
            "set_by": row.source if row else None, "updated_at": iso(row.updated_at) if row else None,
            "context_length": model.context_length if model else None,
            "max_output_tokens": model.max_output_tokens if model else None,
            "served": bool(model and model.servable),
        })
    return {
        "currency": "TMT", "unit": "1M tokens",
        "fx": {"USD": {"rate": rate.rate, "source": rate.source, "set_at": iso(rate.created_at)} if rate else None},
        "sources": sources,
        "models": models,
        "held": [{"version_id": v.id, "model": v.model, "input": format_tmt(v.input_price),
                  "output": format_tmt(v.output_price), "free": v.free, "source": v.source, "note": v.note,
                  "created_at": iso(v.created_at)} for v in held],
    }


async def admin_view(request: web.Request) -> web.Response:
    _authorized(request)
    body = await pricing_overview(request.app)
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def admin_fetch(request: web.Request) -> web.Response:
    _authorized(request)
    await request.app[FETCHER].request()
    return web.json_response({"requested": True, "note": "a replica fetches within a few seconds"}, status=202)
