"""`aigateway admin usage capped`: the operator's list of requests charged their hold (see billing.capped)."""

from __future__ import annotations

from datetime import timezone

import click


def register(main: click.Group, admin: click.Group) -> None:
    from aigateway.cli import _db, run_command

    @admin.group()
    def usage() -> None:
        """Usage records: reports for the operator."""

    @usage.command("capped")
    @click.option("--since", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]),
                  default=None, help="Only records from this UTC date/time on (YYYY-MM-DD[THH:MM:SS]).")
    @click.option("--customer", "customer_ref", default=None, help="Customer id or email.")
    @click.option("--limit", type=click.IntRange(1), default=1000, show_default=True)
    @click.pass_context
    def usage_capped(ctx, since, customer_ref, limit) -> None:
        """Requests whose upstream reported more than the hold: charged the hold, counts as reported."""
        from aigateway.accounts.service import find_customer
        from aigateway.billing.capped import capped_usage
        from aigateway.money import format_tmt

        async def run():
            async with _db(ctx) as engine, engine.connect() as conn:
                customer_id = (await find_customer(conn, customer_ref)).id if customer_ref else None
                return await capped_usage(conn, since=since.replace(tzinfo=timezone.utc) if since else None,
                                          customer_id=customer_id, limit=limit)

        records = run_command(run())
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
