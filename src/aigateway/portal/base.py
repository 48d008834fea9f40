"""What every portal page shares: settings, the current session, rendering, redirects."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import jinja2
from aiohttp import web
from pydantic import Field
from sqlalchemy import select

from aigateway.accounts.tables import customers
from aigateway.appkeys import CONFIG, ENGINE, GATEWAY
from aigateway.billing.wallet import WalletUnavailable
from aigateway.config import Strict
from aigateway.portal import i18n
from aigateway.portal.sessions import Session

STATIC = Path(__file__).parent / "static"
STATIC_URL = "/static/portal"


class PortalSettings(Strict):
    """The `[portal]` section of the config file."""

    # Brand shown in the header and page titles.
    title: str = "AI Gateway"
    # A login lasts this long after the last visit (sliding).
    session_days: int = Field(default=7, ge=1, le=90)
    # Behind a reverse proxy: take the client address for login throttling from
    # the first X-Forwarded-For entry (only enable when the proxy sets it).
    trust_forwarded_for: bool = False
    # Most active keys a customer may hold at once.
    max_keys: int = Field(default=50, ge=1, le=1000)


@dataclass
class Portal:
    settings: PortalSettings
    envs: dict[str, jinja2.Environment]  # one per language
    translations: dict  # locale -> gettext catalog
    resources: set = field(default_factory=set)  # the aiohttp resources that are portal pages
    static_version: str = ""
    demo: bool = False  # `serve --demo`: mock models; every page says so

    @property
    def session_ttl(self) -> timedelta:
        return timedelta(days=self.settings.session_days)


PORTAL = web.AppKey("portal", Portal)
SESSION: web.RequestKey[Session | None] = web.RequestKey("portal.session")  # the Session, or None when anonymous
LOCALE = web.RequestKey("portal.locale", str)  # "en", "ru" or "tk"


class PortalError(Exception):
    """Ends a request with a rendered error page."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


def not_found() -> PortalError:
    return PortalError(404, i18n.N_("Page not found"),
                       i18n.N_("This page does not exist, or it belongs to another account."))


def key_id_of(request: web.Request) -> int:
    """The `{key_id}` of the URL; a 404 page (not a 500) when it is not a number."""
    try:
        return int(request.match_info["key_id"])
    except ValueError:
        raise not_found() from None


def static_version() -> str:
    digest = hashlib.sha256()
    for path in sorted(STATIC.rglob("*")):
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


# ------------------------------------------------------------------ request facts

def is_https(request: web.Request) -> bool:
    """Served over HTTPS: directly, or behind a proxy when the public URL says https."""
    return request.secure or request.app[CONFIG].server.base_url.startswith("https://")


def session_cookie_name(request: web.Request) -> str:
    # The __Host- prefix (HTTPS only) pins the cookie to this host and path "/".
    return "__Host-gw_session" if is_https(request) else "gw_session"


def anon_csrf_cookie_name(request: web.Request) -> str:
    return "__Host-gw_csrf" if is_https(request) else "gw_csrf"


def client_ip(request: web.Request) -> str:
    if request.app[PORTAL].settings.trust_forwarded_for:
        forwarded = request.headers.get("X-Forwarded-For", "")
        if forwarded.strip():
            return forwarded.split(",")[0].strip()
    return request.remote or "unknown"


def same_origin(request: web.Request, origin: str) -> bool:
    hosts = {request.host, urlsplit(request.app[CONFIG].server.base_url).netloc}
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc in hosts


# Characters a redirect target may not hold, raw or percent-encoded: browsers drop
# tab/CR/LF inside URLs ("/\t/evil" becomes "//evil", another host) and read a
# backslash as a slash; aiohttp refuses CR/LF in a header, after the session exists.
_UNSAFE = re.compile(r"[\x00-\x20\x7f\\]")


