"""Optional packages (aigateway.extras): a config that asks for a feature whose package is missing
is refused with one line naming the extra; a config that does not ask for it never needs it.

A package is made "missing" by setting it to None in sys.modules (then `import x` raises
ImportError), never by uninstalling it.
"""

import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from aigateway import extras
from aigateway.app import create_app
from aigateway.cli import main
from aigateway.config import Config

REDIS_URL = "redis://127.0.0.1:6379/0"
PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


@pytest.fixture(autouse=True)
def _no_env_overrides(monkeypatch):
    for name in ("AIGATEWAY_DATABASE_URL", "AIGATEWAY_REDIS_URL", "AIGATEWAY_CONFIG"):
        monkeypatch.delenv(name, raising=False)


def _missing(monkeypatch, *modules: str) -> None:
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


def _config(**sections) -> Config:
    return Config.model_validate(sections)


@pytest.mark.parametrize(("module", "sections", "extra"), [
    ("redis", {"redis": {"url": REDIS_URL}}, "redis"),
    ("asyncpg", {"database": {"url": PG_URL}}, "postgres"),
    ("bip_utils", {"deposits": {"xpub": "xpub-not-checked-here"}}, "deposits"),
])
def test_a_feature_without_its_package_is_one_line_naming_the_extra(monkeypatch, module, sections, extra):
    extras.check(_config(**sections))  # installed: accepted
    _missing(monkeypatch, module)
    with pytest.raises(extras.MissingExtra) as caught:
        extras.check(_config(**sections))
    message = str(caught.value)
    assert "\n" not in message
    assert f"pip install 'aigateway[{extra}]'" in message
    assert extras.installed(module) is False


def test_a_config_that_does_not_ask_for_a_feature_never_needs_its_package(monkeypatch):
    _missing(monkeypatch, "redis", "asyncpg", "bip_utils")
    extras.check(Config())  # SQLite, no Redis, no deposits
    extras.check(_config(deposits={"enabled": False, "xpub": "xpub-unused"}))
    extras.check(_config(database={"url": "postgresql+psycopg://postgres@127.0.0.1/test"}))  # another driver


def test_create_app_refuses_before_anything_starts(monkeypatch):
    _missing(monkeypatch, "redis")
    with pytest.raises(extras.MissingExtra, match=r"aigateway\[redis\]"):
        create_app(_config(redis={"url": REDIS_URL}))


def test_the_cli_says_which_extra_to_install_in_one_line(monkeypatch, tmp_path):
    path = tmp_path / "aigateway.toml"
    path.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path}/x.db"\n[redis]\nurl = "{REDIS_URL}"\n')
    _missing(monkeypatch, "redis")
    result = CliRunner().invoke(main, ["--config", str(path), "migrate"], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert lines[0].startswith("Error: config: Redis") and "pip install 'aigateway[redis]'" in lines[0]
    assert not (tmp_path / "x.db").exists()  # refused before the database was touched


def test_the_default_install_imports_and_builds_the_app_without_the_optional_packages(tmp_path):
    """In a fresh interpreter where importing redis, asyncpg or bip_utils fails: the CLI, the app and
    every concern load, and the default config (SQLite) builds the application."""
    code = textwrap.dedent(f"""
        import sys
        for name in ("redis", "asyncpg", "bip_utils"):
            sys.modules[name] = None  # `import name` now raises ImportError
        import aigateway.cli
        from aigateway.app import create_app
        from aigateway.config import Config
        config = Config.model_validate({{"database": {{"url": "sqlite+aiosqlite:///{tmp_path}/d.db"}}}})
        create_app(config)
        loaded = sorted(n for n in ("redis", "asyncpg", "bip_utils") if sys.modules.get(n) is not None)
        print("ok", loaded)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok []"


def test_a_sqlite_gateway_never_loads_the_postgresql_driver(tmp_path):
    """With asyncpg installed, a gateway on SQLite starts, commits usage (a duplicate batch
    included, which is told apart by the driver's error) and stops without importing it: the
    driver is ~2.8 MiB of every process that would never use it."""
    code = textwrap.dedent(f"""
        import asyncio, sys
        from aiohttp import web
        from sqlalchemy import func, select
        from aigateway.accounts.service import create_customer
        from aigateway.api.gateway import GATEWAY
        from aigateway.app import create_app
        from aigateway.billing.recorder import UsageEvent
        from aigateway.billing.tables import usage_records
        from aigateway.config import Config
        from aigateway.appkeys import ENGINE

        async def main():
            config = Config.model_validate({{"database": {{"url": "sqlite+aiosqlite:///{tmp_path}/d.db"}},
                                             "admin": {{"port": 0}}}})
            app = create_app(config)
            runner = web.AppRunner(app)
            await runner.setup()  # every concern's start-up: migrations, caches, the group commit
            async with app[ENGINE].begin() as conn:
                customer = await create_customer(conn, "driver@example.com")
            recorder = app[GATEWAY].recorder
            event = UsageEvent(id="u1", customer_id=customer, api_key_id=None, model="m", endpoint="chat",
                               status=400, error="refused")
            recorder.record(event)
            await recorder.flush()
            await recorder._write([event])  # already there: the fast path fails, the careful one runs
            async with app[ENGINE].connect() as conn:
                print("rows", await conn.scalar(select(func.count()).select_from(usage_records)))
            await runner.cleanup()

        asyncio.run(main())
        print("asyncpg loaded", "asyncpg" in sys.modules)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[-2:] == ["rows 1", "asyncpg loaded False"], result.stdout
