"""Fixtures: the mock upstream, databases (SQLite and PostgreSQL), Redis, and gateways.

Services missing on a developer's laptop make their tests skip; in CI
(`AIGATEWAY_REQUIRE_SERVICES=1`, set by .ci/run) they fail instead.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable

import pytest

from aigateway.config import Config
from aigateway.demo.mock_upstream import create_mock_app
from tests.support.gateway import GatewayServer
from tests.support.servers import ServerThread

PG_ADMIN_URL = os.environ.get("AIGATEWAY_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("AIGATEWAY_TEST_REDIS", "redis://127.0.0.1:6379/0")
REQUIRE_SERVICES = os.environ.get("AIGATEWAY_REQUIRE_SERVICES") == "1"


# The markers declared in pyproject.toml, applied from the fixtures a test uses (directly or through
# other fixtures), so `-m "not redis"` and the like select exactly the tests that need the service.
_MARKER_FIXTURES = {
    "redis": {"redis_url", "private_redis"},
    "postgres": {"pg_url", "postgres_server", "private_pg"},
    "browser": {"browser"},
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("db_url") == "postgres":
            used.add("pg_url")
        for marker, fixtures in _MARKER_FIXTURES.items():
            if used & fixtures and item.get_closest_marker(marker) is None:
                item.add_marker(marker)


def service_missing(what: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required here (AIGATEWAY_REQUIRE_SERVICES=1) but not reachable")
    pytest.skip(f"{what} not reachable")


@pytest.fixture(scope="session")
def mock_upstream():
    server = ServerThread(lambda: create_mock_app(slow_seconds=1.5)).start()
    yield server
    server.stop()


async def _pg(statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=3)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_server():
    try:
        asyncio.run(_pg("SELECT 1"))
    except Exception:
        service_missing("PostgreSQL at 127.0.0.1:5432")
    return PG_ADMIN_URL


@pytest.fixture
def pg_url(postgres_server) -> str:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    name = "aigw_" + uuid.uuid4().hex[:12]
    asyncio.run(_pg(f"CREATE DATABASE {name}"))
    base = postgres_server.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    yield f"{base}/{name}"
    asyncio.run(_pg(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/gateway.db"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path) -> str:
    """Runs the test once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/gateway.db"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception:
        service_missing("Redis at 127.0.0.1:6379")
    return REDIS_URL


@pytest.fixture
def prefix(redis_url):
    """A Redis key prefix of this test's own (the shared Redis is never flushed); its keys are deleted after."""
    import uuid

    import redis

    name = "aigwtest-" + uuid.uuid4().hex[:10]
    yield name
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=name + ":*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def gateway_config(upstream_url: str, db_url: str, **overrides) -> Config:
    """A config with one mock provider and models for every mock behaviour."""
    provider = {"base_url": upstream_url + "/v1"}
    chat = {"type": "chat", "input_price": "0.35", "output_price": "1.40", "max_output_tokens": 1024,
            "context_length": 8192}

    def model(name: str, *upstreams: str, **extra) -> dict:
        return {"name": name, **chat, **extra, "routes": [
            {"provider": "mock", "model": u, "priority": i + 1} for i, u in enumerate(upstreams)]}

    data = {
        "database": {"url": db_url},
        "billing": {"flush_interval": 0.02, "disconnect_drain_seconds": 5},
        "providers": {"mock": provider},
        "models": [
            model("llama-3.1-70b", "mock-chat"),
            model("mock-nousage", "mock-chat-nousage"),
            model("mock-long", "mock-chat-long"),
            model("mock-drop", "mock-chat-drop"),
            model("mock-badreq", "mock-chat-badreq"),
            model("mock-failover", "mock-chat-fail500", "mock-chat-fail429", "mock-chat"),
            model("mock-down", "mock-chat-fail500", "mock-chat-fail429"),
            {"name": "nomic-embed-text", "type": "embedding", "input_price": "0.02",
             "routes": [{"provider": "mock", "model": "mock-embed"}]},
            {"name": "mock-embed-nousage", "type": "embedding", "input_price": "0.02",
             "routes": [{"provider": "mock", "model": "mock-embed-nousage"}]},
            {"name": "unpriced-model", "type": "chat", "routes": [{"provider": "mock", "model": "mock-chat"}]},
        ],
        "discover_ollama": False,
        "admin": {"port": 0},  # the operator console on any free port (tests run side by side)
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return Config.model_validate(data)


@pytest.fixture
def start_gateway() -> Callable[..., GatewayServer]:
    """Start gateways from configs; all are stopped at the end of the test."""
    started: list[GatewayServer] = []

    def start(config: Config) -> GatewayServer:
        server = GatewayServer(config).start()
        started.append(server)
        return server

    yield start
    # Every one is stopped even when one fails to (its error is raised after): a replica left
    # running would go on writing to the Redis keys that `prefix` deletes.
    errors = []
    for server in started:
        try:
            server.stop()
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture
def gateway(start_gateway, mock_upstream, sqlite_url) -> GatewayServer:
    """A gateway on SQLite in front of the mock upstream."""
    return start_gateway(gateway_config(mock_upstream.url, sqlite_url))
