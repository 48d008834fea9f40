"""Voucher test helpers: batches made through the service, redemption through the portal's form."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import parse_qs, urlsplit

from aigateway.money import to_units
from aigateway.vouchers.service import create_batch
from tests.portal.conftest import PortalClient, browser, visitor  # noqa: F401  (fixtures)


def make_batch(server, amount: str, count: int, label: str,
               expires_at: datetime | None = None) -> tuple[int, list[str]]:
    async def make():
        async with server.engine.begin() as conn:
            return await create_batch(conn, amount=to_units(amount), count=count, label=label,
                                      expires_at=expires_at, actor="test-operator")

    return server.run(make())


def redeem(client: PortalClient, code: str) -> dict:
    """Post the Deposit tab's voucher form; returns the redirect's query ({'r': [...]} or {'e': [...]})."""
    r = client.form("/deposit", "/deposit/voucher", {"code": code})
    assert r.status_code == 303, r.status_code
    location = r.headers["Location"]
    assert location.startswith("/deposit/voucher?")
    return parse_qs(urlsplit(location).query)


def balance_units(server, customer_id: int) -> int:
    return server.sql("SELECT balance FROM customers WHERE id = :c", c=customer_id)[0][0]


def voucher_ledger(server, customer_id: int | None = None) -> list:
    query = "SELECT customer_id, amount, reference, memo FROM ledger_entries WHERE kind = 'voucher'"
    if customer_id is not None:
        return server.sql(query + " AND customer_id = :c", c=customer_id)
    return server.sql(query)


def logged_in(server, email: str) -> tuple[PortalClient, int]:
    """A portal visitor with a session for a new customer, made directly (no argon2 round: tests stay fast)."""
    import http.cookiejar
    from datetime import timedelta

    from aigateway.accounts.service import create_customer
    from aigateway.portal.sessions import create_session

    async def make():
        async with server.engine.begin() as conn:
            cid = await create_customer(conn, email)
        return cid, await create_session(server.engine, cid, timedelta(days=1))

    cid, token = server.run(make())
    client = PortalClient(server)
    client.jar.set_cookie(http.cookiejar.Cookie(0, "gw_session", token, None, False, "127.0.0.1", False, False, "/",
                                                True, False, None, False, None, None, {}))
    return client, cid
