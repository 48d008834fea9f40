"""The scheduled price fetch: one process at a time, every `fetch_interval` seconds.

Every process runs `tick()` every few seconds. The shared `pricing_schedule`
row says when the last fetch started and who holds the lease; a process fetches
only when the interval has passed (or a fetch was asked for) and it wins the
lease with one conditional UPDATE. So replicas sharing a database fetch once
per interval between them, and a crashed fetcher's lease simply expires. Every
process, fetcher or not, picks the new prices up from the database through its
catalog refresh (5 s).

Per source and model, a fetched price is:
  * unchanged -> nothing written;
  * within `max_change_factor` of the price in force (or the first price) -> applied;
  * beyond it -> recorded as a `held` version for the operator (the price in force stays);
  * missing, variable or malformed in the source -> the last price stays, reported.
A source that fails (network, timeout, HTTP error, garbage) changes nothing and
is reported in `price_fetches`. Context length and output cap pass their own
guardrails (pricing.limits: bounds, big changes held) before they are stored in
`model_limits`, which the catalog uses when the config sets none.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from decimal import Decimal
from typing import Any

import aiohttp
from sqlalchemy import desc, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aigateway.catalog import Price, Tier
from aigateway.config import Config
from aigateway.money import format_tmt
from aigateway.pricing import sources
from aigateway.pricing.followers import PriceFollower, price_followers
from aigateway.pricing.fx import current_rate
from aigateway.pricing.limits import apply_source_limits
from aigateway.pricing.rules import is_big_price_change, tmt_price_units, tmt_units_each
from aigateway.pricing.service import (
    current_price,
    decide_version,
    latest_unapplied,
    pending_versions,
    propose_price,
    same_price,
    set_price,
)
from aigateway.pricing.settings import PricingSettings, tied_models
from aigateway.pricing.tables import price_fetches, pricing_schedule
from aigateway.store.leases import holder_id
from aigateway.store.metadata import utcnow
from aigateway.timeutil import now_ms

log = logging.getLogger(__name__)

SCHEDULE = "fetch"


class Fetcher:
    def __init__(self, engine: AsyncEngine, config: Config, settings: PricingSettings, *, catalog=None,
                 holder: str | None = None) -> None:
        self.engine = engine
        self.config = config
        self.settings = settings
        self.catalog = catalog
        self.holder = holder or holder_id()
        self.tied = tied_models(config)
        # Long enough for every source to time out, so a live fetch is never taken over
        # (every source: a model added in the console may follow any of them).
        used = list(settings.sources.values())
        self.lease_ms = int((sum(s.timeout for s in used) + 60) * 1000)

    # --- schedule and lease ----------------------------------------------

    async def _schedule_row(self, conn: AsyncConnection):
        query = select(pricing_schedule).where(pricing_schedule.c.name == SCHEDULE)
        row = (await conn.execute(query)).first()
        if row is None:  # seeded by the migration; recreated if someone deleted it
            async with self.engine.begin() as other:
                try:
                    await other.execute(pricing_schedule.insert().values(
                        name=SCHEDULE, holder="", lease_until_ms=0, last_started_ms=0, last_finished_ms=0,
                        last_ok=True, requested_ms=0))
                except IntegrityError:
                    pass
            row = (await conn.execute(query)).first()
        return row

    def _due(self, row, now: int) -> bool:
        if row.requested_ms > row.last_started_ms:
            return True
        wait = self.settings.fetch_interval if row.last_ok else min(self.settings.fetch_interval,
                                                                     self.settings.retry_interval)
        return now - row.last_started_ms >= wait * 1000

    async def claim(self, *, force: bool = False) -> bool:
        """Take the lease if a fetch is due (or `force`) and nobody holds it. Atomic across replicas."""
        now = now_ms()
        async with self.engine.begin() as conn:
            row = await self._schedule_row(conn)
            if not force and not self._due(row, now):
                return False
            if row.lease_until_ms >= now:
                return False
            result = await conn.execute(
                update(pricing_schedule)
                .where(pricing_schedule.c.name == SCHEDULE, pricing_schedule.c.lease_until_ms < now,
                       pricing_schedule.c.last_started_ms == row.last_started_ms)
                .values(holder=self.holder, lease_until_ms=now + self.lease_ms, last_started_ms=now))
            return result.rowcount == 1

    async def release(self, ok: bool) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(pricing_schedule)
                .where(pricing_schedule.c.name == SCHEDULE, pricing_schedule.c.holder == self.holder)
                .values(holder="", lease_until_ms=0, last_finished_ms=now_ms(), last_ok=ok))

    async def request(self) -> None:
        """Ask for a fetch as soon as possible (whichever replica ticks first does it)."""
        async with self.engine.begin() as conn:
            await self._schedule_row(conn)
            await conn.execute(update(pricing_schedule).where(pricing_schedule.c.name == SCHEDULE)
                               .values(requested_ms=now_ms()))

    async def tick(self) -> None:
        if not self.tied and not (self.settings.sources and await self._console_tied()):
            return
        if not await self.claim():
            return
        await self._run_leased()

    async def fetch_now(self) -> list[dict] | None:
        """Fetch every source now. None when another process holds the lease."""
        if not await self.claim(force=True):
            return None
        return await self._run_leased()

    async def _run_leased(self) -> list[dict]:
        reports: list[dict] = []
        try:
            reports = await self.run()
        finally:
            await self.release(ok=bool(reports) and all(r["ok"] for r in reports))
        if self.catalog is not None:
            await self.catalog.refresh(self.engine)  # this process sees the result at once
        return reports

    async def _console_tied(self) -> list[PriceFollower]:
        """Models added in the console that follow a source this config defines (the config wins a name)."""
        config_names = {m.name for m in self.config.models}
        async with self.engine.connect() as conn:
            followers = await price_followers(conn)
        return [f for f in followers if f.name not in config_names and f.price_source in self.settings.sources]

    # --- one fetch ---------------------------------------------------------

    async def run(self) -> list[dict]:
        """Fetch every source some model follows and apply the results. Call with the lease held."""
        async with self.engine.connect() as conn:
            rate = await current_rate(conn, "USD")
        reports = []
        tied = {name: list(models) for name, models in self.tied.items()}
        for follower in await self._console_tied():
            tied.setdefault(follower.price_source, []).append(follower)
        timeout = aiohttp.ClientTimeout(total=None)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for name, models in tied.items():
                reports.append(await self._run_source(session, name, models, rate))
        return reports

    async def _run_source(self, session: aiohttp.ClientSession, name: str, models: list[Any],
                          rate: Decimal | None) -> dict[str, Any]:
        """One source: record the fetch, fetch, apply every model's quote (all or none), report."""
        fetch_id = await self._start_fetch(name)
        report: dict[str, Any] = {"source": name, "fetch_id": fetch_id, "ok": False, "error": None, "entries": 0,
                                  "applied": 0, "held": 0, "unchanged": 0, "problems": 0, "models": {}}
        try:
            if rate is None:
                raise sources.SourceError("no USD->TMT rate is set: run `aigateway admin fx set USD <rate>` "
                                          "or set [pricing.fx] USD in the config")
            parsed = await sources.fetch(session, self.settings.sources[name])
        except sources.SourceError as exc:
            report["error"] = str(exc)
            log.warning("price source %s failed: %s; the last good prices stay in force", name, exc)
        else:
            try:
                async with self.engine.begin() as conn:  # all of a source's changes, or none
                    for model in models:
                        report["models"][model.name] = await self._apply(conn, name, model, parsed, rate, fetch_id)
            except Exception as exc:  # a bug or a database error: report it, change nothing
                log.exception("applying prices from %s failed; the last good prices stay in force", name)
                report["models"] = {}
                report["error"] = f"applying prices failed: {exc.__class__.__name__}: {exc}"[:1000]
            else:
                _tally(report, parsed)
        await self._finish_fetch(fetch_id, report)
        return report

    async def _start_fetch(self, name: str) -> int:
        async with self.engine.begin() as conn:
            result = await conn.execute(price_fetches.insert().values(
                source=name, holder=self.holder, started_at=utcnow(), entries=0, applied=0, held=0,
                unchanged=0, problems=0))
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    async def _finish_fetch(self, fetch_id: int, report: dict[str, Any]) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(update(price_fetches).where(price_fetches.c.id == fetch_id).values(
                finished_at=utcnow(), ok=report["ok"], error=report["error"], entries=report["entries"],
                applied=report["applied"], held=report["held"], unchanged=report["unchanged"],
                problems=report["problems"], detail=json.dumps(report["models"], sort_keys=True)))

    async def _apply(self, conn: AsyncConnection, source_name: str, model: Any, parsed: sources.Parsed,
                     rate: Decimal, fetch_id: int) -> dict[str, Any]:
        ident = model.price_source_model or model.name
        quote = parsed.quotes.get(ident)
        if quote is None:
            why = parsed.invalid.get(ident)
            outcome = "malformed" if why else "missing"
            log.warning("price source %s: model %s (%s) is %s%s; its last price stays in force",
                        source_name, model.name, ident, outcome, f" ({why})" if why else "")
            return {"outcome": outcome, "source_model": ident, **({"reason": why} if why else {})}
        limits = await apply_source_limits(conn, model.name, source_name, quote.context_length,
                                           quote.max_output_tokens, self.settings.max_limit_change_factor)
        result = await self._apply_price(conn, source_name, model, ident, quote, rate, fetch_id)
        return {**result, "limits": limits} if limits is not None else result

    async def _apply_price(self, conn: AsyncConnection, source_name: str, model: Any, ident: str,
                           quote: sources.Quote, rate: Decimal, fetch_id: int) -> dict[str, Any]:
        """One model's quote: unchanged, applied (within the guardrail) or held for the operator."""
        embedding = model.type == "embedding"
        if quote.input is None or (not embedding and quote.output is None):
            log.warning("price source %s: model %s (%s) has a variable price; its last price stays in force",
                        source_name, model.name, ident)
            return {"outcome": "variable", "source_model": ident}
        own = model.markup if isinstance(model, PriceFollower) else None  # set in the console
        markup = own if own is not None else self.settings.markup_for(model.name, source_name)
        quoted = _Quoted(source_price(quote, rate, markup, embedding), details={
            "source_model": ident, "usd_input": str(quote.input),
            "usd_output": None if embedding else str(quote.output), "usd_extra": _usd_extra(quote, embedding),
            "fx_rate": str(rate), "markup": str(markup), "fetch_id": fetch_id})
        current = await current_price(conn, model.name)
        if current is not None and same_price(current, *quoted.key, quoted.extra):
            return await _unchanged(conn, model.name, current.id, quoted)
        if current is None or not is_big_price_change(Price.from_row(current), quoted.price,
                                                      self.settings.max_change_factor):
            return await _applied(conn, model.name, source_name, quoted)
        return await self._held(conn, model.name, source_name, current, quoted)

    async def _held(self, conn: AsyncConnection, model: str, source_name: str, current: Any,
                    quoted: _Quoted) -> dict[str, Any]:
        """A change beyond the guardrail: a `held` version for the operator; the price in force stays."""
        shown = quoted.shown
        last = await latest_unapplied(conn, model)
        if last is not None and same_price(last, *quoted.key, quoted.extra):
            already = "rejected by the operator" if last.status == "rejected" else "waiting for the operator"
            return {"outcome": "held", "version_id": last.id, "already": already, **shown}
        await _reject_pending(conn, model, "superseded by a newer fetched price")
        new_in, new_out, free = quoted.key
        factor = self.settings.max_change_factor
        version_id = await propose_price(
            conn, model, new_in, new_out, source=source_name, free=free, details=quoted.details,
            extra=quoted.extra, note=f"held: more than x{factor} from version {current.id} "
                                     f"({format_tmt(current.input_price)}/{format_tmt(current.output_price)})")
        log.warning("price of %s from %s changes beyond x%s (input %s -> %s, output %s -> %s TMT per 1M): held as "
                    "version %s; `aigateway admin price confirm %s` to apply it", model, source_name, factor,
                    format_tmt(current.input_price), shown["input"], format_tmt(current.output_price),
                    shown["output"], version_id, version_id)
        return {"outcome": "held", "version_id": version_id, **shown}


