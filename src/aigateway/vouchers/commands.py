"""CLI: `aigateway admin vouchers create | list | void | report | locks | audit`."""

from __future__ import annotations

import csv
import io
import os
import sys
from datetime import UTC, datetime

import click

from aigateway.clikit import database, operator, run_command
from aigateway.timeutil import as_utc, parse_utc


def _actor() -> str:
    return operator(":")


def _expiry(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = parse_utc(value)
    except ValueError as exc:
        raise click.BadParameter("use YYYY-MM-DD or an ISO timestamp (UTC unless given)") from exc
    if len(value.strip()) == 10:  # a date: valid through the whole day (UTC)
        moment = moment.replace(hour=23, minute=59, second=59)
    if moment <= datetime.now(UTC):
        raise click.BadParameter("the expiry is in the past")
    return moment


def _run(coro) -> None:
    from aigateway.accounts.service import AccountError
    from aigateway.vouchers.service import VoucherError

    run_command(coro, VoucherError, AccountError)


def _when(value) -> str:
    if value is None:
        return "-"
    return as_utc(value).strftime("%Y-%m-%d %H:%M")


@click.group("vouchers")
def vouchers_group() -> None:
    """Prepaid voucher codes sold for cash: create batches, list, void, report, locks."""


@vouchers_group.command("create")
@click.option("--amount", required=True, help="TMT per voucher, e.g. 50 or 12.5.")
@click.option("--count", type=int, required=True, help="How many vouchers.")
@click.option("--label", required=True, help="Batch label, shown to the customer in the history.")
@click.option("--expires", default=None, help="Last day (YYYY-MM-DD, UTC) or ISO timestamp; default never.")
@click.option("--out", "out", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the CSV here (created, never overwritten); default stdout.")
@click.pass_context
def create_cmd(ctx, amount, count, label, expires, out) -> None:
    """Create a batch and write its codes as CSV, ONCE: the database keeps only hashes."""
    from aigateway.money import format_tmt, to_units
    from aigateway.vouchers.service import create_batch

    units, expires_at = to_units(amount), _expiry(expires)
    # Open the file first: a batch whose codes could not be written would be lost money.
    try:
        sink = open(out, "x", newline="", encoding="utf-8") if out else None  # noqa: SIM115
    except OSError as exc:  # exists: never overwrite an earlier batch's only copy
        raise click.ClickException(f"cannot create {out}: {exc.strerror}") from exc

    async def run():
        async with database(ctx) as engine, engine.begin() as conn:
            batch_id, issued = await create_batch(conn, amount=units, count=count, label=label,
                                                  expires_at=expires_at, actor=_actor())
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow(["batch", "label", "code", "amount_tmt", "expires"])
            for code in issued:
                writer.writerow([batch_id, label, code, format_tmt(units, 2), _when(expires_at)])
            # written before the commit: if writing fails, the batch is rolled back
            (sink or sys.stdout).write(buffer.getvalue())
            (sink or sys.stdout).flush()
        click.echo(f"batch {batch_id}: {count} voucher(s) of {format_tmt(units, 2)} TMT, label {label!r}"
                   + (f", written to {out}" if out else ""), err=True)

    try:
        _run(run())
    except BaseException:
        if sink is not None:  # nothing was committed: leave no half-written file behind
            sink.close()
            os.unlink(out)
        raise
    if sink is not None:
        sink.close()


@vouchers_group.command("list")
@click.pass_context
def list_cmd(ctx) -> None:
    """Batches with how many were redeemed, and any redemption locks now in force."""
    from aigateway.money import format_tmt
    from aigateway.throttle.service import locks
    from aigateway.vouchers.service import POLICIES, batch_reports

    async def run():
        async with database(ctx) as engine:
            async with engine.connect() as conn:
                reports = await batch_reports(conn)
            held = await locks(engine, POLICIES)
        click.echo(f"{'batch':>5}  {'label':<24} {'TMT':>10} {'count':>6} {'redeemed':>8} {'open':>6}  "
                   f"{'created':<16}  {'expires':<16}  state")
        for r in reports:
            state = f"voided {_when(r.voided_at)}" if r.voided_at else "active"
            click.echo(f"{r.id:>5}  {r.label[:24]:<24} {format_tmt(r.amount, 2):>10} {r.count:>6} "
                       f"{r.redeemed:>8} {r.outstanding:>6}  {_when(r.created_at):<16}  "
                       f"{_when(r.expires_at):<16}  {state}")
        _print_locks(held)

    _run(run())


def _print_locks(held) -> None:
    if not held:
        click.echo("no redemption locks")
        return
    click.echo(f"{len(held)} redemption lock(s):")
    for lock in held:
        until = datetime.fromtimestamp(lock.until_ms / 1000, UTC)
        click.echo(f"  {lock.label or '?':<32} {lock.hits:>4} tries  locked until {until:%Y-%m-%d %H:%M:%S} UTC")


@vouchers_group.command("locks")
@click.pass_context
def locks_cmd(ctx) -> None:
    """Customers and addresses locked out of redemption after repeated failures."""
    from aigateway.throttle.service import locks
    from aigateway.vouchers.service import POLICIES

    async def run():
        async with database(ctx) as engine:
            _print_locks(await locks(engine, POLICIES))

    _run(run())


@vouchers_group.command("void")
@click.option("--batch", "batch_id", type=int, default=None, help="Void every unredeemed voucher of a batch.")
@click.argument("code", required=False)
@click.pass_context
def void_cmd(ctx, batch_id, code) -> None:
    """Void a batch (--batch N) or one voucher (CODE). Redeemed vouchers stay redeemed."""
    from aigateway.vouchers.service import void_batch, void_code

    if (batch_id is None) == (code is None):
        raise click.UsageError("give either --batch N or one CODE")

    async def run():
        async with database(ctx) as engine, engine.begin() as conn:
            if batch_id is not None:
                n = await void_batch(conn, batch_id, _actor())
                click.echo(f"batch {batch_id} voided ({n} unredeemed voucher(s))")
            else:
                batch = await void_code(conn, code, _actor())
                click.echo(f"voucher voided (batch {batch})")

    _run(run())


@vouchers_group.command("report")
@click.pass_context
def report_cmd(ctx) -> None:
    """Face value, redeemed sum (from the ledger) and outstanding liability, per batch and in total."""
    from aigateway.money import format_tmt
    from aigateway.vouchers.service import audit, batch_reports, ledger_total

    async def run():
        async with database(ctx) as engine, engine.begin() as conn:
            reports = await batch_reports(conn)
            ledger = await ledger_total(conn)
            await audit(conn, _actor(), "report")
        click.echo(f"{'batch':>5}  {'label':<24} {'face value':>14} {'redeemed':>14} {'liability':>14}  state")
        for r in reports:
            state = "voided" if r.voided_at else ("expired" if r.expires_at and r.outstanding == 0
                                                  and r.redeemed < r.count else "active")
            click.echo(f"{r.id:>5}  {r.label[:24]:<24} {format_tmt(r.face_value, 2):>14} "
                       f"{format_tmt(r.redeemed_sum, 2):>14} {format_tmt(r.liability, 2):>14}  {state}")
        columns = zip(*[(r.face_value, r.redeemed_sum, r.liability) for r in reports], strict=True)
        total = [sum(x) for x in columns] or [0, 0, 0]
        click.echo(f"{'':>5}  {'TOTAL':<24} {format_tmt(total[0], 2):>14} {format_tmt(total[1], 2):>14} "
                   f"{format_tmt(total[2], 2):>14}")
        click.echo(f"ledger: voucher credits {format_tmt(ledger, 2)} TMT "
                   f"({'equals' if ledger == total[1] else 'DIFFERS FROM'} the redeemed sum)")

    _run(run())


@vouchers_group.command("audit")
@click.option("--limit", type=int, default=50)
@click.pass_context
def audit_cmd(ctx, limit) -> None:
    """The latest recorded actions (operator commands and redemption locks)."""
    from sqlalchemy import select

    from aigateway.vouchers.tables import voucher_audit as a

    async def run():
        async with database(ctx) as engine, engine.connect() as conn:
            rows = (await conn.execute(select(a).order_by(a.c.id.desc()).limit(limit))).all()
        for r in rows:
            click.echo(f"{_when(r.at)}  {r.actor:<24} {r.action:<10} "
                       f"{'batch ' + str(r.batch_id) if r.batch_id else '':<10} {r.detail or ''}")

    _run(run())
