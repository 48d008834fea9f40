"""`aigateway admin portal ...`: the operator's portal tools.

Without [smtp] a forgotten password is reset by the operator; the same command gives a
customer created on the command line (who has no password yet) access to the portal.
A customer who lost both their authenticator and their recovery codes gets two-factor
turned off by `reset-2fa`, which needs a reason: it is written to the audit log in the
same transaction as the change, and every session of the customer ends with it.
"""

from __future__ import annotations

import asyncio

import click

from aigateway.clikit import audit, database


@click.group()
def portal() -> None:
    """Portal access: set a customer's password, end their sessions, reset two-factor."""


@portal.command("set-password")
@click.option("--customer", "customer_ref", required=True, help="Customer id or email.")
@click.password_option("--password", prompt="New password", help="Prompted (hidden) when not given.")
@click.pass_context
def set_password(ctx, customer_ref: str, password: str) -> None:
    """Set (or reset) a customer's portal password and log out their sessions."""
    from sqlalchemy import delete, update

    from aigateway.accounts.service import AccountError, find_customer
    from aigateway.accounts.tables import customers
    from aigateway.portal.passwords import WeakPassword, check_strength, hash_password
    from aigateway.portal.tables import portal_sessions

    async def run():
        async with database(ctx) as engine:
            async with engine.connect() as conn:
                row = await find_customer(conn, customer_ref)
            check_strength(password, row.email)
            new_hash = await hash_password(password)
            async with engine.begin() as conn:
                await conn.execute(update(customers).where(customers.c.id == row.id)
                                   .values(password_hash=new_hash))
                ended = (await conn.execute(delete(portal_sessions)
                                            .where(portal_sessions.c.customer_id == row.id))).rowcount
        click.echo(f"password set for customer {row.id} ({row.email}); {ended} session(s) ended")

    try:
        asyncio.run(run())
    except (AccountError, WeakPassword) as exc:
        raise click.ClickException(str(exc)) from exc


@portal.command("logout")
@click.option("--customer", "customer_ref", required=True, help="Customer id or email.")
@click.pass_context
def logout(ctx, customer_ref: str) -> None:
    """End every portal session of a customer (e.g. after a leaked password)."""
    from sqlalchemy import delete

    from aigateway.accounts.service import AccountError, find_customer
    from aigateway.portal.tables import portal_sessions

    async def run():
        async with database(ctx) as engine, engine.begin() as conn:
            row = await find_customer(conn, customer_ref)
            ended = (await conn.execute(delete(portal_sessions)
                                        .where(portal_sessions.c.customer_id == row.id))).rowcount
        click.echo(f"{ended} session(s) of customer {row.id} ended")

    try:
        asyncio.run(run())
    except AccountError as exc:
        raise click.ClickException(str(exc)) from exc


class NotEnabled(Exception):
    pass


@portal.command("reset-2fa")
@click.option("--customer", "customer_ref", required=True, help="Customer id or email.")
@click.option("--reason", required=True,
              help="Why, e.g. how the customer proved who they are (kept in the audit log).")
@click.pass_context
def reset_2fa(ctx: click.Context, customer_ref: str, reason: str) -> None:
    """Turn off a customer's two-factor authentication (lost phone and recovery codes) and end
    their sessions; they log in with their password alone and may set it up again."""
    from sqlalchemy import delete

    from aigateway.accounts.service import AccountError, find_customer
    from aigateway.portal import twofactor
    from aigateway.portal.tables import portal_sessions

    reason = reason.strip()
    if not reason:
        raise click.BadParameter("say why (it is kept in the audit log)", param_hint="--reason")

    async def run() -> None:
        async with database(ctx) as engine, engine.begin() as conn:
            row = await find_customer(conn, customer_ref)
            state = await twofactor.state(conn, row.id)
            if not state.enabled:
                raise NotEnabled(f"two-factor authentication is not on for customer {row.id} ({row.email}); "
                                 "nothing changed")
            await twofactor.disable(conn, row.id)
            ended = (await conn.execute(delete(portal_sessions)
                                        .where(portal_sessions.c.customer_id == row.id))).rowcount
            await audit(ctx, conn, "customer.reset_2fa", f"customer:{row.id}",
                        {"two_factor": "on", "recovery_codes_left": state.recovery_left, "sessions": ended},
                        {"two_factor": "off", "sessions": 0}, reason)
        click.echo(f"two-factor authentication turned off for customer {row.id} ({row.email}); "
                   f"{ended} session(s) ended; recorded in the audit log")

    try:
        asyncio.run(run())
    except (AccountError, NotEnabled) as exc:
        raise click.ClickException(str(exc)) from exc
