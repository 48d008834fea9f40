"""Serve the console on its own listener, next to the API's.

`setup(app)` (called for every concern by app.create_app) adds a cleanup context to the
MAIN application that, once the main start-up is done (engine, gateway ready), starts a
second aiohttp application on `[admin] host:port` (default 127.0.0.1) and stops it before
the engine is disposed. No console route exists on the API listener, so exposing the API
never exposes the console; the console shares only the engine and the gateway object.

The console's middleware loads the operator session, refuses anything else (a customer's
cookie or an API key is simply not an operator session: 401 and the log-in form), checks
the CSRF token on every POST, lets a `viewer` change nothing (403), and sets a strict CSP
with no script at all: every page works with forms and links only.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from pathlib import Path

import jinja2
from aiohttp import web
from sqlalchemy.exc import DBAPIError

from aigateway.appkeys import CONFIG, ENGINE
from aigateway.console.sessions import OperatorSession, load_session, purge_expired
from aigateway.console.settings import AdminSettings
from aigateway.money import format_tmt
from aigateway.portal import formatting
from aigateway.webheaders import set_page_headers

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
MAIN = web.AppKey("console.main", web.Application)  # the API application (engine, gateway, deposits)
SETTINGS = web.AppKey("console.settings", AdminSettings)
JINJA = web.AppKey("console.jinja", jinja2.Environment)
CONSOLE_URL = web.AppKey("console.url", str)  # on the MAIN app: where the console listens
SESSION: web.RequestKey[OperatorSession | None] = web.RequestKey("console.session")
NEW_CSRF = web.RequestKey("console.new_csrf", str)  # an anonymous CSRF token to set as a cookie

CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
PUBLIC = {"/login", "/healthz", "/readyz", "/metrics"}  # reachable without an operator session


class ConsoleRefusal(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


async def seal_totp_seeds(engine) -> None:
    """Encrypt plain TOTP seeds (operators' and customers') once AIGATEWAY_SECRET_KEY is set; else say so."""
    from aigateway import crypto
    from aigateway.console.tables import operators
    from aigateway.portal.tables import portal_totp
    from aigateway.twofactor import seeds

    columns = [(operators, operators.c.id, operators.c.totp_secret),
               (portal_totp, portal_totp.c.customer_id, portal_totp.c.secret)]
    async with engine.begin() as conn:
        if not crypto.can_store():
            plain = sum([await seeds.plain_count(conn, seed) for _t, _k, seed in columns])
            if plain:
                log.warning("%d TOTP seed(s) are stored unencrypted: set %s (the same on every replica) "
                            "and restart to encrypt them", plain, crypto.ENV)
            return
        sealed = sum([await seeds.seal_plain_rows(conn, *c) for c in columns])
    if sealed:
        log.info("encrypted %d TOTP seed(s) stored before %s was set", sealed, crypto.ENV)


def setup(app: web.Application) -> None:
    async def seal(main: web.Application):
        try:
            await seal_totp_seeds(main[ENGINE])
        except (DBAPIError, OSError):  # never stops the start: plain seeds keep working
            log.warning("could not encrypt the stored TOTP seeds now; next start tries again", exc_info=True)
        yield

    app.cleanup_ctx.append(seal)
    settings = AdminSettings.model_validate(app[CONFIG].admin)
    if not settings.enabled:
        return

    async def listener(main: web.Application):
        console = create_console_app(main, settings)
        runner = web.AppRunner(console, access_log=None, handler_cancellation=False)
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port)
        try:
            await site.start()
        except OSError as exc:
            # The API keeps serving: customers must not lose service because the console's port
            # is taken. Said loudly; /readyz lives on the console, so a probe notices too.
            log.error("operator console NOT started: cannot listen on %s:%s (%s)", settings.host,
                      settings.port, exc.strerror or exc)
            await runner.cleanup()
            yield
            return
        port = runner.addresses[0][1] if runner.addresses else settings.port
        main[CONSOLE_URL] = f"http://{settings.host}:{port}"
        log.info("operator console on %s (admin listener; not on the API port)", main[CONSOLE_URL])
        yield
        await runner.cleanup()

    app.cleanup_ctx.append(listener)


def describe_change(before: str | None, after: str | None) -> list[str]:
    """An audit row's before/after JSON as "field: old → new" lines."""
    import orjson

    old = orjson.loads(before) if before else {}
    new = orjson.loads(after) if after else {}
    old, new = (old if isinstance(old, dict) else {"": old}), (new if isinstance(new, dict) else {"": new})

    def shown(value) -> str:  # JSON values as an operator reads them: none, a, b — never Python's repr
        if value is None:
            return "none"
        if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
            return ", ".join(map(str, value)) or "(empty)"
        if isinstance(value, (list, dict)):
            return orjson.dumps(value).decode()
        return str(value)

    return [f"{k}: {shown(old[k]) if k in old else '—'} → {shown(new[k]) if k in new else '—'}"
            for k in dict.fromkeys([*old, *new])]


