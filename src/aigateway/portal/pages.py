"""The signed-in pages: dashboard, API keys, transactions (and CSV), deposit; and the
public ones: models and API documentation."""

from __future__ import annotations

import csv
import io
import logging
from datetime import UTC, date, datetime
from urllib.parse import quote

import segno
from aiohttp import web
from markupsafe import Markup
from sqlalchemy import func, select

from aigateway.accounts.keys import mask
from aigateway.accounts.service import AccountError, create_key, list_keys, revoke_key
from aigateway.accounts.tables import api_keys
from aigateway.appkeys import CONFIG, DEPOSITS, ENGINE, GATEWAY
from aigateway.portal import chart, deposit_text, flash, formatting, i18n, recovery
from aigateway.portal.base import (
    PORTAL,
    available_balance,
    key_id_of,
    locale_of,
    not_found,
    redirect,
    render,
    require_session,
    safe_next,
    session_token,
    set_cookie,
    translator,
)
from aigateway.portal.formatting import tmt_text
from aigateway.portal.i18n import N_
from aigateway.portal.key_limits import limits_of
from aigateway.portal.memo_text import memo_text
from aigateway.portal.queries import ledger_batches, requests_of_day, transactions_page, usage_by_day
from aigateway.timeutil import as_utc, parse_utc

log = logging.getLogger(__name__)


def _page_number(request: web.Request) -> int:
    try:
        return max(1, min(int(request.query.get("page", "1")), 100_000))
    except ValueError:
        return 1


# ------------------------------------------------------------------ dashboard

async def dashboard(request: web.Request) -> web.Response:
    session = require_session(request)
    metric = request.query.get("metric", "cost")
    if metric not in chart.METRICS:
        metric = "cost"
    async with request.app[ENGINE].connect() as conn:
        summary = await usage_by_day(conn, session.customer_id)
    balance = await available_balance(request, session.customer_id)
    return await render(
        request, "dashboard.html", tab="dashboard", balance=balance, summary=summary, metric=metric,
        metrics=chart.METRICS, other=chart.OTHER,
        chart_svg=None if summary.empty else chart.render(summary, metric,
                                                          chart.Words(locale_of(request), translator(request))),
        legend=chart.legend(summary, metric), days_desc=list(reversed(summary.days)),
        verify=await recovery.notice(request))


# ------------------------------------------------------------------ API keys

def _key_view(row) -> dict:
    return {"id": row.id, "name": row.name, "masked": mask(row.prefix, row.last4), "created_at": row.created_at,
            "last_used_at": row.last_used_at, "revoked_at": row.revoked_at}


async def _keys_page(request: web.Request, *, status: int = 200, new_key: dict | None = None,
                     error: str | None = None, notice: str | None = None, name: str = "") -> web.Response:
    session = require_session(request)
    async with request.app[ENGINE].connect() as conn:
        rows = await list_keys(conn, session.customer_id)
        keys = [_key_view(r) for r in rows]
        active = [k for k in keys if k["revoked_at"] is None]
        revoked = [k for k in keys if k["revoked_at"] is not None]
        limits = await limits_of(conn, [k["id"] for k in active])  # spend this period against each cap
    for k in active:
        k.update(limits[k["id"]])
    response = await render(request, "keys.html", status=status, tab="keys", active=active, revoked=revoked,
                            new_key=new_key, error=error, notice=notice, name=name)
    return response


keys_page = _keys_page  # the limits form (portal.key_limits) re-shows the tab with its error


async def keys(request: web.Request) -> web.Response:
    require_session(request)
    shown = await flash.take(request.app[ENGINE], session_token(request))
    new_key = shown.get("new_key") if shown else None
    _ = translator(request)
    notice = _("Key revoked. Requests made with it are now refused (401).") if request.query.get("m") == "revoked" \
        else None
    if request.query.get("m") == "limits":
        notice = _("Limits saved. They apply to new requests within a second.")
    return await _keys_page(request, notice=notice, new_key=new_key)


