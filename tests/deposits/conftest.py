"""Fixtures for deposits: the test xpub, a fake TronGrid, a migrated database, a watcher."""

from __future__ import annotations

import pytest
from bip_utils import Bip39SeedGenerator, Bip44, Bip44Coins

from aigateway.accounts.service import create_customer
from aigateway.deposits.config import DepositsConfig
from aigateway.deposits.service import DepositsService
from aigateway.deposits.watcher import Watcher
from aigateway.store.db import create_engine
from aigateway.store.migrate import upgrade
from tests.deposits.fake_trongrid import FakeTronGrid
from tests.support.servers import ServerThread

MNEMONIC = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"
VECTORS = ["TUEZSdKsoDHQMeZwihtdoBiN46zxhGWYdH", "TSeJkUh4Qv67VNFwY8LaAxERygNdy6NQZK",
           "TYJPRrdB5APNeRs4R7fYZSwW3TcrTKw2gx"]


def account_node():
    seed = Bip39SeedGenerator(MNEMONIC).Generate()
    return Bip44.FromSeed(seed, Bip44Coins.TRON).Purpose().Coin().Account(0)


XPUB = account_node().PublicKey().ToExtended()


def deposits_section(api_url: str, **overrides) -> dict:
    """A [deposits] section with short intervals, as the tests' operator would write it."""
    section = {
        "xpub": XPUB,
        "network": "mainnet",
        "api_url": api_url,
        "api_key_env": "AIGW_TEST_TRON_KEY",
        "rate": "3.50",
        "min_deposit": "1",
        "hot_interval": 0.2,
        "all_interval": 0.4,
        "pending_interval": 0.2,
        "events_interval": 0.3,
        "tick": 0.05,
        "cursor_overlap": 60,
        "requests_per_second": 1000,
        "backoff_initial": 0.1,
        "backoff_max": 0.4,
        "http_timeout": 5,
        "lease_ttl": 5,
    }
    section.update(overrides)
    return section


@pytest.fixture
def tron():
    fake = FakeTronGrid()
    server = ServerThread(fake.app).start()
    fake.url = server.url
    yield fake
    server.stop()


@pytest.fixture
def dcfg(tron) -> DepositsConfig:
    return DepositsConfig.model_validate(deposits_section(tron.url))


class Env:
    """A migrated database with a deposits service and helpers, in the test's event loop."""

    def __init__(self, engine, config: DepositsConfig) -> None:
        self.engine = engine
        self.config = config
        self.service = DepositsService(config, engine)
        self._n = 0
        self.watchers: list[Watcher] = []

    def watcher(self, config: DepositsConfig | None = None, **kw) -> Watcher:
        w = Watcher(self.engine, config or self.config, **kw)
        self.watchers.append(w)
        return w

    async def close(self) -> None:
        for w in self.watchers:
            await w.client.close()
        await self.service.close()
        await self.engine.dispose()

    async def customer(self) -> tuple[int, str]:
        self._n += 1
        async with self.engine.begin() as conn:
            cid = await create_customer(conn, f"c{self._n}@example.com")
        return cid, await self.service.address_for(cid)

    async def scalar(self, query):
        async with self.engine.connect() as conn:
            return await conn.scalar(query)

    async def rows(self, query):
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).all()


async def make_env(url: str, config: DepositsConfig) -> Env:
    engine = create_engine(url)
    await upgrade(engine)
    return Env(engine, config)


@pytest.fixture
async def env(sqlite_url, dcfg):
    e = await make_env(sqlite_url, dcfg)
    yield e
    await e.close()
