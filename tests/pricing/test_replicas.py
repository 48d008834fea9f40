"""Replicas sharing PostgreSQL: one fetches at a time, every one serves the new price."""

import asyncio

import pytest
from sqlalchemy import select

from aigateway.config import Config
from aigateway.pricing.fetcher import Fetcher
from aigateway.pricing.settings import load_settings
from aigateway.pricing.tables import price_fetches
from aigateway.pricing.web import FETCHER
from aigateway.store.db import create_engine
from aigateway.store.migrate import upgrade
from tests.pricing.conftest import input_price, pricing_config

pytestmark = pytest.mark.postgres


def test_second_replica_sees_fetched_prices(start_gateway, mock_upstream, pg_url, source):
    config = pricing_config(mock_upstream.url, pg_url, source.url, fetch_interval=0.5, retry_interval=0.5)
    a = start_gateway(config)
    b = start_gateway(Config.model_validate(config.model_dump()))
    _, key = a.customer("replica@example.com")
    for gw in (a, b):  # b may not have fetched at all: it reads the prices from the database
        gw.wait_for(lambda gw=gw: input_price(gw, key, "or-chat") == "10.500000", timeout=10)

    source.or_model("vendor/chat")["pricing"]["prompt"] = "0.000003"  # x1.2: applied
    for gw in (a, b):  # within a fetch interval + the 5 s catalog refresh
        gw.wait_for(lambda gw=gw: input_price(gw, key, "or-chat") == "12.600000", timeout=8)
    assert a.gateway.catalog.get("or-chat").price == b.gateway.catalog.get("or-chat").price

    async def fetch_rows():
        async with a.engine.connect() as conn:
            return (await conn.execute(select(price_fetches).where(price_fetches.c.ok.is_not(None))
                                       .order_by(price_fetches.c.started_at))).all()

    rows = a.run(fetch_rows())
    holders = {a.app[FETCHER].holder, b.app[FETCHER].holder}
    assert rows and {r.holder for r in rows} <= holders
    for r in rows:  # never two processes fetching at the same time
        for other in rows:
            if other.holder != r.holder:
                assert other.finished_at <= r.started_at or r.finished_at <= other.started_at, (r, other)


def test_lease_goes_to_exactly_one_process(pg_url):
    config = pricing_config("http://127.0.0.1:9", pg_url, "http://127.0.0.1:9")
    settings = load_settings(config)

    async def race():
        engines = [create_engine(pg_url, pool_size=1) for _ in range(6)]
        await upgrade(engines[0])
        fetchers = [Fetcher(e, config, settings, holder=f"p{i}") for i, e in enumerate(engines)]
        won = await asyncio.gather(*(f.claim() for f in fetchers))
        again = await asyncio.gather(*(f.claim(force=True) for f in fetchers))  # the lease is still held
        winner = fetchers[won.index(True)]
        await winner.release(ok=True)
        after = await asyncio.gather(*(f.claim() for f in fetchers))  # not due: the interval has not passed
        forced = await fetchers[0].claim(force=True)  # "fetch now" once the lease is free
        for e in engines:
            await e.dispose()
        return won, again, after, forced

    won, again, after, forced = asyncio.run(race())
    assert won.count(True) == 1
    assert not any(again) and not any(after) and forced
