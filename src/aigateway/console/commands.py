"""`aigateway admin operator ...`: create operators, re-issue enrolment, list them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from aigateway.clikit import config_of, read_db, run_command, write_db

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection


@click.group()
def operator() -> None:
    """Operator-console accounts (separate from customers; TOTP required)."""


def _link(ctx: click.Context, token: str) -> str:
    from aigateway.console.settings import AdminSettings

    settings = AdminSettings.model_validate(config_of(ctx).admin)
    return f"{settings.base_url()}/enrol/{token}"


@operator.command("create")
@click.option("--email", required=True)
@click.option("--role", type=click.Choice(["admin", "viewer"]), required=True)
@click.pass_context
def create(ctx: click.Context, email: str, role: str) -> None:
    """Create an operator; prints a one-time enrolment link (24 h) on the last line."""
    from aigateway.console import audit
    from aigateway.console.operators import OperatorError, create_operator

    async def create(conn: AsyncConnection) -> tuple[int, str]:
        op_id, token = await create_operator(conn, email, role)
        await audit.record(conn, actor="cli", action="operator.create", target=f"operator:{op_id}",
                           after={"email": email.strip().lower(), "role": role})
        return op_id, token

    op_id, token = run_command(write_db(ctx, create), OperatorError)
    click.echo(f"operator {op_id} ({role}) created. Open this link once, within 24 hours, to set a password "
               "and the authenticator app:", err=True)
    click.echo(_link(ctx, token))


@operator.command("reset")
@click.option("--email", required=True)
@click.pass_context
def reset(ctx: click.Context, email: str) -> None:
    """Lost password or phone: a new enrolment link (the old password, TOTP and recovery codes stop working)."""
    from aigateway.console import audit
    from aigateway.console.operators import OperatorError, reissue_enrolment

    async def reissue(conn: AsyncConnection) -> str:
        token = await reissue_enrolment(conn, email)
        await audit.record(conn, actor="cli", action="operator.reset", target=email.strip().lower())
        return token

    click.echo(_link(ctx, run_command(write_db(ctx, reissue), OperatorError)))


@operator.command("list")
@click.pass_context
def list_(ctx: click.Context) -> None:
    """List operators."""
    from aigateway.console.operators import list_operators

    click.echo(f"{'id':>4}  {'email':<40} {'role':<7} status")
    for r in run_command(read_db(ctx, list_operators)):
        click.echo(f"{r.id:>4}  {r.email:<40} {r.role:<7} {r.status}")
