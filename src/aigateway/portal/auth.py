"""Register, log in, log out."""

from __future__ import annotations

import logging

from aiohttp import web
from argon2 import PasswordHasher
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from aigateway.accounts.service import AccountError, create_customer, normalise_email
from aigateway.accounts.tables import customers
from aigateway.appkeys import ENGINE
from aigateway.portal import security, throttle, twofactor, waits
from aigateway.portal.base import (
    PORTAL,
    client_ip,
    plural_translator,
    redirect,
    render,
    safe_next,
    session_cookie_name,
    session_of,
    set_cookie,
    translator,
)
from aigateway.portal.mail import MAILER
from aigateway.portal.passwords import WeakPassword, check_strength, hash_password, verify_password
from aigateway.portal.sessions import create_session, end_session

log = logging.getLogger(__name__)

MESSAGES = {
    "created": "Account created! Please login.",
    "bye": "You have been logged out.",
    "expired": "Please log in to continue.",
    "created-mail": "Account created! We sent you a link to confirm your email. Please login.",
    "reset": "Your password was changed. Please log in with the new one.",
}

WRONG = "Wrong email or password."


async def login_page(request: web.Request) -> web.Response:
    if session_of(request) is not None:
        return redirect("/dashboard")
    notice = MESSAGES.get(request.query.get("m", ""))
    return await render(request, "login.html", notice=notice, error=None, email="",
                        next=safe_next(request.query.get("next")))


async def login(request: web.Request) -> web.Response:
    form = await request.post()
    email = str(form.get("email", "")).strip().lower()
    password = str(form.get("password", ""))
    target = safe_next(str(form.get("next", "")))
    engine = request.app[ENGINE]

    async def fail(status: int, error: str) -> web.Response:
        return await render(request, "login.html", status=status, notice=None, error=error, email=email,
                            next=target)

    if not email or not password:
        return await fail(400, "Enter your email and password.")
    ip = client_ip(request)
    # Counted before the password is checked, in one atomic step (see throttle.py).
    verdict = await throttle.attempt(engine, email, ip)
    if not verdict.allowed:
        return await fail(429, _wait(request, waits.LOGIN, verdict.wait))
    async with engine.connect() as conn:
        row = (await conn.execute(select(customers.c.id, customers.c.password_hash, customers.c.status)
                                  .where(customers.c.email == email))).first()
    ok = await verify_password(row.password_hash if row else None, password)
    if not ok or row is None:
        if verdict.wait:
            return await fail(401, _wait(request, waits.LOGIN_WRONG, verdict.wait))
        return await fail(401, WRONG)
    if row.status != "active":
        return await fail(403, "This account is disabled. Please contact support.")
    await throttle.succeeded(engine, email, ip)
    if PasswordHasher().check_needs_rehash(row.password_hash):  # parameters were raised since
        new_hash = await hash_password(password)
        async with engine.begin() as conn:
            await conn.execute(update(customers).where(customers.c.id == row.id).values(password_hash=new_hash))
    async with engine.connect() as conn:
        second_factor = await twofactor.is_enabled(conn, row.id)
    if second_factor:  # no session until the code is accepted (see portal/security.py)
        return await security.begin(request, row.id, target)
    return await start_session(request, row.id, target)


async def start_session(request: web.Request, customer_id: int, target: str) -> web.Response:
    """A new session cookie and the redirect to `target` (a safe_next() path)."""
    portal = request.app[PORTAL]
    token = await create_session(request.app[ENGINE], customer_id, portal.session_ttl)
    response = redirect(target)
    set_cookie(request, response, session_cookie_name(request), token,
               max_age=int(portal.session_ttl.total_seconds()))
    return response


def _wait(request: web.Request, kind: str, wait: float) -> str:
    return waits.wait_text(kind, wait, translator(request), plural_translator(request))


async def register_page(request: web.Request) -> web.Response:
    if session_of(request) is not None:
        return redirect("/dashboard")
    return await render(request, "register.html", error=None, email="")


async def register(request: web.Request) -> web.Response:
    form = await request.post()
    raw_email = str(form.get("email", ""))
    password = str(form.get("password", ""))
    confirm = str(form.get("confirm", ""))

    _ = translator(request)

    async def fail(status: int, error: str) -> web.Response:
        return await render(request, "register.html", status=status, error=error, email=raw_email.strip())

    try:
        email = normalise_email(raw_email)
    except AccountError:
        return await fail(400, _("Enter a valid email address, like name@example.com."))
    try:
        check_strength(password, email)
    except WeakPassword as exc:
        return await fail(400, exc.translated(_))
    if password != confirm:
        return await fail(400, _("The two passwords do not match."))
    engine = request.app[ENGINE]
    password_hash = await hash_password(password)
    try:
        async with engine.begin() as conn:
            customer_id = await create_customer(conn, email, password_hash)
    except (AccountError, IntegrityError):  # taken (IntegrityError: two sign-ups raced)
        # The same answer as a new account (after the same password hashing): the form
        # must not tell anyone which emails have an account here.
        log.info("portal: sign-up for an email that already has an account")
        return redirect("/login?m=created-mail" if request.app.get(MAILER) else "/login?m=created")
    log.info("portal: new customer registered")
    if request.app.get(MAILER) is not None:
        from aigateway.portal.recovery import send_verification

        await send_verification(request, customer_id, email)
        return redirect("/login?m=created-mail")
    return redirect("/login?m=created")


async def logout_page(request: web.Request) -> web.Response:
    """GET /logout (a typed or bookmarked address): ask, since logging out is a POST."""
    if session_of(request) is None:
        return redirect("/login")
    return await render(request, "logout.html")


async def logout(request: web.Request) -> web.Response:
    session = session_of(request)
    if session is not None:
        await end_session(request.app[ENGINE], session)
    response = redirect("/login?m=bye")
    response.del_cookie(session_cookie_name(request), path="/")
    return response
