"""CLI: `aigateway admin deposits ...` and `aigateway deposits-watcher`."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import click

from aigateway.clikit import config_of, open_database, operator, run_command, setup_logging
from aigateway.timeutil import now_ms, parse_utc, to_ms


def _deposits_config(ctx: click.Context):
    from aigateway.deposits.config import deposits_config

    config = config_of(ctx)
    try:
        deposits = deposits_config(config.deposits)
    except ValueError as exc:  # DepositsConfigError: one line, secrets never included
        raise click.ClickException(f"config: {str(exc).splitlines()[0] if str(exc) else 'invalid'}") from None
    if deposits is None:
        raise click.ClickException("deposits are not configured: add a [deposits] section (see README)")
    return config, deposits


def _run(coro) -> None:
    from aigateway.accounts.service import AccountError
    from aigateway.billing.ledger import LedgerError
    from aigateway.deposits.client import ApiUnavailable
    from aigateway.deposits.rates import RateError

    run_command(coro, RateError, LookupError, ApiUnavailable, AccountError, LedgerError)


def _parse_since(value: str) -> int:
    """Epoch milliseconds from 'YYYY-MM-DD', an ISO timestamp (UTC unless given) or epoch ms."""
    value = value.strip()
    if value.isdigit():
        return int(value)
    try:
        return to_ms(parse_utc(value))
    except ValueError as exc:
        raise click.BadParameter("use YYYY-MM-DD, an ISO timestamp, or epoch milliseconds") from exc


@click.group("deposits")
def deposits_group() -> None:
    """USDT deposits: addresses, deposits seen and credited, rescans, manual credits."""


@deposits_group.command("address")
@click.option("--customer", "customer_ref", required=True, help="Customer id or email.")
@click.pass_context
def address_cmd(ctx, customer_ref) -> None:
    """Show (allocating on first use) the customer's permanent deposit address."""
    from aigateway.accounts.service import find_customer
    from aigateway.deposits.service import DepositsService

    config, dcfg = _deposits_config(ctx)

    async def run():
        async with open_database(config) as engine:
            async with engine.connect() as conn:
                row = await find_customer(conn, customer_ref)
            address = await DepositsService(dcfg, engine).address_for(row.id)
        click.echo(f"customer {row.id} ({row.email}): {address}  [{dcfg.network}, USDT {dcfg.usdt_contract}]")

    _run(run())


@deposits_group.command("list")
@click.option("--customer", "customer_ref", default=None, help="Only this customer (id or email).")
@click.option("--status", default=None,
              type=click.Choice(["pending", "needs_review", "credited", "ignored", "rejected", "expired"]),
              help="Seen transactions in this state, with their notes (default: verified deposits).")
@click.option("--limit", type=int, default=50, show_default=True)
@click.pass_context
def list_cmd(ctx, customer_ref, status, limit) -> None:
    """Deposits verified on chain, or (--status) transactions seen in one state and why."""
    from aigateway.accounts.service import find_customer
    from aigateway.deposits.rates import token_amount
    from aigateway.deposits.reports import credited_deposits, transactions_in_state
    from aigateway.money import format_tmt

    config, dcfg = _deposits_config(ctx)

    async def run():
        async with open_database(config) as engine, engine.connect() as conn:
            customer_id = (await find_customer(conn, customer_ref)).id if customer_ref else None
            if status:
                rows = await transactions_in_state(conn, status, customer_id=customer_id, limit=limit)
            else:
                rows = await credited_deposits(conn, customer_id=customer_id, limit=limit)
        if status:
            for r in rows:
                amount = token_amount(int(r.value), dcfg.usdt_decimals) if r.value.isdigit() else r.value
                click.echo(f"{r.status:<12} customer {r.customer_id:<6} {amount:>14} USDT  {r.tx_id}  "
                           f"failures={r.failures}" + (f"  ({r.note})" if r.note else ""))
            if not rows:
                click.echo(f"no transactions are {status}")
            return
        click.echo(f"{'id':>5} {'customer':>8} {'USDT':>14} {'rate':>10} {'TMT':>16}  {'status':<13} "
                   f"{'when':<16} tx:log")
        for d in rows:
            click.echo(f"{d.id:>5} {d.customer_id:>8} {token_amount(d.amount_usdt, d.decimals):>14} "
                       f"{d.rate:>10} {format_tmt(d.amount_tmt):>16}  {d.status:<13} "
                       f"{d.created_at:%Y-%m-%d %H:%M} {d.tx_id}:{d.log_index}")

    _run(run())


def _review(ctx, tx_id: str, action: str, reason: str | None) -> None:
    from aigateway.deposits.service import DepositsService

    config, dcfg = _deposits_config(ctx)
    actor = operator(" ")

    async def run():
        async with open_database(config) as engine:
            n = await DepositsService(dcfg, engine).review(tx_id, action, actor, reason)
        done = {"retry": "will be checked again on the next pass",
                "approve": "approved: credited on the next pass",
                "reject": "rejected"}[action]
        click.echo(f"{tx_id}: {done} ({n} row(s); recorded in the deposit's history)")

    _run(run())