def cookie_name(request: web.Request) -> str:
    return "__Host-gw_console" if _https(request) else "gw_console"


def _https(request: web.Request) -> bool:
    return request.secure or (request.app[SETTINGS].public_url or "").startswith("https://")


def create_console_app(main: web.Application, settings: AdminSettings) -> web.Application:
    from aigateway.console import views

    app = web.Application(middlewares=[console_middleware], client_max_size=1024**2)
    app[MAIN] = main
    app[SETTINGS] = settings
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.filters.update(tmt=lambda u: "—" if u is None else format_tmt(int(u)),
                       when=lambda v: formatting.when(v, "en") if v else "",
                       number=lambda v: formatting.number(v or 0, "en"))
    env.filters["change"] = describe_change
    app[JINJA] = env
    views.add_routes(app)
    app.router.add_static("/static", HERE / "static")
    app.on_response_prepare.append(_headers)

    async def housekeeping(_app):
        try:
            await purge_expired(main[ENGINE])
        except Exception:  # pragma: no cover - housekeeping never stops the console
            log.exception("console: purging expired sessions failed")

    app.on_startup.append(housekeeping)
    return app


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    set_page_headers(response.headers, CSP)
    response.headers.setdefault("Cache-Control", "no-store")


def engine_of(request: web.Request):
    return request.app[MAIN][ENGINE]


def session_of(request: web.Request) -> OperatorSession | None:
    return request.get(SESSION)


def actor_of(request: web.Request) -> str:
    session = request[SESSION]
    assert session is not None  # every page that acts is behind the log-in check of console_middleware
    return f"operator:{session.operator.email}"


def render(request: web.Request, template: str, *, status: int = 200, **context) -> web.Response:
    session = session_of(request)
    html = request.app[JINJA].get_template(template).render(
        session=session, csrf=session.csrf_token if session else _anon_csrf(request),
        path=request.path, **context)
    response = web.Response(text=html, status=status, content_type="text/html", charset="utf-8")
    if session is None and request.get(NEW_CSRF):
        response.set_cookie(_anon_cookie(request), request[NEW_CSRF], path="/", httponly=True,
                            samesite="Strict", secure=_https(request))
    return response


def _anon_cookie(request: web.Request) -> str:
    return "__Host-gw_console_csrf" if _https(request) else "gw_console_csrf"


def _anon_csrf(request: web.Request) -> str:
    """Double-submit token for the log-in and enrolment forms (no session yet)."""
    token = request.cookies.get(_anon_cookie(request), "")
    if len(token) < 32:
        token = request.get(NEW_CSRF) or secrets.token_urlsafe(32)
        request[NEW_CSRF] = token
    return token


def redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _public(path: str) -> bool:
    return path in PUBLIC or path.startswith(("/enrol/", "/static/"))


@web.middleware
async def console_middleware(request: web.Request, handler):
    try:
        session = request[SESSION] = await load_session(engine_of(request), request.cookies.get(cookie_name(request)))
        if request.method not in ("GET", "HEAD"):
            await _check_csrf(request)
        if session is None and not _public(request.path):
            from aigateway.console.views import login_form

            return await login_form(request, status=401, next_path=request.path if request.method == "GET" else "/")
        if (request.method not in ("GET", "HEAD") and session is not None
                and not session.operator.can_change and request.path != "/logout"):
            raise ConsoleRefusal(403, "Your role (viewer) can look but not change anything.")
        return await handler(request)
    except ConsoleRefusal as exc:
        return render(request, "error.html", status=exc.status, message=exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return render(request, "error.html", status=exc.status, message=exc.reason)
    except (TimeoutError, DBAPIError, OSError):
        # A dependency is down: say so and when to retry, never a 500 or a traceback.
        log.warning("console: %s %s failed: a dependency is unavailable", request.method, request.path, exc_info=True)
        response = render(request, "error.html", status=503,
                          message="The database (or another dependency) is not answering. Try again shortly.")
        response.headers["Retry-After"] = "5"
        return response


async def _check_csrf(request: web.Request) -> None:
    form = await request.post()
    sent = form.get("csrf")
    session = request[SESSION]
    expected = session.csrf_token if session is not None else request.cookies.get(_anon_cookie(request), "")
    if not isinstance(sent, str) or not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise ConsoleRefusal(403, "This form expired or did not come from this console. Reload and try again.")
