"""`aigateway admin operator ...`: create operators, re-issue enrolment, list them."""

from __future__ import annotations

import click


def register(main: click.Group, admin: click.Group) -> None:
    from aigateway.cli import _config, open_database, run_command
    from aigateway.console.operators import OperatorError
    from aigateway.console.settings import AdminSettings

    @admin.group()
    def operator() -> None:
        """Operator-console accounts (separate from customers; TOTP required)."""

    def _link(ctx, token: str) -> str:
        settings = AdminSettings.model_validate(_config(ctx).admin)
        return f"{settings.base_url()}/enrol/{token}"

    @operator.command("create")
    @click.option("--email", required=True)
    @click.option("--role", type=click.Choice(["admin", "viewer"]), required=True)
    @click.pass_context
    def create(ctx, email: str, role: str) -> None:
        """Create an operator; prints a one-time enrolment link (24 h) on the last line."""
        from aigateway.console import audit
        from aigateway.console.operators import create_operator

        async def run():
            async with open_database(_config(ctx)) as engine, engine.begin() as conn:
                op_id, token = await create_operator(conn, email, role)
                await audit.record(conn, actor="cli", action="operator.create", target=f"operator:{op_id}",
                                   after={"email": email.strip().lower(), "role": role})
            return op_id, token

        op_id, token = run_command(run(), OperatorError)
        click.echo(f"operator {op_id} ({role}) created. Open this link once, within 24 hours, to set a password "
                   "and the authenticator app:", err=True)
        click.echo(_link(ctx, token))

    @operator.command("reset")
    @click.option("--email", required=True)
    @click.pass_context
    def reset(ctx, email: str) -> None:
        """Lost password or phone: a new enrolment link (the old password, TOTP and recovery codes stop working)."""
        from aigateway.console import audit
        from aigateway.console.operators import reissue_enrolment

        async def run():
            async with open_database(_config(ctx)) as engine, engine.begin() as conn:
                token = await reissue_enrolment(conn, email)
                await audit.record(conn, actor="cli", action="operator.reset", target=email.strip().lower())
            return token

        token = run_command(run(), OperatorError)
        click.echo(_link(ctx, token))

    @operator.command("list")
    @click.pass_context
    def list_(ctx) -> None:
        from aigateway.console.operators import list_operators

        async def run():
            async with open_database(_config(ctx)) as engine, engine.connect() as conn:
                return await list_operators(conn)

        for r in run_command(run()):
            click.echo(f"{r.id:>4}  {r.email:<40} {r.role:<7} {r.status}")
