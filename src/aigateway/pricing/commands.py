"""`aigateway admin price ...` and `aigateway admin fx ...`: the operator's price tools.

Changes are written to the database; running gateways pick them up within
their 5 s catalog refresh, no restart needed.
"""

from __future__ import annotations

import json

import click

from aigateway.clikit import config_of, database, read_db, run_command, run_sync, write_db
from aigateway.money import format_tmt, to_units


def _run(coro):
    from aigateway.pricing.service import PricingError
    from aigateway.pricing.settings import PricingConfigError

    return run_command(coro, PricingError, PricingConfigError, ValueError)


def _when(value) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}" if value is not None else "-"


def settings_of(ctx):
    from aigateway.pricing.settings import load_settings

    config = config_of(ctx)
    return config, load_settings(config)


@click.group()
def price() -> None:
    """Model prices: set by hand, mark free, list, history, held changes, fetch now."""


@price.command("set")
@click.argument("model")
@click.option("--input", "input_price", required=True, help="TMT per 1M input tokens, e.g. 0.35")
@click.option("--output", "output_price", default=None, help="TMT per 1M output tokens (chat models)")
@click.option("--cached-input", default=None, help="TMT per 1M cached input tokens (cache reads)")
@click.option("--cache-write", default=None, help="TMT per 1M tokens written to the prompt cache")
@click.option("--cache-write-long", default=None, help="TMT per 1M tokens written to the long-lived cache")
@click.option("--reasoning", default=None, help="TMT per 1M reasoning tokens")
@click.option("--request", "request_fee", default=None, help="TMT per request")
@click.option("--image", default=None, help="TMT per input image")
@click.option("--tier", "tiers", multiple=True,
              help="ABOVE:INPUT:OUTPUT[:CACHED_INPUT], prices for a full input above ABOVE tokens")
@click.option("--note", default=None)
@click.pass_context
def price_set(ctx, model, input_price, output_price, cached_input, cache_write, cache_write_long, reasoning,
              request_fee, image, tiers, note) -> None:
    """Set a model's price by hand (in force everywhere within 5 s); the finer prices are optional."""
    from aigateway.catalog import Tier, tiers_to_text
    from aigateway.pricing.service import set_price

    config = config_of(ctx)
    known = {m.name: m for m in config.models}
    entry = known.get(model)
    if entry is not None and entry.type == "embedding" and output_price not in (None, "0"):
        raise click.ClickException(f"{model} is an embedding model: it has an input price only")
    if entry is None and output_price is None:
        output_price = "0"
    if entry is not None and entry.type == "chat" and output_price is None:
        raise click.ClickException("--output is required for a chat model")
    units_in, units_out = run_sync(lambda: (to_units(input_price), to_units(output_price or "0")))
    finer = {"cached_input_price": cached_input, "cache_write_price": cache_write,
             "cache_write_long_price": cache_write_long, "reasoning_price": reasoning,
             "request_price": request_fee, "image_price": image}
    extra: dict[str, int | str | None] = run_sync(
        lambda: {k: None if v is None else to_units(v) for k, v in finer.items()})

    def tier(text: str) -> Tier:
        parts = text.split(":")
        if len(parts) not in (3, 4) or not parts[0].isdigit() or int(parts[0]) < 1:
            raise click.ClickException(f"--tier {text!r}: expected ABOVE:INPUT:OUTPUT[:CACHED_INPUT]")
        units_in, units_out = run_sync(lambda: (to_units(parts[1]), to_units(parts[2])))
        return Tier(int(parts[0]), units_in, units_out,
                    run_sync(lambda: to_units(parts[3])) if len(parts) == 4 else None)

    extra["tiers"] = tiers_to_text(tuple(tier(t) for t in tiers))
    if units_in < 0 or units_out < 0 or any(isinstance(v, int) and v < 0 for v in extra.values()):
        raise click.ClickException("a price must not be negative")

    version = _run(write_db(ctx, lambda conn: set_price(conn, model, units_in, units_out, source="manual", note=note,
                                                         extra=extra)))
    _echo_set(model, version, f"input {format_tmt(units_in)} output {format_tmt(units_out)} TMT per 1M tokens")
    _warn_unknown_or_tied(entry, model)