@deposits_group.group("rate")
def rate_group() -> None:
    """An explicit deposit rate, instead of the USD rate of `admin fx set` (recorded)."""


@rate_group.command("set")
@click.argument("rate")
@click.option("--note", required=True, help="Why deposits credit at another rate than prices use.")
@click.pass_context
def rate_set_cmd(ctx, rate, note) -> None:
    """Credit deposits at RATE TMT per USDT (before the spread) until `rate clear`."""
    _rate_override(ctx, rate, note)


@rate_group.command("clear")
@click.option("--note", default="back to the USD rate", show_default=True)
@click.pass_context
def rate_clear_cmd(ctx, note) -> None:
    """Credit deposits at the USD rate of `admin fx set` again."""
    _rate_override(ctx, None, note)


def _rate_override(ctx, rate, note) -> None:
    from aigateway.deposits.rates import rate_text
    from aigateway.deposits.service import DepositsService

    config, dcfg = _deposits_config(ctx)

    async def run():
        async with open_database(config) as engine:
            service = DepositsService(dcfg, engine)
            await service.set_rate_override(rate, note)
            now = await service.rate_now()
        click.echo(f"deposits now credit at {rate_text(now.effective)} TMT per USDT ({now.source} "
                   f"{rate_text(now.base)}, spread {dcfg.spread}); recorded")

    _run(run())


@deposits_group.command("retry")
@click.argument("tx_id")
@click.pass_context
def retry_cmd(ctx, tx_id) -> None:
    """Check a parked, rejected or expired transaction again (failures reset)."""
    _review(ctx, tx_id, "retry", None)


@deposits_group.command("approve")
@click.argument("tx_id")
@click.pass_context
def approve_cmd(ctx, tx_id) -> None:
    """Allow a deposit above the `review_above` ceiling to be credited (amounts still range-checked)."""
    _review(ctx, tx_id, "approve", None)


@deposits_group.command("reject")
@click.argument("tx_id")
@click.option("--reason", required=True, help="Why it is not credited (shown to the customer).")
@click.pass_context
def reject_cmd(ctx, tx_id, reason) -> None:
    """Never credit this transaction automatically."""
    _review(ctx, tx_id, "reject", reason)


@deposits_group.command("pending")
@click.option("--all", "show_all", is_flag=True, help="Also resolved ones (rejected, expired, ...).")
@click.option("--limit", type=int, default=50, show_default=True)
@click.pass_context
def pending_cmd(ctx, show_all, limit) -> None:
    """Transfers seen on chain and not yet credited (waiting for solidity), with reasons."""
    from aigateway.deposits.rates import token_amount
    from aigateway.deposits.reports import seen_transfers

    config, dcfg = _deposits_config(ctx)

    async def run():
        async with open_database(config) as engine, engine.connect() as conn:
            rows = await seen_transfers(conn, pending_only=not show_all, limit=limit)
        for r in rows:
            amount = token_amount(int(r.value), dcfg.usdt_decimals) if r.value.isdigit() else r.value
            click.echo(f"{r.status:<9} customer {r.customer_id:<6} {amount:>14} USDT  {r.address}  {r.tx_id}  "
                       f"checks={r.checks}" + (f"  ({r.note})" if r.note else ""))
        if not rows:
            click.echo("nothing pending" if not show_all else "no transfers seen yet")

    _run(run())


@deposits_group.command("rescan")
@click.option("--address", required=True, help="One of our deposit addresses.")
@click.option("--since", required=True, help="YYYY-MM-DD, ISO timestamp (UTC) or epoch ms.")
@click.option("--now", "poll_now", is_flag=True, help="Poll it here and now instead of on the watcher's next pass.")
@click.pass_context
def rescan_cmd(ctx, address, since, poll_now) -> None:
    """Read an address's transfers again from a moment on (missed or expired deposits).
    Re-reading is safe: a deposit is never credited twice."""
    from aigateway.deposits.service import DepositsService
    from aigateway.deposits.watcher import Watcher

    config, dcfg = _deposits_config(ctx)
    since_ms = _parse_since(since)

    async def run():
        async with open_database(config) as engine:
            revived = await DepositsService(dcfg, engine).rescan(address, since_ms)
            click.echo(f"{address}: transfers since {since} will be read again"
                       + (f"; {revived} expired or rejected transaction(s) checked again" if revived else ""))
            if poll_now:
                watcher = Watcher(engine, dcfg, use_lease=False)
                try:
                    stats = await watcher.poll_address(address)
                finally:
                    await watcher.client.close()
                click.echo(f"polled: {stats.seen} transfer(s) listed, {stats.checked} checked, "
                           f"{stats.credited} credited")

    _run(run())


