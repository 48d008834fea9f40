"""The `aigateway` command: serve, migrate, and operator tools under `admin`.

Each concern owns its commands (`<concern>/commands.py`, module-level click groups);
this module only assembles them, loads the config (demo mode included) and turns any
error into one line that says what to do, never a traceback.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import sys
from typing import Any

import click

from aigateway import extras
from aigateway.accounts import commands as accounts_commands
from aigateway.billing import commands as billing_commands
from aigateway.clikit import CliState, config_of, open_database, setup_logging
from aigateway.config import Config, load_config
from aigateway.console import audit as console_audit
from aigateway.console import commands as console_commands
from aigateway.deposits import commands as deposits_commands
from aigateway.keylimits import commands as keylimits_commands
from aigateway.portal import commands as portal_commands
from aigateway.pricing import commands as pricing_commands
from aigateway.vouchers import commands as vouchers_commands

DEBUG_ENV = "AIGATEWAY_DEBUG"  # set to 1 to see the traceback behind a one-line error


class _OneLineErrors(click.Group):
    """Hazard: an unexpected exception would print a traceback (and maybe a secret in a
    local variable's repr); every error becomes one line with what to do instead."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            if os.environ.get(DEBUG_ENV):
                raise
            raise click.ClickException(error_line(exc)) from None


def error_line(exc: BaseException) -> str:
    """One line for an unexpected error: what failed and what to do, never a secret."""
    from aigateway.deposits.config import redact

    text = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    try:
        from sqlalchemy.exc import DBAPIError

        if isinstance(exc, DBAPIError):
            return (f"database error: {text} (check [database] url or AIGATEWAY_DATABASE_URL, "
                    "and that the database server is running)")
    except ImportError:  # pragma: no cover
        pass
    if isinstance(exc, OSError) and exc.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ETIMEDOUT):
        return f"cannot connect: {text} (is the server it names running? check the config)"
    if isinstance(exc, OSError):
        return f"{text} (check the path or address it names)"
    return f"{type(exc).__name__}: {text} (set {DEBUG_ENV}=1 for the details)"


def _config_error(exc: Exception) -> str:
    """One line naming the fields at fault, never their values (they may be keys or passwords)."""
    from pydantic import ValidationError

    from aigateway.deposits.config import redact

    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())) or 'config'}: "
                         f"{redact(str(e.get('msg', 'invalid')))}"
                         for e in exc.errors(include_url=False, include_input=False, include_context=False))
    return redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def _loader(config_path: str | None):
    def load(demo: bool) -> Config:
        try:
            config = load_config(config_path)
        except Exception as exc:  # pydantic/toml errors: say what is wrong, not a traceback
            raise click.ClickException(f"config: {_config_error(exc)}") from None
        if demo:
            from aigateway.demo.setup import demo_config

            overridden = "AIGATEWAY_DATABASE_URL" in os.environ or "database" in config.model_fields_set
            config = demo_config(config, database_overridden=overridden)
        try:  # e.g. [redis] url set without the redis extra: one line naming the extra to install
            extras.check(config)
        except extras.MissingExtra as exc:
            raise click.ClickException(f"config: {exc}") from None
        return config

    return load


@click.group(cls=_OneLineErrors)
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="TOML config file (default: ./aigateway.toml if present, else embedded defaults).")
@click.option("--demo", is_flag=True, help="Work on the demo database (what `serve --demo` uses).")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, demo: bool) -> None:
    """aigateway: an OpenAI-compatible AI gateway with prepaid TMT balances."""
    ctx.obj = CliState(load=_loader(config_path), demo=demo, audit=console_audit.record)