async def create_key_view(request: web.Request) -> web.Response:
    session = require_session(request)
    form = await request.post()
    name = str(form.get("name", "")).strip()
    _ = translator(request)
    if not name:
        return await _keys_page(request, status=400, error=_("Give the key a name, e.g. the app that will use it."))
    if len(name) > 100:
        return await _keys_page(request, status=400, error=_("The name is too long: at most 100 characters."),
                                name=name[:100])
    limit = request.app[PORTAL].settings.max_keys
    async with request.app[ENGINE].begin() as conn:
        count = (await conn.execute(select(func.count()).select_from(api_keys).where(
            api_keys.c.customer_id == session.customer_id, api_keys.c.revoked_at.is_(None)))).scalar_one()
        if count >= limit:
            return await _keys_page(request, status=400, error=_(
                "You already have %(limit)s active keys. Revoke one you no longer use first.") % {"limit": limit})
        key_id, new = await create_key(conn, session.customer_id, name)
    # Post/redirect/get: the secret goes, sealed, into the session's one-time flash and is
    # shown once by the GET; a reload repeats that GET (no new key, secret gone).
    await flash.put(request.app[ENGINE], session_token(request), {"new_key": {"id": key_id, "name": name,
                                                                             "secret": new.secret}})
    return redirect("/keys")


async def revoke_key_view(request: web.Request) -> web.Response:
    session = require_session(request)
    key_id = key_id_of(request)
    form = await request.post()
    engine = request.app[ENGINE]
    if form.get("confirm") != "yes":
        # No script (or it was bypassed): ask on a page of its own.
        async with engine.connect() as conn:
            row = (await conn.execute(select(api_keys).where(
                api_keys.c.id == key_id, api_keys.c.customer_id == session.customer_id))).first()
        if row is None:
            raise not_found()
        return await render(request, "key_revoke.html", tab="keys", key=_key_view(row))
    try:
        async with engine.begin() as conn:
            key_hash = await revoke_key(conn, key_id, session.customer_id)
    except AccountError:
        raise not_found() from None
    request.app[GATEWAY].keys.forget(key_hash)  # refused from this very moment in this process
    return redirect("/keys?m=revoked")


# ------------------------------------------------------------------ transactions

KIND_LABELS = {"deposit": N_("USDT deposit"), "credit": N_("Credit"), "adjustment": N_("Adjustment"),
               "usage": N_("API usage"), "charge": N_("API request"), "voucher": N_("Voucher")}


# Shown when a ledger entry has no memo.
DEFAULT_DETAILS = {"deposit": N_("USDT (TRC-20) deposit credited"), "credit": N_("Added by the operator"),
                   "adjustment": N_("Balance correction")}


async def transactions(request: web.Request) -> web.Response:
    session = require_session(request)
    page = _page_number(request)
    async with request.app[ENGINE].connect() as conn:
        items, has_next = await transactions_page(conn, session.customer_id, page=page)
    locale, _ = locale_of(request), translator(request)
    return await render(request, "transactions.html", tab="transactions", items=items, page=page,
                        has_next=has_next, labels=KIND_LABELS, defaults=DEFAULT_DETAILS,
                        memo=lambda t: memo_text(t.kind, t.memo, locale, _))


async def transactions_day(request: web.Request) -> web.Response:
    session = require_session(request)
    try:
        day = date.fromisoformat(request.match_info["day"])
    except ValueError:
        raise not_found() from None
    page = _page_number(request)
    async with request.app[ENGINE].connect() as conn:
        items, has_next, totals = await requests_of_day(conn, session.customer_id, day, page=page)
    return await render(request, "transactions_day.html", tab="transactions", day=day, items=items, page=page,
                        has_next=has_next, totals=totals)


def _csv_text(value: str | None) -> str:
    """Neutralise spreadsheet formulas in free text (CSV injection)."""
    value = value or ""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