@price.command("free")
@click.argument("model")
@click.option("--note", default=None)
@click.pass_context
def price_free(ctx, model, note) -> None:
    """Mark a model free: served and never charged."""
    from aigateway.pricing.service import set_price

    config = config_of(ctx)

    version = _run(write_db(ctx, lambda conn: set_price(conn, model, 0, 0, source="manual", free=True, note=note)))
    _echo_set(model, version, "free")
    _warn_unknown_or_tied({m.name: m for m in config.models}.get(model), model)


def _echo_set(model, version, what) -> None:
    if version is None:
        click.echo(f"{model}: already {what}; nothing changed")
    else:
        click.echo(f"{model}: {what} (version {version}); gateways apply it within 5 s")


def _warn_unknown_or_tied(entry, model) -> None:
    if entry is None:
        click.echo(f"warning: {model} is not a model in the config; the price waits until it is", err=True)
    elif entry.price_source:
        click.echo(f"warning: {model} follows price source {entry.price_source}; the next fetch replaces "
                   "this price (a big change is held for confirmation)", err=True)


@price.command("list")
@click.pass_context
def price_list(ctx) -> None:
    """Every model with the price in force, who set it and when, and the sources' status."""
    from aigateway.pricing.fetcher import fetch_status
    from aigateway.pricing.fx import current_rate_row
    from aigateway.pricing.service import current_prices, pending_versions

    config = config_of(ctx)

    async def read(conn):
        return (await current_prices(conn), await fetch_status(conn), await current_rate_row(conn),
                await pending_versions(conn))

    prices, status, rate, held = _run(read_db(ctx, read))
    models = {m.name: m for m in config.models}
    click.echo(f"{'model':<32} {'type':<9} {'input':>12} {'output':>12}  {'version':>7}  "
               f"{'set by':<16} {'updated (UTC)':<19}  follows")
    for name in sorted(set(models) | set(prices)):
        row, m = prices.get(name), models.get(name)
        kind = m.type if m else "?"
        if row is None:
            cells = f"{'NOT PRICED':>12} {'':>12}  {'-':>7}  {'-':<16} {'-':<19}"
        else:
            out = "-" if kind == "embedding" else format_tmt(row.output_price)
            inp = "free" if row.free else format_tmt(row.input_price)
            out = "free" if row.free else out
            cells = (f"{inp:>12} {out:>12}  {row.id:>7}  {row.source:<16} {_when(row.updated_at):<19}")
        click.echo(f"{name:<32} {kind:<9} {cells}  {(m.price_source or '-') if m else '-'}")
    click.echo("prices: TMT per 1M tokens; models NOT PRICED are not served (404 model_not_priced)")
    click.echo(f"USD->TMT rate: {rate.rate} ({rate.source}, {_when(rate.created_at)})" if rate else
               "USD->TMT rate: NOT SET (`aigateway admin fx set USD <rate>`)")
    _echo_status(status)
    if held:
        click.echo(f"{len(held)} held price change(s): `aigateway admin price held`")


def _echo_status(status) -> None:
    for name, entry in status["sources"].items():
        last = entry["last"]
        state = "running" if last.ok is None else ("ok" if last.ok else f"FAILED: {last.error}")
        click.echo(f"source {name}: last fetch {_when(last.started_at)} {state}; applied {last.applied}, "
                   f"held {last.held}, unchanged {last.unchanged}, problems {last.problems}; "
                   f"last good {_when(entry['last_ok_at'])}")
        if last.detail:
            for model, outcome in sorted(json.loads(last.detail).items()):
                if outcome["outcome"] not in ("applied", "unchanged", "held"):
                    click.echo(f"  {model}: {outcome['outcome']} in the source "
                               f"({outcome.get('source_model')}); last price kept")