@main.command()
@click.option("--host", default=None)
@click.option("--port", type=int, default=None, help="Port of the API and portal (or AIGATEWAY_PORT).")
@click.option("--demo", is_flag=True, help="Also start a local MOCK upstream with mock models (offline trial).")
@click.option("--access-log", is_flag=True, help="Log every request (off by default: it costs throughput).")
@click.option("--log-level", default="INFO")
@click.option("--workers", type=int, default=None, envvar="AIGATEWAY_WORKERS",
              help="Worker processes on the port (or AIGATEWAY_WORKERS). Default: the cores when [redis] url "
                   "is set, else 1; more than 1 needs Redis (shared holds).")
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None, demo: bool, access_log: bool,
          log_level: str, workers: int | None) -> None:
    """Run the gateway (API and portal) until interrupted."""
    from aigateway.api.protocol import run_app
    from aigateway.app import create_app
    from aigateway.serve.workers import WorkersRefused, available_cores, run_workers, worker_count

    setup_logging(log_level)
    state = ctx.find_object(CliState)
    demo = demo or (state is not None and state.demo)
    config = config_of(ctx, demo=demo)
    if host:
        config.server.host = host
    if port:
        config.server.port = port
    try:
        count = worker_count(workers, config, cores=available_cores(), demo=demo)
    except WorkersRefused as exc:
        raise click.ClickException(str(exc)) from None
    if count > 1:
        try:
            create_app(config)  # only to validate every concern's section here, before any worker starts
        except ValueError as exc:
            raise click.ClickException(f"config: {_config_error(exc)}") from None
        _install_uvloop()
        try:
            status = run_workers(config, count, describe_error=error_line,
                                 access_log=logging.getLogger("aiohttp.access") if access_log else None)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE and "address already in use" not in str(exc):
                raise
            raise click.ClickException(_port_in_use(config)) from None
        if status:
            raise click.ClickException("a worker could not start (its error is above); nothing is served")
        return
    try:
        app = create_app(config) if not demo else _demo_app(config)
    except ValueError as exc:  # a concern's config section is wrong (e.g. DepositsConfigError): one line
        raise click.ClickException(f"config: {_config_error(exc)}") from None
    _install_uvloop()
    try:
        # run_app of api/protocol: connections that answer even aiohttp's own parse errors in
        # OpenAI's error JSON, and a shutdown that runs clean-up (final commit, spool) to its end.
        run_app(app, host=config.server.host, port=config.server.port, access_log=logging.getLogger(
            "aiohttp.access") if access_log else None, handler_cancellation=False)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE and "address already in use" not in str(exc):
            raise
        raise click.ClickException(_port_in_use(config)) from None


def _port_in_use(config: Config) -> str:
    return (f"port {config.server.port} on {config.server.host} is already in use: stop what uses it, or choose "
            "another with `aigateway serve --port N` (or AIGATEWAY_PORT=N)")


def _install_uvloop() -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - Windows
        pass


def _demo_app(config: Config):
    from aigateway.app import create_app
    from aigateway.demo.setup import demo_customer, mock_upstream, with_free_demo_port

    app = create_app(with_free_demo_port(config))
    app.cleanup_ctx.insert(0, mock_upstream)
    app.cleanup_ctx.append(demo_customer)
    return app


@main.command()
@click.pass_context
def migrate(ctx: click.Context) -> None:
    """Create or upgrade the database schema."""
    config = config_of(ctx)

    async def run() -> None:
        async with open_database(config):
            pass

    asyncio.run(run())
    click.echo("database is up to date")


@main.group()
def admin() -> None:
    """Operator tools: customers, balances, keys, prices, deposits, vouchers."""


@main.command("mock-upstream")
@click.option("--port", type=int, default=8001)
def mock_upstream(port: int) -> None:
    """Run only the MOCK OpenAI-compatible upstream (for trials and benchmarks)."""
    from aiohttp import web

    from aigateway.demo.mock_upstream import create_mock_app

    web.run_app(create_mock_app(), host="127.0.0.1", port=port, access_log=None)


for _command in (accounts_commands.customer, accounts_commands.key,
                 billing_commands.credit, billing_commands.adjust, billing_commands.balance,
                 billing_commands.reconcile, billing_commands.usage,
                 pricing_commands.price, pricing_commands.fx,
                 deposits_commands.deposits_group, portal_commands.portal, vouchers_commands.vouchers_group,
                 console_commands.operator):
    admin.add_command(_command)
accounts_commands.key.add_command(keylimits_commands.limits_cmd)  # admin key limits ID ...
main.add_command(deposits_commands.watcher_cmd)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
