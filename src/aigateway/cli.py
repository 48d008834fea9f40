"""The `aigateway` command: serve, migrate, and operator tools under `admin`."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from contextlib import asynccontextmanager

import click
from sqlalchemy import select

from aigateway.config import Config, load_config


def _setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@click.group()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="TOML config file (default: ./aigateway.toml if present, else embedded defaults).")
@click.option("--demo", is_flag=True, help="Work on the demo database (what `serve --demo` uses).")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, demo: bool) -> None:
    """aigateway: an OpenAI-compatible AI gateway with prepaid TMT balances."""
    ctx.obj = {"config_path": config_path, "demo": demo}


def _config(ctx: click.Context, *, demo: bool = False) -> Config:
    try:
        config = load_config(ctx.obj["config_path"])
    except Exception as exc:  # pydantic/toml errors: say what is wrong, not a traceback
        raise click.ClickException(f"config: {_config_error(exc)}") from None
    if demo or ctx.obj["demo"]:
        from aigateway.demo.setup import demo_config

        overridden = "AIGATEWAY_DATABASE_URL" in os.environ or "database" in config.model_fields_set
        config = demo_config(config, database_overridden=overridden)
    return config


@main.command()
@click.option("--host", default=None)
@click.option("--port", type=int, default=None)
@click.option("--demo", is_flag=True, help="Also start a local MOCK upstream with mock models (offline trial).")
@click.option("--access-log", is_flag=True, help="Log every request (off by default: it costs throughput).")
@click.option("--log-level", default="INFO")
@click.pass_context
def serve(ctx, host, port, demo, access_log, log_level) -> None:
    """Run the gateway (API and portal) until interrupted."""
    from aiohttp import web

    from aigateway.app import create_app

    _setup_logging(log_level)
    config = _config(ctx, demo=demo)
    if host:
        config.server.host = host
    if port:
        config.server.port = port
    try:
        app = create_app(config) if not (demo or ctx.obj["demo"]) else _demo_app(config)
    except ValueError as exc:  # a concern's config section is wrong (e.g. DepositsConfigError): one line
        raise click.ClickException(f"config: {_config_error(exc)}") from None
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - Windows
        pass
    web.run_app(app, host=config.server.host, port=config.server.port, access_log=logging.getLogger(
        "aiohttp.access") if access_log else None, print=lambda *_: None, handler_cancellation=False)


def _config_error(exc: Exception) -> str:
    """One line naming the fields at fault, never their values (they may be keys or passwords)."""
    from pydantic import ValidationError

    from aigateway.deposits.config import redact

    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())) or 'config'}: "
                         f"{redact(str(e.get('msg', 'invalid')))}"
                         for e in exc.errors(include_url=False, include_input=False, include_context=False))
    return redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def _demo_app(config: Config):
    from aiohttp import web

    from aigateway.app import create_app
    from aigateway.appkeys import STARTUP_HOOKS
    from aigateway.demo.mock_upstream import create_mock_app
    from aigateway.demo.setup import ensure_demo_customer

    app = create_app(config)
    app[STARTUP_HOOKS].append(ensure_demo_customer)

    async def mock_upstream(_app):
        runner = web.AppRunner(create_mock_app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", config.server.demo_port).start()
        logging.getLogger("aigateway").warning(
            "DEMO MODE: a MOCK upstream is serving models mock-chat and mock-embed on 127.0.0.1:%d; "
            "database %s. Not for real customers.", config.server.demo_port, config.database.url)
        yield
        await runner.cleanup()

    app.cleanup_ctx.insert(0, mock_upstream)
    return app


@main.command()
@click.pass_context
def migrate(ctx) -> None:
    """Create or upgrade the database schema."""
    config = _config(ctx)

    async def run():
        from aigateway.store.db import create_engine
        from aigateway.store.migrate import upgrade

        engine = create_engine(config.database.url)
        await upgrade(engine)
        await engine.dispose()

    asyncio.run(run())
    click.echo("database is up to date")


@main.group()
def admin() -> None:
    """Operator tools: customers, balances, keys."""


@asynccontextmanager
async def open_database(config: Config):
    """A migrated engine for one CLI command (every concern's commands use this)."""
    from aigateway.store.db import create_engine
    from aigateway.store.migrate import upgrade

    engine = create_engine(config.database.url)
    try:
        await upgrade(engine)
        yield engine
    finally:
        await engine.dispose()


def _db(ctx):
    return open_database(_config(ctx))


def run_command(coro, *errors: type[Exception]):
    """Run a command's coroutine; the listed errors (and the money/account/ledger ones) become
    a one-line message and exit status 1 instead of a traceback."""
    from aigateway.accounts.service import AccountError
    from aigateway.billing.ledger import LedgerError
    from aigateway.money import MoneyError

    try:
        return asyncio.run(coro)
    except (AccountError, LedgerError, MoneyError, *errors) as exc:
        raise click.ClickException(str(exc)) from exc


_run = run_command


@admin.group()
def customer() -> None:
    """Create and list customers."""


@customer.command("create")
@click.option("--email", required=True)
@click.pass_context
def customer_create(ctx, email: str) -> None:
    """Create a customer (prints its id)."""
    from aigateway.accounts.service import create_customer

    async def run():
        async with _db(ctx) as engine, engine.begin() as conn:
            click.echo(await create_customer(conn, email))

    _run(run())


@customer.command("list")
@click.pass_context
def customer_list(ctx) -> None:
    """List customers with their balances."""
    from aigateway.accounts.tables import customers
    from aigateway.money import format_tmt

    async def run():
        async with _db(ctx) as engine, engine.connect() as conn:
            rows = (await conn.execute(select(customers).order_by(customers.c.id))).all()
        click.echo(f"{'id':>6}  {'email':<40} {'balance (TMT)':>18}  status")
        for row in rows:
            click.echo(f"{row.id:>6}  {row.email:<40} {format_tmt(row.balance):>18}  {row.status}")

    _run(run())


def _ledger_command(kind: str, ctx, customer_ref: str, amount: str, reference: str | None, memo: str | None):
    from aigateway.accounts.service import find_customer
    from aigateway.billing.ledger import post_entry
    from aigateway.money import format_tmt, to_units

    units = to_units(amount)
    if kind == "credit" and units <= 0:
        raise click.ClickException("a credit must be positive; use `admin adjust` to take money away")
    if units == 0:
        raise click.ClickException("the amount must not be zero")

    async def run():
        async with _db(ctx) as engine, engine.begin() as conn:
            row = await find_customer(conn, customer_ref)
            ref = reference or f"{kind}:{os.urandom(8).hex()}"
            posted = await post_entry(conn, customer_id=row.id, amount=units, kind=kind, reference=f"admin:{ref}",
                                      memo=memo)
        state = "applied" if posted.applied else "already applied earlier (same reference): nothing changed"
        click.echo(f"{kind} {format_tmt(units)} TMT to customer {row.id}: {state}; "
                   f"balance {format_tmt(posted.balance)} TMT")

    _run(run())


@admin.command()
@click.option("--customer", "customer_ref", required=True, help="Customer id or email.")
@click.option("--amount", required=True, help="TMT, e.g. 25 or 12.5")
@click.option("--reference", default=None, help="Idempotency reference: the same reference is applied once.")
@click.option("--memo", default=None)
@click.pass_context
def credit(ctx, customer_ref, amount, reference, memo) -> None:
    """Add money to a customer's balance."""
    _ledger_command("credit", ctx, customer_ref, amount, reference, memo)


@admin.command()
@click.option("--customer", "customer_ref", required=True, help="Customer id or email.")
@click.option("--amount", required=True, help="Signed TMT, e.g. -3.5")
@click.option("--reason", required=True, help="Why; kept in the ledger.")
@click.option("--reference", default=None)
@click.pass_context
def adjust(ctx, customer_ref, amount, reason, reference) -> None:
    """Correct a balance up or down (a ledger adjustment with a reason)."""
    _ledger_command("adjustment", ctx, customer_ref, amount, reference, reason)


@admin.command()
@click.option("--customer", "customer_ref", required=True)
@click.pass_context
def balance(ctx, customer_ref) -> None:
    """Show a customer's balance and the sum of its ledger (they must agree)."""
    from aigateway.accounts.service import find_customer
    from aigateway.billing.ledger import ledger_sum
    from aigateway.money import format_tmt

    async def run():
        async with _db(ctx) as engine, engine.connect() as conn:
            row = await find_customer(conn, customer_ref)
            total = await ledger_sum(conn, row.id)
        click.echo(f"balance {format_tmt(row.balance)} TMT (ledger sum {format_tmt(total)} TMT)")

    _run(run())


@admin.command()
@click.pass_context
def reconcile(ctx) -> None:
    """Check balances against the ledger, charges against usage, the spool and Redis holds."""
    from aigateway.billing.reconcile import reconcile as check
    from aigateway.billing.spool import default_spool_dir

    config = _config(ctx)

    async def run():
        async with open_database(config) as engine:
            return await check(engine, spool_dir=config.billing.spool_dir or default_spool_dir(config.database.url),
                               redis_url=config.redis.url, redis_prefix=config.redis.key_prefix)

    problems = _run(run())
    for problem in problems:
        click.echo(problem)
    if problems:
        sys.exit(1)
    click.echo("ok")


@admin.group()
def key() -> None:
    """Create, list and revoke API keys."""


@key.command("create")
@click.option("--customer", "customer_ref", required=True)
@click.option("--name", default="default")
@click.option("--models", default=None, help="Comma-separated models this key may use (default: all).")
@click.pass_context
def key_create(ctx, customer_ref, name, models) -> None:
    """Create a key. The key is printed once, on the last line; only its hash is stored."""
    from aigateway.accounts.service import create_key, find_customer

    allowed = [m.strip() for m in models.split(",") if m.strip()] if models else None

    async def run():
        async with _db(ctx) as engine, engine.begin() as conn:
            row = await find_customer(conn, customer_ref)
            key_id, new = await create_key(conn, row.id, name, allowed)
        click.echo(f"key {key_id} ({new.masked}) for customer {row.id}. Copy it now, it is not shown again:",
                   err=True)
        click.echo(new.secret)

    _run(run())


@key.command("list")
@click.option("--customer", "customer_ref", required=True)
@click.pass_context
def key_list(ctx, customer_ref) -> None:
    from aigateway.accounts.keys import mask
    from aigateway.accounts.service import find_customer, list_keys

    async def run():
        async with _db(ctx) as engine, engine.connect() as conn:
            row = await find_customer(conn, customer_ref)
            keys = await list_keys(conn, row.id)
        for k in keys:
            state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
            click.echo(f"{k.id:>6}  {mask(k.prefix, k.last4):<16} {k.name:<24} {state}")

    _run(run())


@key.command("revoke")
@click.argument("key_id", type=int)
@click.pass_context
def key_revoke(ctx, key_id) -> None:
    """Revoke a key; running gateways refuse it within about a second."""
    from aigateway.accounts.service import revoke_key

    async def run():
        async with _db(ctx) as engine, engine.begin() as conn:
            await revoke_key(conn, key_id)
        click.echo(f"key {key_id} revoked")

    _run(run())


@main.command("mock-upstream")
@click.option("--port", type=int, default=8001)
def mock_upstream(port: int) -> None:
    """Run only the MOCK OpenAI-compatible upstream (for trials and benchmarks)."""
    from aiohttp import web

    from aigateway.demo.mock_upstream import create_mock_app

    web.run_app(create_mock_app(), host="127.0.0.1", port=port, access_log=None)


# Concerns add their own commands: `register(main, admin)` in each of these modules.
for _name in ("aigateway.pricing.commands", "aigateway.deposits.commands", "aigateway.portal.commands",
              "aigateway.billing.commands", "aigateway.vouchers.commands", "aigateway.keylimits.commands"):
    try:
        __import__(_name, fromlist=["register"]).register(main, admin)
    except ModuleNotFoundError as _exc:
        if not (_name + ".").startswith((_exc.name or "") + "."):
            raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