class _Quoted:
    """A fetched quote as a TMT price, with what is stored and reported beside it."""

    __slots__ = ("details", "extra", "key", "price", "shown")

    def __init__(self, price: Price, details: dict[str, Any]) -> None:
        self.price = price
        self.details = details
        self.key = (price.input_price, price.output_price, price.free)
        self.extra = price.stored()
        self.shown: dict[str, Any] = {"input": format_tmt(price.input_price), "output": format_tmt(price.output_price),
                                      "free": price.free, **shown_extra(price)}


async def _reject_pending(conn: AsyncConnection, model: str, why: str) -> None:
    for stale in await pending_versions(conn, model):
        await decide_version(conn, stale.id, "rejected", why)


async def _unchanged(conn: AsyncConnection, model: str, version_id: int, quoted: _Quoted) -> dict[str, Any]:
    """The source is back at the price in force: versions still waiting for the operator are moot."""
    await _reject_pending(conn, model, "source returned to the price in force")
    return {"outcome": "unchanged", "version_id": version_id, **quoted.shown}


async def _applied(conn: AsyncConnection, model: str, source_name: str, quoted: _Quoted) -> dict[str, Any]:
    """A first price, or a change within the guardrail: in force now."""
    new_in, new_out, free = quoted.key
    version_id = await set_price(conn, model, new_in, new_out, source=source_name, free=free,
                                 details=quoted.details, extra=quoted.extra)
    await _reject_pending(conn, model, f"superseded by applied version {version_id}")
    log.info("price of %s from %s: input %s output %s TMT per 1M tokens (version %s)",
             model, source_name, quoted.shown["input"], quoted.shown["output"], version_id)
    return {"outcome": "applied", "version_id": version_id, **quoted.shown}


