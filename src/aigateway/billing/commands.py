"""The operator's money commands: `admin credit | adjust | balance | reconcile`, and
`admin usage capped` (requests charged their hold, see billing.capped).

Every balance change goes through `billing.ledger.post_entry` with a unique reference,
so running the same `credit --reference X` twice credits once.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

from aigateway.clikit import audit, config_of, open_database, read_db, run_command, write_db
from aigateway.timeutil import as_utc

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from aigateway.billing.capped import CappedRecord
    from aigateway.billing.ledger import Posted

T = TypeVar("T")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    from aigateway.accounts.service import AccountError
    from aigateway.billing.ledger import LedgerError

    return run_command(coro, AccountError, LedgerError)


def _ledger_command(kind: str, ctx: click.Context, customer_ref: str, amount: str, reference: str | None,
                    memo: str | None) -> None:
    from aigateway.accounts.service import find_customer
    from aigateway.billing.ledger import post_entry
    from aigateway.money import MoneyError, format_tmt, to_units

    try:
        units = to_units(amount)
    except MoneyError as exc:
        raise click.ClickException(f"--amount: {exc} (give TMT as a decimal number, e.g. 25 or 12.5)") from None
    if kind == "credit" and units <= 0:
        raise click.ClickException("a credit must be positive; use `admin adjust` to take money away")
    if units == 0:
        raise click.ClickException("the amount must not be zero")

    async def post(conn: AsyncConnection) -> tuple[int, Posted]:
        row = await find_customer(conn, customer_ref)
        ref = reference or f"{kind}:{os.urandom(8).hex()}"
        posted = await post_entry(conn, customer_id=row.id, amount=units, kind=kind, reference=f"admin:{ref}",
                                  memo=memo)
        if posted.applied:  # the operator console's audit trail, in the same transaction
            await audit(ctx, conn, f"customer.{kind}", f"customer:{row.id}", {"balance": format_tmt(row.balance)},
                        {"balance": format_tmt(posted.balance)}, memo)
        return row.id, posted

    customer_id, posted = _run(write_db(ctx, post))
    state = "applied" if posted.applied else "already applied earlier (same reference): nothing changed"
    click.echo(f"{kind} {format_tmt(units)} TMT to customer {customer_id}: {state}; "
               f"balance {format_tmt(posted.balance)} TMT")


def _ledger_options(amount_help: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Who and how much: the options every balance-changing command starts with."""

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        command = click.option("--amount", required=True, help=amount_help)(command)
        return click.option("--customer", "customer_ref", required=True, help="Customer id or email.")(command)

    return decorate


@click.command()
@_ledger_options("TMT, e.g. 25 or 12.5")
@click.option("--reference", default=None, help="Idempotency reference: the same reference is applied once.")
@click.option("--memo", default=None)
@click.pass_context
def credit(ctx: click.Context, customer_ref: str, amount: str, reference: str | None, memo: str | None) -> None:
    """Add money to a customer's balance."""
    _ledger_command("credit", ctx, customer_ref, amount, reference, memo)


@click.command()
@_ledger_options("Signed TMT, e.g. -3.5")
@click.option("--reason", required=True, help="Why; kept in the ledger.")
@click.option("--reference", default=None)
@click.pass_context
def adjust(ctx: click.Context, customer_ref: str, amount: str, reason: str, reference: str | None) -> None:
    """Correct a balance up or down (a ledger adjustment with a reason)."""
    _ledger_command("adjustment", ctx, customer_ref, amount, reference, reason)


@click.command()
@click.option("--customer", "customer_ref", required=True)
@click.pass_context
def balance(ctx: click.Context, customer_ref: str) -> None:
    """Show a customer's balance and the sum of its ledger (they must agree)."""
    from aigateway.accounts.service import find_customer
    from aigateway.billing.ledger import ledger_sum
    from aigateway.money import format_tmt

    async def read(conn: AsyncConnection) -> tuple[int, int]:
        row = await find_customer(conn, customer_ref)
        return row.balance, await ledger_sum(conn, row.id)

    units, total = _run(read_db(ctx, read))
    click.echo(f"balance {format_tmt(units)} TMT (ledger sum {format_tmt(total)} TMT)")


@click.command()
@click.pass_context
def reconcile(ctx: click.Context) -> None:
    """Check balances against the ledger, charges against usage, the spool and Redis holds."""
    from aigateway.billing.reconcile import reconcile as check
    from aigateway.billing.spool import default_spool_dir

    config = config_of(ctx)

    async def run() -> list[str]:
        async with open_database(config) as engine:
            return await check(engine, spool_dir=config.billing.spool_dir or default_spool_dir(config.database.url),
                               redis_url=config.redis.url, redis_prefix=config.redis.key_prefix)

    problems = _run(run())
    for problem in problems:
        click.echo(problem)
    if problems:
        sys.exit(1)
    click.echo("ok")


@click.group()
def usage() -> None:
    """Usage records: reports for the operator."""


@usage.command("capped")
@click.option("--since", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]),
              default=None, help="Only records from this UTC date/time on (YYYY-MM-DD[THH:MM:SS]).")
@click.option("--customer", "customer_ref", default=None, help="Customer id or email.")
@click.option("--limit", type=click.IntRange(1), default=1000, show_default=True)
@click.pass_context
def usage_capped(ctx: click.Context, since: datetime | None, customer_ref: str | None, limit: int) -> None:
    """Requests whose upstream reported more than the hold: charged the hold, counts as reported."""
    from aigateway.accounts.service import find_customer
    from aigateway.billing.capped import capped_usage
    from aigateway.money import format_tmt

    async def read(conn: AsyncConnection) -> list[CappedRecord]:
        customer_id = (await find_customer(conn, customer_ref)).id if customer_ref else None
        return await capped_usage(conn, since=as_utc(since) if since else None, customer_id=customer_id,
                                  limit=limit)

    records = _run(read_db(ctx, read))
    click.echo(f"{len(records)} capped usage record(s)")
    if not records:
        return
    click.echo(f"{'when (UTC)':<19}  {'request':<28} {'customer':<30} {'model':<24} {'in':>8} {'out':>9} "
               f"{'charged (TMT)':>14} {'reported (TMT)':>15}")
    for r in records:
        reported = format_tmt(r.reported_cost) if r.reported_cost is not None else "-"
        click.echo(f"{r.created_at:%Y-%m-%d %H:%M:%S}  {r.id:<28} {f'{r.customer_id} {r.email}':<30} "
                   f"{r.model:<24} {r.input_tokens:>8} {r.output_tokens:>9} {format_tmt(r.cost):>14} "
                   f"{reported:>15}")
