"""`aigateway admin portal ...`: the operator's portal tools.

There is no e-mail in this gateway, so a forgotten password is reset by the
operator; the same command gives a customer created on the command line
(who has no password yet) access to the portal.
"""

from __future__ import annotations

import asyncio

import click

from aigateway.clikit import database


@click.group()
def portal() -> None:
    """Portal access: set a customer's password, end their sessions."""


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