def _tally(report: dict[str, Any], parsed: sources.Parsed) -> None:
    """Count a source's outcomes into its report (what `admin price status` shows)."""
    report["ok"] = True
    report["entries"] = sum(q.input is not None for q in parsed.quotes.values())
    for outcome in report["models"].values():
        kind = outcome["outcome"]
        report[kind if kind in ("applied", "held", "unchanged") else "problems"] += 1
        limits = (outcome.get("limits") or {}).get("outcome")
        if limits in ("held", "refused"):  # the operator has something to look at
            report["held" if limits == "held" else "problems"] += 1


def source_price(quote: sources.Quote, rate: Decimal, markup: Decimal, embedding: bool = False) -> Price:
    """A source's USD quote as a TMT price (version 0: not stored yet); every field rounded up on its own."""
    def per_m(usd: Decimal | None) -> int | None:
        return None if usd is None else tmt_price_units(usd, rate, markup)

    def each(usd: Decimal | None) -> int | None:
        return None if usd is None else tmt_units_each(usd, rate, markup)

    if quote.input is None:  # callers skip a variable price before they get here
        raise ValueError("a variable input price has no TMT price")
    new_in = tmt_price_units(quote.input, rate, markup)
    if embedding:  # billed by input tokens only: output-side and cache fields do not apply
        return Price(0, new_in, 0, new_in == 0)
    if quote.output is None:
        raise ValueError("a variable output price has no TMT price")
    new_out = tmt_price_units(quote.output, rate, markup)
    tiers = tuple(Tier(t.above, tmt_price_units(t.input, rate, markup), tmt_price_units(t.output, rate, markup),
                       per_m(t.cached_input)) for t in quote.tiers)
    price = Price(0, new_in, new_out, False, per_m(quote.cached_input), per_m(quote.cache_write),
                  per_m(quote.cache_write_long), per_m(quote.reasoning), each(quote.request), each(quote.image),
                  tiers)
    free = not tiers and all(v in (None, 0) for v in (new_in, new_out, *price.stored().values()))
    return dataclasses.replace(price, free=free)


