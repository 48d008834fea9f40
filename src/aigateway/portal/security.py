"""The Security page (two-factor on/off) and the log-in's second step.

Every code check (enrolment, log-in, turning it off) is counted on the shared atomic
throttle BEFORE the code is checked (see aigateway.throttle.service): per customer and
per client IP, so neither one browser nor many can guess the 6 digits by volume.
"""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import select

from aigateway.accounts.tables import customers
from aigateway.appkeys import ENGINE
from aigateway.portal import flash, twofactor, waits
from aigateway.portal.base import (
    PORTAL,
    client_ip,
    is_https,
    plural_translator,
    redirect,
    render,
    require_session,
    session_of,
    session_token,
    set_cookie,
    translator,
)
from aigateway.portal.i18n import N_
from aigateway.portal.pages import qr_svg
from aigateway.portal.passwords import verify_password
from aigateway.throttle import service
from aigateway.throttle.service import Check, Policy, Verdict

CODE_ACCOUNT = Policy("2fa:account", free=5, base=2.0, cap=300.0, forget=3600.0)
CODE_IP = Policy("2fa:ip", free=20, base=2.0, cap=300.0, forget=3600.0)

WRONG_CODE = N_("That code is not right. Enter the 6-digit code your authenticator app shows now, or a "
                "recovery code.")
NOTICES = {"on": N_("Two-factor authentication is on."), "off": N_("Two-factor authentication is off.")}


class _Expired(Exception):
    pass


def pending_cookie_name(request: web.Request) -> str:
    return "__Host-gw_2fa" if is_https(request) else "gw_2fa"


def _checks(customer_id: int, ip: str) -> list[Check]:
    return [Check(CODE_ACCOUNT, str(customer_id)), Check(CODE_IP, ip)]


async def _count(request: web.Request, customer_id: int) -> Verdict:
    return await service.attempt(request.app[ENGINE], _checks(customer_id, client_ip(request)))


async def _forgive(request: web.Request, customer_id: int) -> None:
    account, by_ip = _checks(customer_id, client_ip(request))
    await service.forgive(request.app[ENGINE], account, clear=True)
    await service.forgive(request.app[ENGINE], by_ip)


def _wait_text(request: web.Request, verdict: Verdict) -> str:
    return waits.wait_text(waits.CODES, verdict.wait, translator(request), plural_translator(request))


# ------------------------------------------------------------------ the Security page

async def security_page(request: web.Request, *, status: int = 200, error: str | None = None,
                        disable_error: str | None = None) -> web.Response:
    session = require_session(request)
    engine = request.app[ENGINE]
    shown = await flash.take(engine, session_token(request)) if request.method == "GET" else None
    recovery_codes = shown.get("recovery_codes") if shown else None
    async with engine.connect() as conn:
        state = await twofactor.state(conn, session.customer_id)
    _ = translator(request)
    qr = uri = None
    if state.secret:
        uri = twofactor.provisioning_uri(state.secret, session.email, request.app[PORTAL].settings.title)
        qr = qr_svg(uri, _("QR code to scan with your authenticator app"))
    notice = NOTICES.get(request.query.get("m", "")) if request.method == "GET" else None
    return await render(request, "security.html", status=status, tab="security", state=state, qr=qr,
                        secret=state.secret, recovery_codes=recovery_codes, notice=notice, error=error,
                        disable_error=disable_error)


async def start_view(request: web.Request) -> web.Response:
    session = require_session(request)
    async with request.app[ENGINE].begin() as conn:
        await twofactor.start_enrolment(conn, session.customer_id)
    return redirect("/security#two-factor")


async def confirm_view(request: web.Request) -> web.Response:
    session = require_session(request)
    form = await request.post()
    verdict = await _count(request, session.customer_id)
    if not verdict.allowed:
        return await security_page(request, status=429, error=_wait_text(request, verdict))
    async with request.app[ENGINE].begin() as conn:
        new_codes = await twofactor.confirm_enrolment(conn, session.customer_id, str(form.get("code", "")))
    if new_codes is None:
        return await security_page(request, status=400, error=translator(request)(WRONG_CODE))
    await _forgive(request, session.customer_id)
    # Post/redirect/get: the codes are shown once, from the session's sealed flash.
    await flash.put(request.app[ENGINE], session_token(request), {"recovery_codes": new_codes})
    return redirect("/security?m=on#two-factor")


async def disable_view(request: web.Request) -> web.Response:
    session = require_session(request)
    form = await request.post()
    _ = translator(request)
    verdict = await _count(request, session.customer_id)
    if not verdict.allowed:
        return await security_page(request, status=429, disable_error=_wait_text(request, verdict))
    engine = request.app[ENGINE]
    async with engine.connect() as conn:
        password_hash = await conn.scalar(select(customers.c.password_hash).where(
            customers.c.id == session.customer_id))
    if not await verify_password(password_hash, str(form.get("password", ""))):
        return await security_page(request, status=400, disable_error=_("Wrong password."))
    async with engine.begin() as conn:
        ok = await twofactor.verify(conn, session.customer_id, str(form.get("code", "")))
        if ok:
            await twofactor.disable(conn, session.customer_id)
    if not ok:
        return await security_page(request, status=400, disable_error=_(WRONG_CODE))
    await _forgive(request, session.customer_id)
    return redirect("/security?m=off")


# ------------------------------------------------------------------ the log-in's second step

async def begin(request: web.Request, customer_id: int, target: str) -> web.Response:
    """Called by the log-in after a right password when the factor is on: no session yet."""
    async with request.app[ENGINE].begin() as conn:
        token = await twofactor.begin_login(conn, customer_id, target)
    response = redirect("/login/code")
    set_cookie(request, response, pending_cookie_name(request), token,
               max_age=int(twofactor.PENDING_TTL.total_seconds()))
    return response


async def code_page(request: web.Request, *, status: int = 200, error: str | None = None) -> web.Response:
    if session_of(request) is not None:
        return redirect("/dashboard")
    async with request.app[ENGINE].connect() as conn:
        login = await twofactor.pending(conn, request.cookies.get(pending_cookie_name(request), ""))
    if login is None:
        return redirect("/login?m=expired")
    return await render(request, "login_code.html", status=status, error=error)


async def code_submit(request: web.Request) -> web.Response:
    from aigateway.portal.auth import start_session  # auth imports this module

    form = await request.post()
    token = request.cookies.get(pending_cookie_name(request), "")
    engine = request.app[ENGINE]
    async with engine.connect() as conn:
        login = await twofactor.pending(conn, token)
    if login is None:
        return redirect("/login?m=expired")
    verdict = await _count(request, login.customer_id)
    if not verdict.allowed:
        return await code_page(request, status=429, error=_wait_text(request, verdict))
    try:
        async with engine.begin() as conn:
            # Code and pending log-in are used up in one transaction: both, or neither.
            ok = await twofactor.verify(conn, login.customer_id, str(form.get("code", "")))
            if ok and not await twofactor.finish_login(conn, token):
                raise _Expired  # rolls the code back: another request used this log-in first
    except _Expired:
        return redirect("/login?m=expired")
    if not ok:
        return await code_page(request, status=401, error=translator(request)(WRONG_CODE))
    await _forgive(request, login.customer_id)
    response = await start_session(request, login.customer_id, login.target)
    response.del_cookie(pending_cookie_name(request), path="/")
    return response
