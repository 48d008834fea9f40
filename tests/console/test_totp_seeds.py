"""TOTP seeds at rest: encrypted with AIGATEWAY_SECRET_KEY for operators and customers (one shared
function, twofactor.seeds); plain seeds stored before the key was set keep working and are encrypted
at the next start; without the key seeds stay plain (and a warning says so); a sealed seed without its
key refuses the code, never errors, never logs the seed."""

from __future__ import annotations

import logging
import re
import time

import pyotp
from sqlalchemy import insert

from aigateway.portal import twofactor as portal_2fa
from aigateway.portal.tables import portal_totp
from aigateway.store.metadata import utcnow
from tests.conftest import gateway_config
from tests.console.conftest import ConsoleClient, make_operator

KEY = "seed-test-secret-key-0123456789abcdef"


def _stored_operator_seed(server, email: str) -> str:
    return server.sql("SELECT totp_secret FROM console_operators WHERE email = :e", e=email)[0][0]


def test_plain_seeds_keep_working_and_are_sealed_at_start(start_gateway, mock_upstream, db_url, monkeypatch,
                                                          caplog):
    """On SQLite and on PostgreSQL (the start-up pass is SQL both must run)."""
    monkeypatch.delenv("AIGATEWAY_SECRET_KEY", raising=False)
    caplog.set_level(logging.INFO)
    first = start_gateway(gateway_config(mock_upstream.url, db_url))
    op = make_operator(first, "plain@example.com")
    assert _stored_operator_seed(first, op.email) == op.secret  # no key: stored as is
    c = ConsoleClient(first)
    assert c.operator_login(op).status_code == 303
    overview = c.get("/").text
    assert 'data-testid="plain-seeds"><span class="badge bad">1</span> TOTP seed(s) stored unencrypted' in overview
    cid, _key = first.customer("cust2fa@example.com")
    customer_seed = pyotp.random_base32()

    async def customer_factor():
        async with first.engine.begin() as conn:
            await conn.execute(insert(portal_totp).values(customer_id=cid, secret=customer_seed, last_step=0,
                                                          enabled_at=utcnow(), created_at=utcnow()))

    first.run(customer_factor())
    first.stop()
    start_gateway(gateway_config(mock_upstream.url, db_url)).stop()  # a restart still without the key
    assert "2 TOTP seed(s) are stored unencrypted: set AIGATEWAY_SECRET_KEY" in caplog.text

    monkeypatch.setenv("AIGATEWAY_SECRET_KEY", KEY)
    caplog.clear()
    second = start_gateway(gateway_config(mock_upstream.url, db_url))
    assert "encrypted 2 TOTP seed(s)" in caplog.text
    stored_op = _stored_operator_seed(second, op.email)
    stored_customer = second.sql("SELECT secret FROM portal_totp WHERE customer_id = :c", c=cid)[0][0]
    for stored, seed in ((stored_op, op.secret), (stored_customer, customer_seed)):
        assert stored.startswith("v1:") and seed not in stored
    # the same authenticator apps keep working
    assert ConsoleClient(second).operator_login(op, offset_steps=1).status_code == 303  # (this step's code: used)

    async def customer_code_ok(code: str) -> bool:
        async with second.engine.begin() as conn:
            return await portal_2fa.verify(conn, cid, code)

    assert second.run(customer_code_ok(pyotp.TOTP(customer_seed).now()))
    # a new operator's seed is encrypted from the start; the enrolment page still shows it (once, to scan)
    new = make_operator(second, "sealed@example.com")
    assert _stored_operator_seed(second, new.email).startswith("v1:")
    assert ConsoleClient(second).operator_login(new).status_code == 303
    # the key removed (or different): codes are refused (401, the log-in form), no error, the seed never logged
    monkeypatch.setenv("AIGATEWAY_SECRET_KEY", "another-key-entirely-0123456789")
    caplog.clear()
    r = ConsoleClient(second).operator_login(new, offset_steps=1)
    assert r.status_code == 401 and "Wrong email, password or code." in r.text
    assert "TOTP seed cannot be read" in caplog.text and new.secret not in caplog.text
    assert not second.run(customer_code_ok(pyotp.TOTP(customer_seed).at(time.time() + 30)))


def test_portal_enrolment_stores_the_seed_encrypted(gateway, console, monkeypatch):
    monkeypatch.setenv("AIGATEWAY_SECRET_KEY", KEY)
    cid, _key = gateway.customer("enrolling@example.com")

    async def enrol():
        async with gateway.engine.begin() as conn:
            await portal_2fa.start_enrolment(conn, cid)
            shown = (await portal_2fa.state(conn, cid)).secret
            return shown, await portal_2fa.confirm_enrolment(conn, cid, pyotp.TOTP(shown).now())

    shown, codes = gateway.run(enrol())
    assert re.fullmatch(r"[A-Z2-7]{32}", shown) and codes
    stored = gateway.sql("SELECT secret FROM portal_totp WHERE customer_id = :c", c=cid)[0][0]
    assert stored.startswith("v1:") and shown not in stored
