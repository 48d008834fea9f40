"""`aigateway admin key limits KEY_ID [...]`: show or change one key's limits (the operator's side)."""

from __future__ import annotations

from dataclasses import replace

import click

from aigateway.clikit import database, run_command
from aigateway.keylimits.values import PERIODS
from aigateway.timeutil import parse_utc

_NONE = ("none", "off", "never", "")


def _run(coro) -> None:
    run_command(coro, ValueError)


def _db(ctx):
    return database(ctx)


def _count(value: str | None, name: str):
    if value is None:
        return ...
    if value.lower() in _NONE:
        return None
    if not value.isdigit() or int(value) < 1:
        raise click.BadParameter("a whole number of at least 1, or 'none'", param_hint=name)
    return int(value)


def _expiry(value: str | None):
    if value is None:
        return ...
    if value.lower() in _NONE:
        return None
    try:
        return parse_utc(value)
    except ValueError:
        raise click.BadParameter("YYYY-MM-DD (the key stops at 00:00 UTC that day) or an ISO timestamp, "
                                 "or 'never'", param_hint="--expires") from None


def describe(limits, spent: int) -> list[str]:
    from aigateway.money import format_tmt

    cap = f"{format_tmt(limits.spend_cap)} TMT per {limits.spend_period}" if limits.spend_cap is not None else "none"
    return [f"spend cap     {cap}",
            f"spent         {format_tmt(spent)} TMT this {limits.spend_period}",
            f"requests/min  {limits.rpm or 'none'}",
            f"tokens/min    {limits.tpm or 'none'}",
            f"concurrency   {limits.concurrency or 'none'}",
            f"expires       {limits.expires_at:%Y-%m-%d %H:%M} UTC" if limits.expires_at else "expires       never"]


@click.command("limits")
@click.argument("key_id", type=int)
@click.option("--spend-cap", default=None, help="TMT the key may spend per period, or 'none'.")
@click.option("--period", type=click.Choice(PERIODS), default=None, help="Spend cap period (default month).")
@click.option("--rpm", default=None, help="Requests per minute, or 'none'.")
@click.option("--tpm", default=None, help="Tokens (in + out) per minute, or 'none'.")
@click.option("--concurrency", default=None, help="Requests in flight at once, or 'none'.")
@click.option("--expires", default=None, help="YYYY-MM-DD or ISO timestamp (UTC), or 'never'.")
@click.option("--models", default=None, help="Comma-separated models the key may use, or 'all'.")
@click.pass_context
def limits_cmd(ctx, key_id, spend_cap, period, rpm, tpm, concurrency, expires, models) -> None:
    """Show a key's limits, or change the ones given (the rest stay). Running gateways apply
    a change within about a second; a request over a limit gets 429, an expired key 401."""
    import orjson
    from sqlalchemy import select

    from aigateway.accounts.tables import api_keys
    from aigateway.keylimits.service import get_limits, set_allowed_models, set_limits, spent_this_period
    from aigateway.money import to_units

    changes = {name: value for name, value in (
        ("rpm", _count(rpm, "--rpm")), ("tpm", _count(tpm, "--tpm")),
        ("concurrency", _count(concurrency, "--concurrency")), ("expires_at", _expiry(expires)),
        ("spend_cap", ... if spend_cap is None else None if spend_cap.lower() in _NONE else to_units(spend_cap)),
        ("spend_period", period or ...)) if value is not ...}

    async def run():
        async with _db(ctx) as engine, engine.begin() as conn:
            row = (await conn.execute(select(api_keys.c.id, api_keys.c.allowed_models)
                                      .where(api_keys.c.id == key_id))).first()
            if row is None:
                raise ValueError(f"no key {key_id}")
            limits = await get_limits(conn, key_id)
            if changes:
                limits = replace(limits, **changes)
                await set_limits(conn, limits)
            allowed = row.allowed_models
            if models is not None:
                names = [m.strip() for m in models.split(",") if m.strip()]
                chosen = None if models.strip().lower() == "all" else names
                await set_allowed_models(conn, key_id, chosen)
                allowed = None if chosen is None else orjson.dumps(chosen).decode()
            spent = await spent_this_period(conn, limits)
        click.echo(f"key {key_id}")
        for line in describe(limits, spent):
            click.echo(line)
        click.echo(f"models        {', '.join(orjson.loads(allowed)) if allowed else 'all'}")

    _run(run())
