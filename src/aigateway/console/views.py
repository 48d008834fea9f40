"""Console pages and actions. Handlers parse the form, call a service, render or redirect:
no rules here (they are in console.customers, console.operators, audit, and the concerns'
own services, the same functions the CLI calls)."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import segno
from aiohttp import web
from multidict import MultiDictProxy
from sqlalchemy.ext.asyncio import AsyncConnection

from aigateway.console import audit, customers, operators, sessions, throttle
from aigateway.console.web import (
    SETTINGS,
    ConsoleRefusal,
    actor_of,
    cookie_name,
    engine_of,
    redirect,
    render,
    session_of,
)
from aigateway.keylimits.values import PERIODS
from aigateway.money import format_tmt
from aigateway.portal.base import safe_next


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/login", login_page)
    r.add_post("/login", login)
    r.add_post("/logout", logout)
    r.add_get("/enrol/{token}", enrol_page)
    r.add_post("/enrol/{token}", enrol)
    r.add_get("/", overview)
    r.add_get("/customers", customer_search)
    r.add_get(r"/customers/{cid:\d{1,9}}", customer_page)
    r.add_post(r"/customers/{cid:\d{1,9}}/money", customer_money)
    r.add_post(r"/customers/{cid:\d{1,9}}/status", customer_status)
    r.add_post(r"/customers/{cid:\d{1,9}}/sessions", customer_sessions)
    r.add_get(r"/customers/{cid:\d{1,9}}/keys/{kid:\d{1,12}}/limits", key_limits_page)
    r.add_post(r"/customers/{cid:\d{1,9}}/keys/{kid:\d{1,12}}/limits", key_limits_save)
    r.add_get("/audit", audit_page)
    r.add_get("/audit.csv", audit_csv)
    from aigateway.console import ops_views, probes

    ops_views.add_routes(app)
    from aigateway.console import catalog_views

    catalog_views.add_routes(app)
    probes.add_routes(app)


def _client_ip(request: web.Request) -> str:
    if request.app[SETTINGS].trust_forwarded_for:
        forwarded = request.headers.get("X-Forwarded-For", "")
        if forwarded.strip():
            return forwarded.split(",")[0].strip()
    return request.remote or "unknown"


# ------------------------------------------------------------------ log-in, enrolment

async def login_form(request: web.Request, *, status: int = 200, next_path: str = "/", error: str | None = None,
                     email: str = "", notice: str | None = None) -> web.Response:
    return render(request, "login.html", status=status, error=error, email=email, notice=notice,
                  next=safe_next(next_path, "/"))


async def login_page(request: web.Request) -> web.Response:
    if session_of(request) is not None:
        return redirect("/")
    notice = {"bye": "You have been logged out.", "enrolled": "Enrolment done. Log in."}.get(request.query.get("m", ""))
    return await login_form(request, next_path=request.query.get("next", "/"), notice=notice)


async def login(request: web.Request) -> web.Response:
    form = await request.post()
    email = str(form.get("email", "")).strip().lower()
    password, code = str(form.get("password", "")), str(form.get("code", ""))
    target = str(form.get("next", "/"))
    if not email or not password or not code:
        return await login_form(request, status=400, next_path=target, email=email,
                                error="Enter your email, password and the code from your authenticator app.")
    engine = engine_of(request)
    ip = _client_ip(request)
    verdict = await throttle.attempt(engine, email, ip)  # counted before anything is checked
    if not verdict.allowed:
        return await login_form(request, status=429, next_path=target, email=email,
                                error=f"Too many failed attempts. Wait {math.ceil(verdict.wait)} seconds.")
    async with engine.begin() as conn:
        operator = await operators.authenticate(conn, email, password, code)
        if operator is not None:
            await audit.record(conn, actor=f"operator:{operator.email}", action="operator.login", target=ip)
    if operator is None:
        return await login_form(request, status=401, next_path=target, email=email,
                                error="Wrong email, password or code.")
    await throttle.succeeded(engine, email, ip)
    hours = request.app[SETTINGS].session_hours
    from datetime import timedelta

    token = await sessions.create_session(engine, operator.id, timedelta(hours=hours))
    response = redirect(safe_next(target, "/"))
    response.set_cookie(cookie_name(request), token, max_age=hours * 3600, path="/", httponly=True,
                        samesite="Strict", secure=cookie_name(request).startswith("__Host-"))
    return response


async def logout(request: web.Request) -> web.Response:
    session = session_of(request)
    if session is not None:
        await sessions.end_session(engine_of(request), session.id_hash)
    response = redirect("/login?m=bye")
    response.del_cookie(cookie_name(request), path="/")
    return response


async def enrol_page(request: web.Request, error: str | None = None, status: int = 200) -> web.Response:
    async with engine_of(request).connect() as conn:
        row = await operators.pending_by_token(conn, request.match_info["token"])
    if row is None:
        raise ConsoleRefusal(404, "This enrolment link is invalid, used or expired. Ask an admin for a new one "
                                  "(aigateway admin operator reset --email ...).")
    uri = operators.provisioning_uri(row)
    if uri is None:  # sealed with a key this process does not have (see twofactor.seeds)
        raise ConsoleRefusal(503, "This enrolment cannot be shown: AIGATEWAY_SECRET_KEY is missing or differs "
                                  "on this server. Fix it, or issue a new link (aigateway admin operator reset).")
    qr = segno.make(uri, error="m").svg_data_uri(scale=4, border=2)
    return render(request, "enrol.html", status=status, email=row.email, role=row.role, qr=qr,
                  secret=operators.seed_of(row), error=error, codes=None)


async def enrol(request: web.Request) -> web.Response:
    form = await request.post()
    password, confirm = str(form.get("password", "")), str(form.get("confirm", ""))
    if password != confirm:
        return await enrol_page(request, "The two passwords do not match.", 400)
    try:
        async with engine_of(request).begin() as conn:
            row = await operators.pending_by_token(conn, request.match_info["token"])
            codes = await operators.enrol(conn, request.match_info["token"], password, str(form.get("code", "")))
            await audit.record(conn, actor=f"operator:{row.email}", action="operator.enrol",
                               target=f"operator:{row.id}", after={"status": "active"})
    except operators.OperatorError as exc:
        return await enrol_page(request, str(exc), 400)
    return render(request, "enrol.html", email=row.email, role=row.role, qr=None, secret=None, error=None,
                  codes=codes)


# ------------------------------------------------------------------ customers

async def overview(request: web.Request) -> web.Response:
    from aigateway.appkeys import GATEWAY
    from aigateway.console import overview as ov
    from aigateway.console.web import MAIN

    async with engine_of(request).connect() as conn:
        data = await ov.overview(conn)
    health = ov.upstream_health(request.app[MAIN][GATEWAY].router)
    return render(request, "overview.html", tab="overview", health=health, **data)


async def customer_search(request: web.Request) -> web.Response:
    q = request.query.get("q", "")[:200]
    async with engine_of(request).connect() as conn:
        rows = await customers.search(conn, q)
    return render(request, "customers.html", tab="customers", q=q, rows=rows)


async def customer_page(request: web.Request, error: str | None = None, status: int = 200) -> web.Response:
    cid = int(request.match_info["cid"])
    async with engine_of(request).connect() as conn:
        try:
            view = await customers.detail(conn, cid)
        except customers.ConsoleError:
            raise web.HTTPNotFound() from None
        from aigateway.console.key_limits import summaries

        limits = await summaries(conn, view.keys)
    notice = {"money": "Balance changed.", "status": "Status changed.", "sessions": "Sessions ended."}.get(
        request.query.get("m", ""))
    return render(request, "customer.html", status=status, tab="customers", v=view, error=error, notice=notice,
                  limits=limits)


CustomerAction = Callable[[AsyncConnection, int, MultiDictProxy[Any]], Awaitable[object]]


async def _customer_action(request: web.Request, done: str, act: CustomerAction,
                           refused: tuple[type[Exception], ...] = (customers.ConsoleError,)) -> web.Response:
    """Run `act(conn, customer_id, form)` in one transaction; back to the customer page with
    notice `done`, or the page again with the error (400) when `act` raises one of `refused`."""
    form = await request.post()
    cid = int(request.match_info["cid"])
    try:
        async with engine_of(request).begin() as conn:
            await act(conn, cid, form)
    except refused as exc:
        return await customer_page(request, str(exc), 400)
    return redirect(f"/customers/{cid}?m={done}")


async def customer_money(request: web.Request) -> web.Response:
    actor = actor_of(request)
    return await _customer_action(request, "money", lambda conn, cid, form: customers.move_money(
        conn, actor=actor, customer_id=cid, kind=str(form.get("kind", "credit")),
        amount=str(form.get("amount", "")), reason=str(form.get("reason", ""))),
        refused=(customers.ConsoleError, ValueError))


async def customer_status(request: web.Request) -> web.Response:
    actor = actor_of(request)
    return await _customer_action(request, "status", lambda conn, cid, form: customers.set_status(
        conn, actor=actor, customer_id=cid, status=str(form.get("status", "")), reason=str(form.get("reason", ""))))


async def customer_sessions(request: web.Request) -> web.Response:
    actor = actor_of(request)
    return await _customer_action(request, "sessions", lambda conn, cid, _form: customers.end_sessions(
        conn, actor=actor, customer_id=cid))


async def key_limits_page(request: web.Request, *, status: int = 200, errors: dict | None = None,
                          form: dict | None = None) -> web.Response:
    from aigateway.console import key_limits

    cid, kid = int(request.match_info["cid"]), int(request.match_info["kid"])
    async with engine_of(request).connect() as conn:
        key = await key_limits.key_of(conn, cid, kid)
        if key is None:
            raise web.HTTPNotFound()
        email = (await customers.detail(conn, cid)).customer.email
        v = await key_limits.view(conn, key)
    if form is None:
        lim = v.limits
        form = {"spend_cap": "" if lim.spend_cap is None else format_tmt(lim.spend_cap),
                "spend_period": lim.spend_period, "rpm": lim.rpm or "", "tpm": lim.tpm or "",
                "concurrency": lim.concurrency or "",
                "expires": lim.expires_at.date().isoformat() if lim.expires_at else "",
                "models": " ".join(v.allowed or [])}
    notice = "Limits saved. Every gateway applies them within about a second." if request.query.get("m") else None
    return render(request, "key_limits.html", status=status, tab="customers", cid=cid, email=email, v=v,
                  form=form, errors=errors or {}, notice=notice, periods=PERIODS,
                  current=key_limits.shown(v.limits, v.allowed))


async def key_limits_save(request: web.Request) -> web.Response:
    from aigateway.appkeys import GATEWAY
    from aigateway.console import key_limits
    from aigateway.console.catalog_admin import Invalid
    from aigateway.console.web import MAIN

    cid, kid = int(request.match_info["cid"]), int(request.match_info["kid"])
    posted = await request.post()
    form = {k: str(posted.get(k, "")) for k in ("spend_cap", "spend_period", "rpm", "tpm", "concurrency",
                                               "expires", "models")}
    known = set(request.app[MAIN][GATEWAY].catalog.models)
    try:
        async with engine_of(request).begin() as conn:
            await key_limits.save(conn, actor=actor_of(request), customer_id=cid, key_id=kid, form=form,
                                  known_models=known)
    except Invalid as exc:
        if "key" in exc.errors:
            raise web.HTTPNotFound() from None
        return await key_limits_page(request, status=400, errors=exc.errors, form=form)
    return redirect(f"/customers/{cid}/keys/{kid}/limits?m=saved")


# ------------------------------------------------------------------ audit

async def audit_page(request: web.Request) -> web.Response:
    action = request.query.get("action") or None
    async with engine_of(request).connect() as conn:
        rows = await audit.entries(conn, action=action, limit=300)
    return render(request, "audit.html", tab="audit", rows=rows, action=action or "")


async def audit_csv(request: web.Request) -> web.Response:
    async with engine_of(request).connect() as conn:
        rows = await audit.entries(conn, limit=100_000)
    return web.Response(text=audit.to_csv(rows), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": 'attachment; filename="audit.csv"'})