_USD_EXTRA = ("cached_input", "cache_write", "cache_write_long", "reasoning", "request", "image")


def _usd_extra(quote: sources.Quote, embedding: bool) -> str | None:
    if embedding:
        return None
    out: dict[str, Any] = {k: str(getattr(quote, k)) for k in _USD_EXTRA if getattr(quote, k) is not None}
    if quote.tiers:
        out["tiers"] = [{"above": t.above, "input": str(t.input), "output": str(t.output),
                         **({"cached_input": str(t.cached_input)} if t.cached_input is not None else {})}
                        for t in quote.tiers]
    return json.dumps(out, sort_keys=True) if out else None


def shown_extra(price: Price) -> dict[str, Any]:
    """The finer prices of a fetch report in TMT (only those set)."""
    out: dict[str, Any] = {name.removesuffix("_price"): format_tmt(getattr(price, name))
           for name in ("cached_input_price", "cache_write_price", "cache_write_long_price", "reasoning_price",
                        "request_price", "image_price") if getattr(price, name) is not None}
    if price.tiers:
        out["tiers"] = [{k: (v if k == "above" else format_tmt(v)) for k, v in t.as_json().items()}
                        for t in price.tiers]
    return out


async def fetch_status(conn: AsyncConnection) -> dict:
    """{"schedule": {...}, "sources": {name: {"last": row, "last_ok_at": datetime|None}}} for the operator."""
    schedule = (await conn.execute(select(pricing_schedule).where(pricing_schedule.c.name == SCHEDULE))).first()
    names = (await conn.execute(select(price_fetches.c.source).distinct())).scalars().all()
    out: dict = {"schedule": schedule, "sources": {}}
    for name in sorted(names):
        last = (await conn.execute(select(price_fetches).where(price_fetches.c.source == name)
                                   .order_by(desc(price_fetches.c.id)).limit(1))).first()
        last_ok = await conn.scalar(select(func.max(price_fetches.c.finished_at))
                                    .where(price_fetches.c.source == name, price_fetches.c.ok.is_(True)))
        out["sources"][name] = {"last": last, "last_ok_at": last_ok}
    return out
