"""`aigateway serve --demo`: a local mock upstream and mock models, clearly labelled.

Demo mode keeps its files (database `aigateway-demo.db` and its usage spool) in one
per-user folder, whatever the working directory: `$AIGATEWAY_DEMO_DIR`, else
`$XDG_DATA_HOME/aigateway/demo`, else `~/.local/share/aigateway/demo`. So
`aigateway --demo admin ...` run anywhere finds the demo customer, and demo customers,
keys and balances never mix with a real deployment's.

The mock upstream listens on `[server] demo_port` (default 8001); when that port is
busy, `serve --demo` picks a free one and says so.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import click
from aiohttp import web
from sqlalchemy import select

from aigateway.accounts.service import create_customer, create_key
from aigateway.accounts.tables import customers
from aigateway.appkeys import CONFIG, ENGINE
from aigateway.billing.ledger import post_entry
from aigateway.config import Config, ModelConfig, ProviderConfig, RouteConfig
from aigateway.money import to_units

DEMO_PROVIDER = "demo-mock"
DEMO_EMAIL = "demo@example.com"


def demo_dir() -> Path:
    """The one folder of the demo's files (created on first use)."""
    if explicit := os.environ.get("AIGATEWAY_DEMO_DIR"):
        base = Path(explicit)
    else:
        data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        base = Path(data) / "aigateway" / "demo"
    base.mkdir(parents=True, exist_ok=True)
    return base.resolve()


def demo_database_url() -> str:
    return f"sqlite+aiosqlite:///{demo_dir() / 'aigateway-demo.db'}"


def demo_config(config: Config, *, database_overridden: bool) -> Config:
    config = config.model_copy(deep=True)
    if not database_overridden:
        config.database.url = demo_database_url()
    config.providers[DEMO_PROVIDER] = ProviderConfig(base_url=f"http://127.0.0.1:{config.server.demo_port}/v1")
    config.models += [
        ModelConfig(name="mock-chat", type="chat", input_price="1.00", output_price="2.00",
                    context_length=8192, max_output_tokens=1024,
                    routes=[RouteConfig(provider=DEMO_PROVIDER, model="mock-chat")]),
        ModelConfig(name="mock-embed", type="embedding", input_price="0.10",
                    routes=[RouteConfig(provider=DEMO_PROVIDER, model="mock-embed")]),
    ]
    config.discover_ollama = False
    return Config.model_validate(config.model_dump())


async def mock_upstream(app: web.Application) -> AsyncIterator[None]:
    """First start-up step in demo mode (the catalog's routes point at it); stopped last."""
    runner = await start_mock_upstream(app[CONFIG])
    yield
    await runner.cleanup()


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def with_free_demo_port(config: Config) -> Config:
    """`config` whose mock upstream port is free: `demo_port`, or a free one chosen now (logged)."""
    if port_is_free("127.0.0.1", config.server.demo_port):
        return config
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    logging.getLogger("aigateway").warning(
        "demo: port %d is busy; the mock upstream uses port %d instead (set [server] demo_port to choose)",
        config.server.demo_port, port)
    config = config.model_copy(deep=True)
    config.server.demo_port = port
    config.providers[DEMO_PROVIDER] = ProviderConfig(base_url=f"http://127.0.0.1:{port}/v1")
    return config


async def start_mock_upstream(config: Config) -> web.AppRunner:
    from aigateway.demo.mock_upstream import create_mock_app

    runner = web.AppRunner(create_mock_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", config.server.demo_port).start()
    logging.getLogger("aigateway").warning(
        "DEMO MODE: a MOCK upstream is serving models mock-chat and mock-embed on 127.0.0.1:%d; "
        "database %s. Not for real customers.", config.server.demo_port, config.database.url)
    return runner


async def demo_customer(app: web.Application) -> AsyncIterator[None]:
    """Last start-up step in demo mode: the database is migrated by then."""
    await ensure_demo_customer(app)
    yield


async def ensure_demo_customer(app: web.Application) -> None:
    """On the first demo start, make a customer with 100 TMT and print its key (once) to stdout."""
    engine = app[ENGINE]
    async with engine.begin() as conn:
        if await conn.scalar(select(customers.c.id).where(customers.c.email == DEMO_EMAIL)) is not None:
            click.echo(f"Demo customer {DEMO_EMAIL} exists. New key: aigateway --demo admin key create "
                       f"--customer {DEMO_EMAIL}")
            return
        customer_id = await create_customer(conn, DEMO_EMAIL)
        await post_entry(conn, customer_id=customer_id, amount=to_units(100), kind="credit",
                         reference="demo:welcome-credit", memo="demo credit")
        _, key = await create_key(conn, customer_id, "demo")
    base = app[CONFIG].server.base_url
    click.echo(f"""
  DEMO MODE: customer {DEMO_EMAIL} with 100 TMT; its API key (shown once):

      {key.secret}

  Try it:  curl {base}/v1/chat/completions -H "Authorization: Bearer {key.secret}" \\
             -H "Content-Type: application/json" \\
             -d '{{"model": "mock-chat", "messages": [{{"role": "user", "content": "Hello!"}}]}}'
""")
