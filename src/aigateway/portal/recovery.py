"""Recoverable accounts: password reset and e-mail verification by e-mailed one-time links.

Only with `[smtp]` configured; otherwise /forgot says the operator resets passwords
(`aigateway admin portal set-password`). The forgot form answers the same whether or
not the address has an account (and mail goes out in the background, so not even the
timing differs). Sending is limited per address and per client IP on the shared
atomic throttle, silently: a refused send gets the same answer. Links open a page
with a form; the token is spent by its POST (mail scanners that fetch links spend
nothing). A password reset ends every session of the account and proves the mailbox.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from sqlalchemy import delete, select, update

from aigateway.accounts.service import AccountError, normalise_email
from aigateway.accounts.tables import customers
from aigateway.appkeys import CONFIG, ENGINE
from aigateway.portal import links
from aigateway.portal.base import PORTAL, client_ip, redirect, render, require_session, session_of, translator
from aigateway.portal.mail import MAILER
from aigateway.portal.passwords import WeakPassword, check_strength, hash_password
from aigateway.portal.tables import portal_sessions
from aigateway.throttle import service as throttle
from aigateway.throttle.service import Check, Policy

log = logging.getLogger(__name__)

# E-mails per address and per client IP: 3 at once, then one per 1, 2, 4 ... minutes (at most an hour).
MAIL_ADDRESS = Policy("mail:address", free=3, base=60.0, cap=3600.0, forget=3600.0)
MAIL_IP = Policy("mail:ip", free=10, base=60.0, cap=3600.0, forget=3600.0)


def _link(request: web.Request, path: str, token: str) -> str:
    return f"{request.app[CONFIG].server.base_url}{path}?t={token}"


async def _may_send(request: web.Request, email: str) -> bool:
    checks = [Check(MAIL_ADDRESS, email), Check(MAIL_IP, client_ip(request))]
    verdict = await throttle.attempt(request.app[ENGINE], checks)
    return verdict.allowed


def _send_reset(request: web.Request, email: str, token: str) -> None:
    _ = translator(request)
    site = request.app[PORTAL].settings.title
    body = _("Someone (hopefully you) asked to reset the password of your %(site)s account %(email)s.\n\n"
             "To choose a new password, open this link within one hour:\n%(link)s\n\n"
             "If you did not ask for this, ignore this e-mail: your password stays as it is.") % {
        "site": site, "email": email, "link": _link(request, "/reset", token)}
    request.app[MAILER].send_later(email, _("Reset your %(site)s password") % {"site": site}, body)


async def send_verification(request: web.Request, customer_id: int, email: str) -> None:
    """E-mail a confirmation link for `email` (the caller checked the throttle)."""
    async with request.app[ENGINE].begin() as conn:
        token = await links.issue(conn, customer_id, email, "verify")
    _ = translator(request)
    site = request.app[PORTAL].settings.title
    body = _("Please confirm that %(email)s is your e-mail address for %(site)s by opening this link within "
             "two days:\n%(link)s\n\nIf you did not create an account, ignore this e-mail.") % {
        "site": site, "email": email, "link": _link(request, "/verify", token)}
    request.app[MAILER].send_later(email, _("Confirm your e-mail address for %(site)s") % {"site": site}, body)


# ------------------------------------------------------------------ forgot password

async def forgot_page(request: web.Request) -> web.Response:
    return await render(request, "forgot.html", mail=request.app.get(MAILER) is not None, sent=None, email="",
                        error=None)


async def forgot(request: web.Request) -> web.Response:
    if request.app.get(MAILER) is None:
        return await forgot_page(request)
    form = await request.post()
    raw = str(form.get("email", "")).strip()
    _ = translator(request)
    try:
        email = normalise_email(raw)
    except AccountError:
        return await render(request, "forgot.html", status=400, mail=True, sent=None, email=raw,
                            error=_("Enter a valid email address, like name@example.com."))
    if await _may_send(request, email):
        engine = request.app[ENGINE]
        async with engine.begin() as conn:
            row = (await conn.execute(select(customers.c.id).where(
                customers.c.email == email, customers.c.status == "active"))).first()
            token = await links.issue(conn, row.id, email, "reset") if row else None
        if token:
            _send_reset(request, email, token)
    # The same page whether or not the address has an account, and whether or not it was sent.
    return await render(request, "forgot.html", mail=True, sent=email, email=email, error=None)


# ------------------------------------------------------------------ reset

async def _expired(request: web.Request, purpose: str) -> web.Response:
    return await render(request, "link_expired.html", status=410, purpose=purpose)


async def _link_page(request: web.Request, purpose: str, template: str, **context: Any) -> web.Response:
    """The page a mailed link opens: its form while the link is valid, "link expired" (410) after."""
    token = request.query.get("t", "")
    link = await links.peek(request.app[ENGINE], token, purpose)
    if link is None:
        return await _expired(request, purpose)
    return await render(request, template, token=token, email=link.email, **context)


async def reset_page(request: web.Request) -> web.Response:
    return await _link_page(request, "reset", "reset.html", error=None)


async def reset(request: web.Request) -> web.Response:
    form = await request.post()
    token = str(form.get("t", ""))
    password, confirm = str(form.get("password", "")), str(form.get("confirm", ""))
    engine = request.app[ENGINE]
    link = await links.peek(engine, token, "reset")
    if link is None:
        return await _expired(request, "reset")
    _ = translator(request)

    async def fail(error: str) -> web.Response:
        return await render(request, "reset.html", status=400, token=token, email=link.email, error=error)

    try:
        check_strength(password, link.email)
    except WeakPassword as exc:
        return await fail(exc.translated(_))
    if password != confirm:
        return await fail(_("The two passwords do not match."))
    new_hash = await hash_password(password)
    async with engine.begin() as conn:
        spent = await links.use(conn, token, "reset")
        if spent is None:  # spent meanwhile by another request
            return await _expired(request, "reset")
        await conn.execute(update(customers).where(customers.c.id == spent.customer_id)
                           .values(password_hash=new_hash))
        # Whoever knew the old password is logged out everywhere.
        await conn.execute(delete(portal_sessions).where(portal_sessions.c.customer_id == spent.customer_id))
    log.info("portal: password reset by e-mail link for customer %s", spent.customer_id)
    return redirect("/login?m=reset")


# ------------------------------------------------------------------ verify

async def verify_page(request: web.Request) -> web.Response:
    return await _link_page(request, "verify", "verify.html", done=False)


async def verify(request: web.Request) -> web.Response:
    form = await request.post()
    async with request.app[ENGINE].begin() as conn:
        link = await links.use(conn, str(form.get("t", "")), "verify")
    if link is None:
        return await _expired(request, "verify")
    return await render(request, "verify.html", token="", email=link.email, done=True)


async def resend_verification(request: web.Request) -> web.Response:
    session = require_session(request)
    if request.app.get(MAILER) is not None and await _may_send(request, session.email):
        await send_verification(request, session.customer_id, session.email)
    return redirect("/dashboard?m=verify-sent")


async def notice(request: web.Request) -> dict | None:
    """For the dashboard: ask to confirm the e-mail address (only when mail is set up)."""
    session = session_of(request)
    if session is None or request.app.get(MAILER) is None:
        return None
    async with request.app[ENGINE].connect() as conn:
        if await links.is_verified(conn, session.customer_id, session.email):
            return None
    return {"email": session.email, "sent": request.query.get("m") == "verify-sent"}