async def transactions_csv(request: web.Request) -> web.StreamResponse:
    session = require_session(request)
    stamp = datetime.now(UTC).strftime("%Y%m%d")
    response = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": f'attachment; filename="transactions-{stamp}.csv"',
    })
    await response.prepare(request)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["date_utc", "type", "amount_tmt", "description", "reference"])
    await response.write(buffer.getvalue().encode())
    buffer.seek(0)
    buffer.truncate()
    async with request.app[ENGINE].connect() as conn:
        async for rows in ledger_batches(conn, session.customer_id):
            for r in rows:
                at = as_utc(r.created_at)  # naive on SQLite: stored as UTC
                # isoformat, not strftime: strftime was the costliest step of writing a row (profiled)
                writer.writerow([at.isoformat(" ", "seconds")[:19], r.kind,
                                 tmt_text(r.amount, "csv"), _csv_text(r.memo), _csv_text(r.reference)])
            await response.write(buffer.getvalue().encode())
            buffer.seek(0)
            buffer.truncate()
    await response.write_eof()
    return response


# ------------------------------------------------------------------ deposit

def qr_svg(address: str, label: str = "QR code of your deposit address") -> Markup:
    """The address as a QR code: an inline SVG image whose accessible name is `label`."""
    # segno draws the code as one <path>; the address is data of the code, not markup.
    svg = segno.make(address, error="m").svg_inline(scale=5, border=3, dark="#0f172a", light="#ffffff",
                                                    svgclass="qr", omitsize=True)
    return Markup(svg.replace("<svg ", str(Markup('<svg role="img" aria-label="{}" ').format(label)), 1))


def _moment(value) -> datetime | None:
    """A time from the deposits port: a datetime or ISO text."""
    if isinstance(value, datetime):
        return as_utc(value)
    if isinstance(value, str) and value:
        try:
            return parse_utc(value)
        except ValueError:
            return None
    return None


def _deposit_view(overview: dict, _=lambda text: text, locale: str = "en") -> dict:
    """The port's overview, with defaults for anything missing, as the template shows it;
    `note` is each deposit's progress in the customer's language (portal.deposit_text).
    The port gives amounts and the rate as decimal text; they are written here in the
    locale's digits (portal.formatting): TMT as money (exact value in the title), the rate
    and USDT amounts with every digit the port gave (USDT with at least 2 decimals)."""
    network = str(overview.get("network") or "")
    if "TRC" not in network.upper():
        network = f"TRC-20 (TRON {network})" if network else "TRC-20"

    def usdt(value) -> str | None:
        return None if value is None else formatting.decimal_text(value, locale, min_places=2)

    def tmt(value) -> Markup | str | None:
        if value is None:
            return None
        units = formatting.tmt_units(value)
        return formatting.tmt_html(units, "balance", locale) if units is not None else str(value)

    def note(d: dict) -> str | None:
        return deposit_text.progress(d, _, locale)

    rows = []
    for d in overview.get("pending") or []:
        rows.append({"status": "pending", "label": _("Pending"), "tx_id": d.get("tx_id", ""),
                     "at": _moment(d.get("seen_at")), "usdt": usdt(d.get("amount_usdt")), "tmt": None,
                     "note": note(d)})
    for d in overview.get("credited") or []:
        rows.append({"status": "deposit", "label": _("Credited"), "tx_id": d.get("tx_id", ""),
                     "at": _moment(d.get("credited_at")), "usdt": usdt(d.get("amount_usdt")),
                     "tmt": tmt(d.get("amount_tmt")), "note": note(d)})
    for d in overview.get("ignored") or []:
        rows.append({"status": "muted", "label": _("Not credited"), "tx_id": d.get("tx_id", ""),
                     "at": _moment(d.get("seen_at")), "usdt": usdt(d.get("amount_usdt")), "tmt": None,
                     "note": note(d)})
    rate, minimum = overview.get("rate"), overview.get("min_deposit")
    return {"rate": formatting.decimal_text(rate, locale, min_places=2) if rate else None, "network": network,
            "min_deposit": formatting.decimal_text(minimum, locale) if minimum else None, "rows": rows}


