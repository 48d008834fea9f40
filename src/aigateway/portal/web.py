"""Plug the portal into the application: routes, the portal middleware, housekeeping.

The middleware only acts on the portal's own routes. For them it loads the
session, enforces CSRF on every state-changing request, turns errors into
pages, and adds the security headers and a Server-Timing header.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web

from aigateway.appkeys import CONFIG, ENGINE
from aigateway.background import Periodic
from aigateway.demo.setup import DEMO_PROVIDER
from aigateway.portal import auth, flash, i18n, links, pages, recovery, security, twofactor
from aigateway.portal.base import (
    LOCALE,
    PORTAL,
    SESSION,
    STATIC,
    STATIC_URL,
    LoginRequired,
    Portal,
    PortalError,
    PortalSettings,
    anon_csrf_cookie_name,
    is_https,
    redirect,
    render,
    same_origin,
    session_cookie_name,
    static_version,
)
from aigateway.portal.i18n import N_
from aigateway.portal.key_limits import save_limits_view
from aigateway.portal.mail import MAILER, mailer_from
from aigateway.portal.render import make_env
from aigateway.portal.sessions import load_session, purge_expired
from aigateway.portal.throttle import purge_stale
from aigateway.webheaders import set_page_headers

log = logging.getLogger(__name__)

# Forms a visitor posts before logging in: checked against the double-submit cookie.
ANONYMOUS_FORMS = {"/login", "/register", "/forgot", "/reset", "/verify", "/login/code"}

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def setup(app: web.Application) -> None:
    settings = PortalSettings.model_validate(app[CONFIG].portal)
    translations = {locale: i18n.load(locale) for locale in i18n.LOCALES}  # .po compiled here, at start
    portal = Portal(settings=settings, envs={k: make_env(t) for k, t in translations.items()},
                    translations=translations, static_version=static_version(),
                    demo=DEMO_PROVIDER in app[CONFIG].providers)
    app[PORTAL] = portal
    mailer = mailer_from(app[CONFIG].smtp)
    if mailer is not None:
        app[MAILER] = mailer
        app.on_cleanup.append(_drain_mail)
    r = app.router
    routes = [
        r.add_get("/", pages.home),
        r.add_get("/lang/{code}", pages.language),
        r.add_get("/login", auth.login_page), r.add_post("/login", auth.login),
        r.add_get("/login/code", security.code_page), r.add_post("/login/code", security.code_submit),
        r.add_get("/security", security.security_page),
        r.add_post("/security/2fa/start", security.start_view),
        r.add_post("/security/2fa/confirm", security.confirm_view),
        r.add_post("/security/2fa/disable", security.disable_view),
        r.add_get("/register", auth.register_page), r.add_post("/register", auth.register),
        r.add_get("/logout", auth.logout_page), r.add_post("/logout", auth.logout),
        r.add_get("/forgot", recovery.forgot_page), r.add_post("/forgot", recovery.forgot),
        r.add_get("/reset", recovery.reset_page), r.add_post("/reset", recovery.reset),
        r.add_get("/verify", recovery.verify_page), r.add_post("/verify", recovery.verify),
        r.add_post("/verify/send", recovery.resend_verification),
        r.add_get("/dashboard", pages.dashboard),
        r.add_get("/keys", pages.keys), r.add_post("/keys", pages.create_key_view),
        r.add_post("/keys/{key_id}/revoke", pages.revoke_key_view),
        r.add_post("/keys/{key_id}/limits", save_limits_view),
        r.add_get("/transactions", pages.transactions),
        r.add_get("/transactions/export.csv", pages.transactions_csv),
        r.add_get(r"/transactions/{day:\d{4}-\d{2}-\d{2}}", pages.transactions_day),
        r.add_get("/deposit", pages.deposit),
        r.add_get("/deposit/status", pages.deposit_status),
        r.add_get("/models", pages.models),
        r.add_get("/docs", pages.docs),
    ]
    portal.resources.update(route.resource for route in routes)
    portal.resources.add(r.add_static(STATIC_URL, STATIC, append_version=False))
    app.middlewares.append(portal_middleware)
    app.on_response_prepare.append(_on_prepare)
    app.cleanup_ctx.append(_housekeeping)


async def _drain_mail(app: web.Application) -> None:
    """At shutdown, let the e-mails in flight go out (each is bounded by the SMTP timeout)."""
    await app[MAILER].drain()


async def _housekeeping(app: web.Application) -> AsyncIterator[None]:
    engine = app[ENGINE]

    async def purge() -> None:
        await purge_expired(engine)
        await purge_stale(engine)
        await flash.purge_expired(engine)
        await links.purge_expired(engine)
        await twofactor.purge_expired(engine)

    periodic = Periodic()
    periodic.every(600.0, purge, "portal-purge")
    yield
    await periodic.stop()


async def _check_csrf(request: web.Request) -> None:
    origin = request.headers.get("Origin")
    if origin is not None and not same_origin(request, origin):
        raise PortalError(403, N_("Request refused"), N_("This form was sent from another site, so it was refused."))
    form = await request.post()
    sent = form.get("csrf")
    session = request[SESSION]
    expected = [session.csrf_token] if session is not None else []
    if request.path in ANONYMOUS_FORMS:
        # A form a visitor may also open while logged in (a link from an e-mail): the page
        # carried the session's token then, the double-submit cookie's otherwise.
        expected.append(request.cookies.get(anon_csrf_cookie_name(request), ""))
    elif session is None:
        raise LoginRequired()
    if not isinstance(sent, str) or not any(
            e and hmac.compare_digest(sent.encode(), e.encode()) for e in expected):
        raise PortalError(403, N_("Page expired"),
                          N_("This form has expired or did not come from this site. Go back, reload the page "
                             "and try again."))


STARTED = web.RequestKey("portal.started", float)  # perf_counter() when the portal middleware took it
STATIC_REQUEST = web.RequestKey("portal.static", bool)


async def _on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """Headers for every portal response, streamed ones (CSV export) included."""
    started = request.get(STARTED)
    if started is None:
        return  # not a portal route
    _security_headers(request, response, static=request[STATIC_REQUEST])
    response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"


def _security_headers(request: web.Request, response: web.StreamResponse, *, static: bool) -> None:
    h = response.headers
    set_page_headers(h, CSP)
    h.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
    if is_https(request):
        h.setdefault("Strict-Transport-Security", "max-age=31536000")
    if static:
        # URLs carry ?v=<content hash>, so a new release never meets a stale copy.
        h.setdefault("Cache-Control", "public, max-age=31536000, immutable")
    else:
        h.setdefault("Cache-Control", "no-store")  # pages show private data


@web.middleware
async def portal_middleware(request: web.Request, handler):
    portal = request.app[PORTAL]
    resource = request.match_info.route.resource
    if resource is None or resource not in portal.resources:
        if not _browser_page(request):
            return await handler(request)
        try:
            return await handler(request)
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed) as exc:
            # a browser on an unknown address: the portal's own styled page, not plain text
            request[SESSION] = await _session(request)
            request[LOCALE] = i18n.choose(request.cookies.get(i18n.COOKIE),
                                          request.headers.get("Accept-Language", ""))
            return await _error_page(request, exc)
    request[STARTED] = time.perf_counter()
    request[LOCALE] = i18n.choose(request.cookies.get(i18n.COOKIE), request.headers.get("Accept-Language", ""))
    static = request[STATIC_REQUEST] = request.path.startswith(STATIC_URL + "/")
    try:
        if static:
            response = await handler(request)
        else:
            request[SESSION] = await _session(request)
            if request.method not in ("GET", "HEAD", "OPTIONS"):
                await _check_csrf(request)
            response = await handler(request)
    except LoginRequired:
        target = request.path_qs if request.method == "GET" else request.path
        response = redirect(f"/login?m=expired&next={_quote(target)}")
    except PortalError as exc:
        response = await render(request, "error.html", status=exc.status, heading=exc.title, message=exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if static:
            raise
        response = await _error_page(request, exc)
    return response


def _browser_page(request: web.Request) -> bool:
    """A browser asking for a page: not an API client, not the API's or operator's paths
    (those keep their own error format)."""
    path = request.path
    if path == "/v1" or path.startswith(("/v1/", "/admin", "/healthz")):
        return False
    return "text/html" in request.headers.get("Accept", "")


async def _session(request: web.Request):
    token = request.cookies.get(session_cookie_name(request))
    return await load_session(request.app[ENGINE], token, request.app[PORTAL].session_ttl) if token else None


# Translated where error.html shows them.
ERROR_TEXT = {
    404: (N_("Page not found"), N_("This page does not exist, or it belongs to another account.")),
    405: (N_("Not available this way"), N_("This address cannot be opened like this. Use the links and buttons "
                                          "of the portal.")),
}


async def _error_page(request: web.Request, exc: web.HTTPException) -> web.Response:
    heading, message = ERROR_TEXT.get(exc.status, (exc.reason, N_("The request could not be handled.")))
    response = await render(request, "error.html", status=exc.status, heading=heading, message=message)
    if exc.status == 405 and "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    return response


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="/")