@price.command("status")
@click.pass_context
def price_status(ctx) -> None:
    """The price sources' last fetches (failures, held changes, models gone from a source)."""
    from aigateway.pricing.fetcher import fetch_status

    status = _run(read_db(ctx, fetch_status))
    if not status["sources"]:
        click.echo("no fetch yet")
    _echo_status(status)


@price.command("history")
@click.argument("model")
@click.option("--limit", default=30, show_default=True)
@click.pass_context
def price_history(ctx, model, limit) -> None:
    """Every price version of a model, newest first: old -> new, source, status, time."""
    from aigateway.pricing.service import price_history as history

    rows = _run(read_db(ctx, lambda conn: history(conn, model, limit)))
    if not rows:
        click.echo(f"{model}: no price versions")
    for r in rows:
        old = "(none)" if r.prev_input is None else (
            "free" if r.prev_free else f"{format_tmt(r.prev_input)}/{format_tmt(r.prev_output)}")
        new = "free" if r.free else f"{format_tmt(r.input_price)}/{format_tmt(r.output_price)}"
        line = f"{r.id:>7}  {_when(r.created_at)}  {r.status:<8} {r.source:<16} {old} -> {new}"
        if r.usd_input is not None:
            line += f"  [USD/token {r.usd_input}/{r.usd_output or '-'} x {r.fx_rate} x (1+{r.markup})]"
        if r.note:
            line += f"  {r.note}"
        click.echo(line)


@price.command("held")
@click.pass_context
def price_held(ctx) -> None:
    """Fetched changes beyond the guardrail, waiting for `confirm` or `reject`."""
    from aigateway.pricing.service import current_prices, pending_versions

    async def read(conn):
        return await pending_versions(conn), await current_prices(conn)

    held, prices = _run(read_db(ctx, read))
    if not held:
        click.echo("no held price changes")
    for v in held:
        cur = prices.get(v.model)
        old = f"{format_tmt(cur.input_price)}/{format_tmt(cur.output_price)}" if cur else "(none)"
        click.echo(f"{v.id:>7}  {v.model:<32} {old} -> {format_tmt(v.input_price)}/{format_tmt(v.output_price)}"
                   f"  from {v.source} at {_when(v.created_at)}")


@price.command("confirm")
@click.argument("version_id", type=int)
@click.pass_context
def price_confirm(ctx, version_id) -> None:
    """Apply a held price change."""
    from aigateway.pricing.service import confirm_version

    row = _run(write_db(ctx, lambda conn: confirm_version(conn, version_id)))
    click.echo(f"{row.model}: version {version_id} is now in force "
               f"({format_tmt(row.input_price)}/{format_tmt(row.output_price)} TMT per 1M tokens)")


@price.command("reject")
@click.argument("version_id", type=int)
@click.option("--note", default=None)
@click.pass_context
def price_reject(ctx, version_id, note) -> None:
    """Refuse a held price change; the same price is not proposed again."""
    from aigateway.pricing.service import reject_version

    row = _run(write_db(ctx, lambda conn: reject_version(conn, version_id, note)))
    click.echo(f"{row.model}: version {version_id} rejected; the price in force stays")


@price.command("held-limits")
@click.pass_context
def price_held_limits(ctx) -> None:
    """Fetched context length / output cap changes beyond the guardrail, waiting for the operator."""
    from aigateway.pricing.limits import held_limits

    rows = _run(read_db(ctx, held_limits))
    if not rows:
        click.echo("no held limit changes")
    for r in rows:
        click.echo(f"{r.model:<32} context {r.context_length} -> {r.held_context_length}, output cap "
                   f"{r.max_output_tokens} -> {r.held_max_output_tokens}  from {r.held_source} at "
                   f"{_when(r.held_at)}")