async def _deposit_state(request: web.Request, customer_id: int) -> dict:
    port = request.app.get(DEPOSITS)
    if port is None:
        return {"configured": False}
    port.watch_closely(customer_id)
    try:
        address = await port.address_for(customer_id)
        overview = await port.overview(customer_id)
    except Exception:
        log.exception("deposits: overview failed for customer %s", customer_id)
        return {"configured": True, "failed": True}
    return {"configured": True, "failed": False, "address": address,
            "overview": _deposit_view(overview, translator(request), locale_of(request))}


async def deposit(request: web.Request) -> web.Response:
    session = require_session(request)
    state = await _deposit_state(request, session.customer_id)
    _ = translator(request)
    qr = qr_svg(state["address"], _("QR code of your deposit address")) if state.get("address") else None
    return await render(request, "deposit.html", tab="deposit", qr=qr, **state)


async def deposit_status(request: web.Request) -> web.Response:
    """The pending/credited lists alone, polled by the Deposit tab's script.

    The header X-Portal-Balance carries the available balance as the header shows it
    (percent-encoded: locales group digits with non-ASCII spaces), so the page's balance
    follows a deposit credit without a reload."""
    session = require_session(request)
    state = await _deposit_state(request, session.customer_id)
    response = await render(request, "_deposit_lists.html", show_balance=False, **state)
    balance = await available_balance(request, session.customer_id)
    response.headers["X-Portal-Balance"] = quote(tmt_text(balance, "balance", locale_of(request)))
    response.headers["X-Portal-Balance-Exact"] = quote(tmt_text(balance, "usage", locale_of(request)))
    return response


# ------------------------------------------------------------------ public pages

async def models(request: web.Request) -> web.Response:
    catalog = request.app[GATEWAY].catalog
    rows = sorted((m for m in catalog.models.values() if m.servable), key=lambda m: (m.type != "chat", m.name))
    updated = max((m.price_updated_at for m in rows if m.price_updated_at), default=None)
    return await render(request, "models.html", tab="models", models=rows, updated=updated)


# The portal text's example models: used in the docs when the gateway serves them.
SPEC_CHAT_MODEL = "llama-3.1-70b"
SPEC_EMBEDDING_MODEL = "nomic-embed-text"


def example_model(catalog, kind: str, preferred: str) -> str:
    """The model the docs' examples name: `preferred` when it is served as `kind`, else the
    first served model of that kind (config order), so a pasted example never 404s.
    With none served, `preferred` stays as a placeholder."""
    served = [m.name for m in catalog.models.values() if m.servable and m.type == kind]
    if preferred in served:
        return preferred
    return served[0] if served else preferred


async def docs(request: web.Request) -> web.Response:
    base = request.app[CONFIG].server.base_url
    catalog = request.app[GATEWAY].catalog
    return await render(request, "docs.html", tab="docs", base=base, api_base=base + "/v1",
                        chat_model=example_model(catalog, "chat", SPEC_CHAT_MODEL),
                        embed_model=example_model(catalog, "embedding", SPEC_EMBEDDING_MODEL))


async def language(request: web.Request) -> web.Response:
    """The language switcher: remember the choice for a year, go back to the page."""
    code = request.match_info["code"]
    if code not in i18n.LOCALES:
        raise not_found()
    response = redirect(safe_next(request.query.get("next"), "/"))
    set_cookie(request, response, i18n.COOKIE, code, max_age=365 * 24 * 3600)
    return response


async def home(request: web.Request) -> web.Response:
    from aigateway.portal.base import session_of

    return redirect("/dashboard" if session_of(request) else "/login")
