"""What every concern's commands share: the config, a migrated database, one-line errors.

Hazard: the concerns' `commands` modules import this module, and `cli` imports them, so
this module imports no concern and not `cli` (that was an import cycle). The config
loader (which knows about demo mode) is handed down by `cli` in the click context.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:  # imported where used: `aigateway --help` should not load SQLAlchemy and Alembic
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    from aigateway.config import Config

T = TypeVar("T")


@dataclass(frozen=True)
class CliState:
    """Put in `ctx.obj` by the `aigateway` group: loads the config (demo=True: the demo's)."""

    load: Callable[[bool], Config]
    demo: bool = False
    # Writes an operator action to the audit log (the console's, wired by cli.py), so the
    # concerns' commands record what they change without importing the console.
    audit: Callable[..., Awaitable[None]] | None = None


def config_of(ctx: click.Context, *, demo: bool = False) -> Config:
    """The config this command works on; errors are one line (raised by the loader)."""
    state = ctx.find_object(CliState)
    if state is None:  # pragma: no cover - a command run outside `aigateway`
        raise click.ClickException("run this through the `aigateway` command")
    return state.load(demo or state.demo)


@asynccontextmanager
async def open_database(config: Config) -> AsyncIterator[AsyncEngine]:
    """A migrated engine for one CLI command, disposed afterwards."""
    from sqlalchemy.exc import DBAPIError

    from aigateway.store.db import create_engine
    from aigateway.store.migrate import upgrade

    engine = create_engine(config.database.url)
    try:
        try:
            await upgrade(engine)
        except (OSError, DBAPIError) as exc:  # hazard: the URL's password must not reach the message
            where = engine.url.render_as_string(hide_password=True)
            first = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]
            raise click.ClickException(
                f"cannot use the database {where}: {first} (is it running? check [database] url in the config "
                "or AIGATEWAY_DATABASE_URL)") from None
        yield engine
    finally:
        await engine.dispose()


def database(ctx: click.Context) -> AbstractAsyncContextManager[AsyncEngine]:
    """`async with database(ctx) as engine:` the command's migrated database."""
    return open_database(config_of(ctx))


async def read_db(ctx: click.Context, job: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """`job(conn)` on a connection to the command's migrated database (reads)."""
    async with database(ctx) as engine, engine.connect() as conn:
        return await job(conn)


async def write_db(ctx: click.Context, job: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """`job(conn)` in one transaction on the command's migrated database: all of it, or nothing."""
    async with database(ctx) as engine, engine.begin() as conn:
        return await job(conn)


def run_command(coro: Coroutine[Any, Any, T], *errors: type[Exception]) -> T:
    """Run a command's coroutine; the listed errors (and money errors) become a one-line
    message and exit status 1 instead of a traceback."""
    from aigateway.money import MoneyError

    caught: tuple[type[Exception], ...] = (MoneyError, *errors)
    try:
        return asyncio.run(coro)
    except caught as exc:
        raise click.ClickException(str(exc)) from exc


def run_sync(fn: Callable[[], T]) -> T:
    """Call a parser of operator input; its ValueError becomes a one-line message."""
    try:
        return fn()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def operator(separator: str = " ") -> str:
    """`operator <login name>` for audit records; just `operator` where there is no login name."""
    try:
        return f"operator{separator}{getpass.getuser()}"
    except Exception:  # no login name (containers): still recorded as the operator
        return "operator"


async def audit(ctx: click.Context, conn: Any, action: str, target: str, before: Any = None,
                after: Any = None, reason: str | None = None) -> None:
    """Record a CLI action in the audit log, in the caller's transaction (nothing when none is wired)."""
    state = ctx.find_object(CliState)
    if state is not None and state.audit is not None:
        await state.audit(conn, actor="cli", action=action, target=target, before=before, after=after,
                          reason=reason)