@price.command("confirm-limits")
@click.argument("model")
@click.pass_context
def price_confirm_limits(ctx, model) -> None:
    """Apply a model's held limits (holds are sized from them)."""
    from aigateway.pricing.limits import confirm_limits

    row = _run(write_db(ctx, lambda conn: confirm_limits(conn, model)))
    click.echo(f"{model}: context {row.held_context_length}, output cap {row.held_max_output_tokens} "
               "are now in force")


@price.command("reject-limits")
@click.argument("model")
@click.pass_context
def price_reject_limits(ctx, model) -> None:
    """Refuse a model's held limits; the same values are not proposed again."""
    from aigateway.pricing.limits import reject_limits

    _run(write_db(ctx, lambda conn: reject_limits(conn, model)))
    click.echo(f"{model}: held limits rejected; the limits in force stay")


@price.command("fetch")
@click.pass_context
def price_fetch(ctx) -> None:
    """Fetch every price source now (from this machine) and apply the results."""
    from aigateway.pricing.fetcher import Fetcher
    from aigateway.pricing.fx import apply_config_rates

    config, settings = settings_of(ctx)

    async def run():
        async with database(ctx) as engine:
            await apply_config_rates(engine, settings)
            fetcher = Fetcher(engine, config, settings)
            if not fetcher.tied and not settings.sources:
                return []
            return await fetcher.fetch_now()

    reports = _run(run())
    if reports is None:
        raise click.ClickException("another process is fetching prices right now; try again in a minute")
    if not reports:
        click.echo("no model follows a price source (set price_source on a [[models]] entry)")
    failed = False
    for r in reports:
        if not r["ok"]:
            failed = True
            click.echo(f"source {r['source']}: FAILED: {r['error']} (last good prices kept)")
            continue
        click.echo(f"source {r['source']}: {r['entries']} prices; applied {r['applied']}, held {r['held']}, "
                   f"unchanged {r['unchanged']}, problems {r['problems']}")
        for model, o in sorted(r["models"].items()):
            extra = f" {o['input']}/{o['output']}" if "input" in o else ""
            extra += f" (version {o['version_id']})" if o.get("version_id") else ""
            click.echo(f"  {model}: {o['outcome']}{extra}{' - ' + o['already'] if o.get('already') else ''}")
    if failed:
        ctx.exit(1)


@click.group()
def fx() -> None:
    """Exchange rates used to turn upstream USD prices into TMT."""


@fx.command("set")
@click.argument("currency")
@click.argument("rate")
@click.option("--note", default=None)
@click.pass_context
def fx_set(ctx, currency, rate, note) -> None:
    """Set the rate, TMT per 1 CURRENCY (e.g. `fx set USD 3.50`). Source prices follow at the next fetch."""
    from aigateway.pricing.fx import normalize_rate, set_rate

    value = run_sync(lambda: normalize_rate(rate))

    changed = _run(write_db(ctx, lambda conn: set_rate(conn, currency, value, source="manual", note=note)))
    click.echo(f"{currency.upper()} -> TMT rate {value}" + ("" if changed else " (unchanged)")
               + "; source-priced models follow at the next fetch (`aigateway admin price fetch` for now)")


@fx.command("show")
@click.argument("currency", default="USD")
@click.pass_context
def fx_show(ctx, currency) -> None:
    """The rate in force and its history."""
    from aigateway.pricing.fx import rate_history

    rows = _run(read_db(ctx, lambda conn: rate_history(conn, currency)))
    if not rows:
        click.echo(f"no {currency.upper()} rate set (`aigateway admin fx set {currency.upper()} <rate>`)")
    for i, r in enumerate(rows):
        mark = "in force" if i == 0 else ""
        click.echo(f"{_when(r.created_at)}  {r.currency} {r.rate:>12} TMT  {r.source:<8} {mark}"
                   f"{'  ' + r.note if r.note else ''}")