def safe_next(target: str | None, default: str = "/dashboard") -> str:
    """A local path to redirect to after login, or `default`: never an open redirect.

    The target is parsed: no scheme, no host, a path starting with one "/", and no
    control character, space or backslash anywhere, raw or percent-encoded."""
    if not target or len(target) > 2000:
        return default
    if _UNSAFE.search(target) or _UNSAFE.search(unquote(target)):
        return default
    parts = urlsplit(target)
    if (parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//")
            or not parts.path.startswith("/") or parts.path.startswith("//")):
        return default
    # ASCII only in a header: anything else is percent-encoded (existing escapes kept).
    return quote(target, safe="/?&=%:@!$'()*+,;-._~#")


def set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str,
               max_age: int | None) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="Lax",
                        secure=is_https(request))


def anon_csrf_token(request: web.Request, response_cookies: dict) -> str:
    """The CSRF token of a visitor who is not logged in (login and register forms).

    Double-submit: the token is in an HttpOnly, SameSite=Lax cookie and in the form;
    another site can neither read nor set that cookie, so it cannot forge the pair.
    (A synchronizer token needs a server-side session, which anonymous visitors
    don't get: bots would fill the table.)"""
    token = request.cookies.get(anon_csrf_cookie_name(request), "")
    if len(token) < 32:
        token = secrets.token_urlsafe(32)
        response_cookies[anon_csrf_cookie_name(request)] = token
    return token


# ------------------------------------------------------------------ rendering

def session_of(request: web.Request) -> Session | None:
    return request.get(SESSION)


def require_session(request: web.Request) -> Session:
    session = session_of(request)
    if session is None:
        raise LoginRequired()
    return session


def locale_of(request: web.Request) -> str:
    """The customer's language for this request (see portal.i18n)."""
    return request.get(LOCALE, "en")


def translator(request: web.Request):
    """gettext for this request's language, for messages made in Python."""
    return request.app[PORTAL].translations[locale_of(request)].gettext


def plural_translator(request: web.Request):
    """ngettext for this request's language (a count's plural form in that language)."""
    return request.app[PORTAL].translations[locale_of(request)].ngettext


def session_token(request: web.Request) -> str:
    """The session cookie's value (only for a request that has a session)."""
    return request.cookies.get(session_cookie_name(request), "")


class LoginRequired(Exception):
    pass


async def available_balance(request: web.Request, customer_id: int) -> int:
    """Balance minus charges not yet written and requests in flight: what can still be spent."""
    gateway = request.app[GATEWAY]
    if gateway.wallet is not None:
        try:
            return await gateway.wallet.available(customer_id)
        except WalletUnavailable:  # Redis is down: show the committed balance rather than an error page
            pass
    async with request.app[ENGINE].connect() as conn:
        return int(await conn.scalar(select(customers.c.balance).where(customers.c.id == customer_id)) or 0)


def static_url(request: web.Request, name: str) -> str:
    return f"{STATIC_URL}/{name}?v={request.app[PORTAL].static_version}"


async def render(request: web.Request, template: str, *, status: int = 200, tab: str = "",
                 show_balance: bool = True, **context) -> web.Response:
    portal = request.app[PORTAL]
    session = session_of(request)
    cookies: dict[str, str] = {}
    csrf = session.csrf_token if session else anon_csrf_token(request, cookies)
    header_balance = None
    if session is not None and show_balance:
        header_balance = context.get("balance")
        if header_balance is None:
            header_balance = await available_balance(request, session.customer_id)
    locale = locale_of(request)
    html = portal.envs[locale].get_template(template).render(
        site=portal.settings.title, session=session, csrf=csrf, tab=tab, header_balance=header_balance,
        demo=portal.demo, locale=locale, languages=i18n.NAMES,
        static=lambda name: static_url(request, name), path=request.path, **context)
    response = web.Response(text=html, status=status, content_type="text/html", charset="utf-8")
    for name, value in cookies.items():
        set_cookie(request, response, name, value, max_age=None)
    return response


def redirect(location: str) -> web.Response:
    """303 See Other: after a POST the browser follows with a GET.

    Hazard: a control character in a header makes aiohttp fail while sending, after
    the handler's work (a new session) is done; callers pass safe_next() targets, and
    anything unexpected still goes to the dashboard rather than to an empty reply."""
    if _UNSAFE.search(location):
        location = "/dashboard"
    return web.Response(status=303, headers={"Location": location})
