"""Recoverable accounts (issue 13): password reset and e-mail verification through a real
SMTP server (a local aiosmtpd sink); links single-use, expiring, stored hashed; the forgot
form tells no one who has an account; without [smtp] the page sends people to the operator.
The browser walk that follows the e-mailed links in headless Chromium in each language is
tests/portal/test_browser_walk.py."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from datetime import UTC, datetime
from email import message_from_bytes, policy

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import update

from aigateway.portal.mail import MAILER
from aigateway.portal.tables import portal_tokens
from tests.conftest import gateway_config
from tests.portal.conftest import PASSWORD, PortalClient
from tests.support.servers import free_port

NEW_PASSWORD = "a brand new sentence for this test"
LINK = re.compile(r"http://127\.0\.0\.1:\d+/(reset|verify)\?t=([A-Za-z0-9_-]+)")


class Sink:
    """The SMTP server's handler: keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        with self.lock:
            self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"

    def to(self, address: str) -> list:
        with self.lock:
            return [m for m in self.messages if m["To"] == address]

    def wait(self, address: str, count: int = 1, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.to(address)
            if len(found) >= count:
                return found[count - 1]
            time.sleep(0.05)
        raise AssertionError(f"no message #{count} to {address}: {[m['To'] for m in self.messages]}")


def link_of(message, kind: str) -> tuple[str, str]:
    match = LINK.search(message.get_content())
    assert match and match.group(1) == kind, message.get_content()
    return match.group(0), match.group(2)


@pytest.fixture
def sink():
    handler = Sink()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield handler, controller.port
    controller.stop()


@pytest.fixture
def mail_gateway(start_gateway, mock_upstream, sqlite_url, sink):
    handler, port = sink
    config = gateway_config(mock_upstream.url, sqlite_url, smtp={
        "host": "127.0.0.1", "port": port, "from": "AI Gateway <no-reply@example.com>", "starttls": False})
    return start_gateway(config), handler


def test_password_reset_link_is_single_use_hashed_and_ends_sessions(mail_gateway):
    server, mail = mail_gateway
    owner, other = PortalClient(server), PortalClient(server)
    email = "forgetful@example.com"
    assert owner.register(email).headers["Location"] == "/login?m=created-mail"
    assert owner.login(email).headers["Location"] == "/dashboard"

    # Unknown and known addresses get the same page; only the known one gets mail.
    pages = [other.form("/forgot", "/forgot", {"email": e}) for e in ("nobody@example.com", email)]
    assert [p.status_code for p in pages] == [200, 200]
    assert pages[0].text.replace("nobody@example.com", "X") == pages[1].text.replace(email, "X")
    message = mail.wait(email, 2)  # the first was the sign-up's confirmation
    assert message["Subject"] == "Reset your AI Gateway password"
    url, token = link_of(message, "reset")
    assert mail.to("nobody@example.com") == []
    stored = server.sql("SELECT token_hash, purpose FROM portal_tokens WHERE purpose = 'reset'")
    assert stored == [(hashlib.sha256(token.encode()).hexdigest(), "reset")]  # only the hash is kept

    assert url == f"{server.url}/reset?t={token}"
    r = other.get(f"/reset?t={token}")
    assert r.status_code == 200 and email in r.text
    page = f"/reset?t={token}"
    weak = other.form(page, "/reset", {"t": token, "password": "password1", "confirm": "password1"})
    assert weak.status_code == 400
    mismatch = other.form(page, "/reset", {"t": token, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD + "x"})
    assert mismatch.status_code == 400
    done = other.form(page, "/reset", {"t": token, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert done.status_code == 303 and done.headers["Location"] == "/login?m=reset"

    # single use; the owner's old session is over; the new password works, the old does not
    assert other.get(page).status_code == 410
    assert other.post("/reset", {"csrf": other.cookie("gw_csrf"), "t": token, "password": PASSWORD,
                                 "confirm": PASSWORD}).status_code == 410
    assert owner.get("/dashboard").headers["Location"].startswith("/login")
    assert PortalClient(server).login(email).status_code == 401
    assert PortalClient(server).login(email, NEW_PASSWORD).headers["Location"] == "/dashboard"
    # following the link proved the mailbox
    assert server.sql("SELECT email FROM portal_verified_emails") == [(email,)]


def test_reset_links_expire_and_only_the_newest_works(mail_gateway):
    server, mail = mail_gateway
    v = PortalClient(server)
    email = "twice@example.com"
    v.register(email)
    for _ in range(2):
        v.form("/forgot", "/forgot", {"email": email})
    first, second = (link_of(mail.wait(email, n), "reset")[1] for n in (2, 3))
    assert v.get(f"/reset?t={first}").status_code == 410  # replaced by the newer link
    assert v.get(f"/reset?t={second}").status_code == 200
    async def age():  # the hour passes
        async with server.engine.begin() as conn:
            await conn.execute(update(portal_tokens).values(expires_at=datetime(2000, 1, 1, tzinfo=UTC)))

    server.run(age())
    assert v.get(f"/reset?t={second}").status_code == 410
    assert v.form("/forgot", "/reset", {"t": second, "password": NEW_PASSWORD,
                                         "confirm": NEW_PASSWORD}).status_code == 410
    assert v.get("/reset?t=not-a-token").status_code == 410


def test_sending_is_limited_per_address(mail_gateway):
    server, mail = mail_gateway
    v = PortalClient(server)
    email = "flood@example.com"
    v.register(email)  # sends the confirmation
    answers = [v.form("/forgot", "/forgot", {"email": email}).status_code for _ in range(6)]
    assert answers == [200] * 6  # the same answer every time
    server.run(server.app[MAILER].drain())  # every message queued so far is delivered
    assert len(mail.to(email)) == 4  # the confirmation + 3 resets: the rest were held back


def test_verification_link_confirms_the_address_once(mail_gateway):
    server, mail = mail_gateway
    v = PortalClient(server)
    email = "confirm-me@example.com"
    v.register(email)
    message = mail.wait(email)
    assert message["Subject"] == "Confirm your e-mail address for AI Gateway"
    _, token = link_of(message, "verify")
    v.login(email)
    assert "Please confirm your e-mail address" in v.get("/dashboard").text
    r = v.get(f"/verify?t={token}")  # a mail scanner fetching the link spends nothing
    assert r.status_code == 200 and server.sql("SELECT count(*) FROM portal_verified_emails") == [(0,)]
    assert v.form(f"/verify?t={token}", "/verify", {"t": token}).status_code == 200
    assert server.sql("SELECT email FROM portal_verified_emails") == [(email,)]
    assert "Please confirm your e-mail address" not in v.get("/dashboard").text
    assert v.get(f"/verify?t={token}").status_code == 410
    # asking again sends a new link
    assert v.form("/dashboard", "/verify/send", {}).headers["Location"] == "/dashboard?m=verify-sent"
    link_of(mail.wait(email, 2), "verify")


def test_without_smtp_the_operator_resets_passwords(visitor, gateway):
    v = visitor()
    page = v.get("/forgot")
    assert page.status_code == 200 and "not set up" in page.text and "operator" in page.text
    assert 'action="/forgot"' not in page.text  # no form that would pretend to send
    assert v.register("plain@example.com").headers["Location"] == "/login?m=created"
    assert 'href="/forgot"' in v.get("/login").text
