"""`aigateway admin customer ...` and `aigateway admin key ...`: customers and their API keys."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import click

from aigateway.clikit import audit, read_db, run_command, write_db

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from aigateway.accounts.keys import NewKey

T = TypeVar("T")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    from aigateway.accounts.service import AccountError

    return run_command(coro, AccountError)


@click.group()
def customer() -> None:
    """Create and list customers."""


@customer.command("create")
@click.option("--email", required=True)
@click.pass_context
def customer_create(ctx: click.Context, email: str) -> None:
    """Create a customer (prints its id)."""
    from aigateway.accounts.service import create_customer

    click.echo(_run(write_db(ctx, lambda conn: create_customer(conn, email))))


@customer.command("list")
@click.pass_context
def customer_list(ctx: click.Context) -> None:
    """List customers with their balances."""
    from aigateway.accounts.service import list_customers
    from aigateway.money import format_tmt

    rows = _run(read_db(ctx, list_customers))
    click.echo(f"{'id':>6}  {'email':<40} {'balance (TMT)':>18}  status")
    for row in rows:
        click.echo(f"{row.id:>6}  {row.email:<40} {format_tmt(row.balance):>18}  {row.status}")


@click.group()
def key() -> None:
    """Create, list and revoke API keys."""


@key.command("create")
@click.option("--customer", "customer_ref", required=True)
@click.option("--name", default="default")
@click.option("--models", default=None, help="Comma-separated models this key may use (default: all).")
@click.pass_context
def key_create(ctx: click.Context, customer_ref: str, name: str, models: str | None) -> None:
    """Create a key. The key is printed once, on the last line; only its hash is stored."""
    from aigateway.accounts.service import create_key, find_customer

    allowed = [m.strip() for m in models.split(",") if m.strip()] if models else None

    async def create(conn: AsyncConnection) -> tuple[int, int, NewKey]:
        customer_id = (await find_customer(conn, customer_ref)).id
        return customer_id, *await create_key(conn, customer_id, name, allowed)

    customer_id, key_id, new = _run(write_db(ctx, create))
    click.echo(f"key {key_id} ({new.masked}) for customer {customer_id}. Copy it now, it is not shown again:",
               err=True)
    click.echo(new.secret)


@key.command("list")
@click.option("--customer", "customer_ref", required=True)
@click.pass_context
def key_list(ctx: click.Context, customer_ref: str) -> None:
    """A customer's keys: id, masked key, name, state (secrets are never stored)."""
    from aigateway.accounts.keys import mask
    from aigateway.accounts.service import find_customer, list_keys

    async def read(conn: AsyncConnection) -> tuple[int, list[Any]]:
        customer_id = (await find_customer(conn, customer_ref)).id
        return customer_id, list(await list_keys(conn, customer_id))

    customer_id, keys = _run(read_db(ctx, read))
    click.echo(f"{'id':>6}  {'key':<16} {'name':<24} state")
    for k in keys:
        state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M} UTC" if k.revoked_at else "active"
        click.echo(f"{k.id:>6}  {mask(k.prefix, k.last4):<16} {k.name:<24} {state}")
    if not keys:
        click.echo(f"customer {customer_id} has no keys (`aigateway admin key create --customer {customer_id}`)")


@key.command("revoke")
@click.argument("key_id", type=int)
@click.pass_context
def key_revoke(ctx: click.Context, key_id: int) -> None:
    """Revoke a key; running gateways refuse it within about a second."""
    from aigateway.accounts.service import revoke_key

    async def revoke(conn: AsyncConnection) -> None:
        await revoke_key(conn, key_id)
        await audit(ctx, conn, "key.revoke", f"key:{key_id}", None, {"revoked": True}, None)

    _run(write_db(ctx, revoke))
    click.echo(f"key {key_id} revoked")
