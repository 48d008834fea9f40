"""Portal test helpers: an HTTP client that acts like a browser's forms, fake deposits, Chromium."""

from __future__ import annotations

import http.cookiejar
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path

import pytest

from aigateway.app import create_app
from aigateway.appkeys import DEPOSITS
from tests.conftest import gateway_config, service_missing
from tests.support.gateway import GatewayServer

SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
PASSWORD = "correct horse battery staple"

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1)


@dataclass
class Response:
    status_code: int
    headers: Message  # case-insensitive; get_all() for repeated headers
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # hand 3xx back to the test


class PortalClient:
    """One visitor with its own cookie jar; forms are posted with the page's CSRF token.
    Redirects are not followed. (Standard library only: no extra test dependency.)"""

    def __init__(self, server: GatewayServer, headers: dict | None = None) -> None:
        self.server = server
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect())
        self.headers = headers or {}

    def request(self, method: str, path: str, data: dict | None = None, headers: dict | None = None) -> Response:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(self.server.url + path, data=body, method=method,
                                     headers={**self.headers, **(headers or {})})
        try:
            with self.opener.open(req, timeout=60) as r:
                return Response(r.status, r.headers, r.read())
        except urllib.error.HTTPError as exc:
            return Response(exc.code, exc.headers, exc.read())

    def get(self, path: str, headers: dict | None = None) -> Response:
        return self.request("GET", path, headers=headers)

    def post(self, path: str, data: dict, headers: dict | None = None) -> Response:
        return self.request("POST", path, data, headers)

    def form(self, page: str, action: str, data: dict, headers: dict | None = None) -> Response:
        """GET `page`, then POST `data` to `action` with that page's CSRF token (as a browser would)."""
        token = csrf_of(self.get(page).text)
        return self.post(action, {"csrf": token, **data}, headers)

    def cookie(self, name: str) -> str | None:
        return next((c.value for c in self.jar if c.name == name), None)

    def register(self, email: str, password: str = PASSWORD, confirm: str | None = None) -> Response:
        return self.form("/register", "/register",
                         {"email": email, "password": password, "confirm": password if confirm is None else confirm})

    def login(self, email: str, password: str = PASSWORD) -> Response:
        return self.form("/login", "/login", {"email": email, "password": password})

    def signup(self, email: str, password: str = PASSWORD) -> int:
        """Register and log in; returns the customer id."""
        assert self.register(email, password).status_code == 303
        assert self.login(email, password).headers["location"] == "/dashboard"
        return self.server.sql("SELECT id FROM customers WHERE email = :e", e=email)[0][0]

    def create_key(self, name: str) -> tuple[Response, str | None]:
        r = self.form("/keys", "/keys", {"name": name})
        if r.status_code == 303:  # post/redirect/get: the secret is on the page redirected to
            assert r.headers["Location"] == "/keys"
            r = self.get("/keys")
        match = re.search(r'value="(gw_[A-Za-z0-9_-]+)"', r.text)
        return r, match.group(1) if match else None

    def close(self) -> None:
        self.jar.clear()


@pytest.fixture
def visitor(gateway):
    clients: list[PortalClient] = []

    def make(headers: dict | None = None) -> PortalClient:
        client = PortalClient(gateway, headers)
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.close()


def wait_usage(server: GatewayServer, customer_id: int, count: int) -> list:
    """The customer's usage rows once `count` are written by the recorder's own group commit.

    (Polls instead of calling server.flush(): a flush from the test thread can run
    concurrently with the recorder's background flush of the same batch.)"""
    query = "SELECT id, model, cost, input_tokens, output_tokens FROM usage_records WHERE customer_id = :c"
    return server.wait_for(lambda: (rows := server.sql(query, c=customer_id)) and len(rows) >= count and rows)


class FakeDeposits:
    """A stand-in for the deposits concern (appkeys.DepositsPort)."""

    def __init__(self) -> None:
        self.watched: list[int] = []
        self.credited: list[dict] = []
        self.pending: list[dict] = []

    async def address_for(self, customer_id: int) -> str:
        return f"TFake{customer_id:04d}Address5xQ9mVb7NzR2kLpW3"

    async def overview(self, customer_id: int) -> dict:
        return {"address": await self.address_for(customer_id), "network": "TRC-20", "rate": "3.50",
                "min_deposit": "5", "pending": list(self.pending), "credited": list(self.credited),
                "ignored": [{"tx_id": "0badc0ffee", "amount_usdt": "0.50", "reason": "below the minimum deposit",
                             "seen_at": "2026-01-04T08:00:00+00:00"}]}

    def watch_closely(self, customer_id: int) -> None:
        self.watched.append(customer_id)


class DepositsGateway(GatewayServer):
    """A gateway whose app has a (fake) deposits port plugged in before start-up."""

    def __init__(self, config, deposits) -> None:
        super().__init__(config)

        def make():
            app = create_app(config)
            app[DEPOSITS] = deposits
            return app

        self._make_app = make


@pytest.fixture
def deposits_gateway(mock_upstream, sqlite_url):
    fake = FakeDeposits()
    fake.credited.append({"tx_id": "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9",
                          "amount_usdt": "20.00", "amount_tmt": "70.00",
                          "credited_at": "2026-01-05T09:30:00+00:00"})  # ISO text, as the real port gives
    fake.pending.append({"tx_id": "ffee0011223344556677889900aabbccddeeff00112233445566778899aabbcc",
                         "amount_usdt": "15.50", "seen_at": datetime(2026, 1, 6, 10, 0, tzinfo=UTC)})
    server = DepositsGateway(gateway_config(mock_upstream.url, sqlite_url), fake).start()
    yield server, fake
    server.stop()


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        service_missing("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield b
        b.close()


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