@deposits_group.command("credit")
@click.option("--customer", "customer_ref", required=True, help="Customer id or email.")
@click.option("--amount", default=None, help="TMT to credit, e.g. 35 or 12.5")
@click.option("--usdt", default=None, help="Or: USDT received, converted at the configured rate.")
@click.option("--reason", required=True, help="Why (e.g. the tx id of a deposit made to a wrong address).")
@click.option("--reference", default=None, help="Idempotency reference: the same one is applied once.")
@click.pass_context
def credit_cmd(ctx, customer_ref, amount, usdt, reason, reference) -> None:
    """Credit a deposit by hand (a ledger adjustment with a reason)."""
    from aigateway.accounts.service import find_customer
    from aigateway.billing.ledger import post_entry
    from aigateway.deposits.rates import rate_text, tmt_units, token_amount, token_base_units
    from aigateway.money import format_tmt, to_units

    config, dcfg = _deposits_config(ctx)
    if (amount is None) == (usdt is None):
        raise click.UsageError("give exactly one of --amount (TMT) or --usdt")
    async def run():
        async with open_database(config) as engine, engine.begin() as conn:
            if usdt is not None:
                from aigateway.deposits.rates import rate_in_force

                rate = (await rate_in_force(conn, dcfg.rate, dcfg.spread_decimal)).effective
                value = token_base_units(usdt, dcfg.usdt_decimals, "--usdt")
                units = tmt_units(value, dcfg.usdt_decimals, rate)
                memo = (f"USDT deposit (manual) {token_amount(value, dcfg.usdt_decimals)} USDT @ "
                        f"{rate_text(rate)}: {reason}")
            else:
                units = to_units(amount)
                memo = f"deposit (manual): {reason}"
            if units <= 0:
                raise click.ClickException("the credit must be positive")
            row = await find_customer(conn, customer_ref)
            ref = f"deposit-manual:{reference or os.urandom(8).hex()}"
            posted = await post_entry(conn, customer_id=row.id, amount=units, kind="adjustment",
                                      reference=ref, memo=memo)
        state = "applied" if posted.applied else "already applied earlier (same reference): nothing changed"
        click.echo(f"credited {format_tmt(units)} TMT to customer {row.id}: {state}; "
                   f"balance {format_tmt(posted.balance)} TMT")

    _run(run())


@deposits_group.command("status")
@click.pass_context
def status_cmd(ctx) -> None:
    """Configuration in force, the active watcher, and counts."""
    from aigateway.deposits.rates import rate_text
    from aigateway.deposits.reports import counts

    config, dcfg = _deposits_config(ctx)

    async def run():
        from aigateway.deposits.rates import RateError, rate_in_force

        async with open_database(config) as engine, engine.connect() as conn:
            try:
                in_force = await rate_in_force(conn, dcfg.rate, dcfg.spread_decimal)
                rate_line = (f"rate {rate_text(in_force.effective)} TMT per USDT ({in_force.source} "
                             f"{rate_text(in_force.base)}, spread {dcfg.spread})")
            except RateError as exc:
                rate_line = f"rate: none ({exc})"
            n = await counts(conn)
        click.echo(f"network {dcfg.network}, API {dcfg.base_url}, USDT {dcfg.usdt_contract}")
        click.echo(f"{rate_line}, minimum deposit {dcfg.min_deposit} USDT")
        if n.lease_expires_ms is not None and n.lease_expires_ms > now_ms():
            click.echo(f"active watcher: {n.lease_holder} (lease {(n.lease_expires_ms - now_ms()) / 1000:.0f}s left)")
        else:
            click.echo("active watcher: none")
        click.echo(f"{n.addresses} address(es), {n.pending} pending transaction(s), {n.credited} credited deposit(s)"
                   + (f", {n.needs_review} needing review (`admin deposits list --status needs_review`)"
                      if n.needs_review else ""))

    _run(run())


@click.command("deposits-watcher")
@click.option("--once", is_flag=True, help="One pass, then exit (ignores the lease holder's schedule).")
@click.option("--log-level", default="INFO")
@click.pass_context
def watcher_cmd(ctx, once, log_level) -> None:
    """Run the deposit watcher as its own process. Any number may run: one is active at a time."""
    from aigateway.deposits.watcher import Watcher

    setup_logging(log_level)
    config, dcfg = _deposits_config(ctx)

    async def run():
        async with open_database(config) as engine:
            watcher = Watcher(engine, dcfg)
            if once:
                try:
                    ran = await watcher.tick()
                finally:
                    await watcher.close()
                click.echo(f"pass {'done' if ran else 'skipped (another watcher holds the lease)'}: "
                           f"{watcher.last_pass}")
                return
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.add_signal_handler(sig, stop.set)
                except (NotImplementedError, RuntimeError):  # pragma: no cover - Windows
                    pass
            await watcher.run(stop)
            logging.getLogger(__name__).info("deposits watcher stopped")

    _run(run())
