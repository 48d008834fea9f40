"""The operator console in headless Chromium: log in with TOTP, credit a customer (seen in their
portal), disable them (their key refused), confirm a held price change, approve a deposit waiting
for review; every action in the audit log. Screenshots of every page, desktop and 390 px."""

from __future__ import annotations

import openai
import pytest
from playwright.sync_api import expect
from sqlalchemy import text

from aigateway.appkeys import DEPOSITS
from aigateway.money import to_units
from aigateway.portal.formatting import tmt_text
from aigateway.pricing.service import propose_price
from tests.conftest import gateway_config
from tests.console.conftest import console_url, make_operator
from tests.deposits.conftest import deposits_section
from tests.portal.conftest import PASSWORD, PortalClient, shot

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 860}
TX = "ab" * 32


def _problems(page) -> list[str]:
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("console", lambda m: m.type == "error" and "status of 4" not in m.text and problems.append(m.text))
    return problems


def _money(units: int) -> str:
    from aigateway.money import format_tmt

    return format_tmt(units)


def _fits(page) -> None:
    """Nothing wider than the phone's screen (tables scroll inside their own box)."""
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"] + 1


def test_operator_runs_the_business_from_the_browser(start_gateway, mock_upstream, sqlite_url, browser):
    deposits = {**deposits_section("http://127.0.0.1:9"), "run_watcher": False}
    gateway = start_gateway(gateway_config(mock_upstream.url, sqlite_url, deposits=deposits))
    admin = make_operator(gateway, "admin@example.com")
    # a customer signs up in the portal and makes a key; a deposit of theirs waits for review
    customer = PortalClient(gateway)
    cid = customer.signup("ada@example.com")
    _r, key = customer.create_key("laptop")
    address = gateway.run(gateway.app[DEPOSITS].address_for(cid))

    async def seed():
        async with gateway.engine.begin() as conn:
            address_id = (await conn.execute(text("SELECT id FROM deposit_addresses WHERE address = :a"),
                                             {"a": address})).scalar()
            await conn.execute(text(
                "INSERT INTO deposit_transactions (tx_id, address_id, customer_id, value, block_timestamp_ms, "
                "status, note, checks, seen_at, next_check_ms, failures) VALUES (:t, :a, :c, '20000000', 0, "
                "'needs_review', 'upstream answers disagree', 3, CURRENT_TIMESTAMP, 0, 4)"),
                {"t": TX, "a": address_id, "c": cid})
            return await propose_price(conn, "llama-3.1-70b", to_units("3.5"), to_units("14"), source="openrouter",
                                       note="10x jump: held by the guardrail")

    held_id = gateway.run(seed())
    # some traffic, so the overview's charts and tables have something to show
    gateway.credit(cid, "1", "test:first-top-up")
    gateway.wait_for(lambda: gateway.run(gateway.gateway.wallet.available(cid)) >= to_units("1"))  # 1 s refresh
    api = openai.OpenAI(api_key=key, base_url=gateway.base_url, max_retries=0)
    for _ in range(3):
        api.chat.completions.create(model="llama-3.1-70b", messages=[{"role": "user", "content": "hello"}])
    gateway.wait_for(lambda: len(gateway.usage(cid)) == 3)
    base = console_url(gateway)

    for viewport, tag in ((DESKTOP, "desktop"), (PHONE, "phone")):
        ctx = browser.new_context(viewport=viewport, base_url=base)
        page = ctx.new_page()
        problems = _problems(page)
        page.goto("/")
        expect(page.get_by_role("heading", name="Operator log-in")).to_be_visible()
        shot(page, f"console-01-login-{tag}")
        page.get_by_label("Email").fill(admin.email)
        page.get_by_label("Password").fill(admin.password)
        # each TOTP step is accepted once: the phone pass uses the next step's code (clock-skew window)
        page.get_by_label("Authenticator code").fill(admin.code(0 if tag == "desktop" else 1))
        with page.expect_navigation():
            page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("heading", name="Overview · last 30 days")).to_be_visible()
        if tag == "desktop":
            expect(page.get_by_text("deposit(s) wait for review")).to_be_visible()
            expect(page.get_by_text("price change(s) held by the guardrail")).to_be_visible()
        shot(page, f"console-02-overview-{tag}")
        if tag == "phone":
            _fits(page)
        for path, name in (("/customers", "customers"), (f"/customers/{cid}", "customer"), ("/prices", "prices"),
                           ("/deposits", "deposits"), ("/audit", "audit")):
            if tag == "desktop" and path != "/customers":
                continue  # the desktop pass visits them through its actions below
            page.goto(path)
            shot(page, f"console-03-{name}-{tag}")
            if tag == "phone":
                _fits(page)
        if tag == "phone":
            assert problems == []
            ctx.close()
            break

        # --- search and credit the customer
        page.get_by_label("Email, id, deposit address or key prefix").fill(address)
        with page.expect_navigation():
            page.get_by_role("button", name="Search").click()
        with page.expect_navigation():
            page.get_by_role("link", name="ada@example.com").click()
        page.get_by_label("Amount, TMT").fill("12.5")
        page.get_by_label("Reason (kept in the ledger and the audit log)").fill("bank transfer #881")
        with page.expect_navigation():
            page.get_by_role("button", name="Post to the ledger").click()
        expect(page.get_by_test_id("balance")).to_have_text(_money(gateway.balance(cid)))
        assert gateway.balance(cid) == to_units("13.5") - sum(u.cost for u in gateway.usage(cid))
        shot(page, "console-04-customer-credited-desktop")
        portal = browser.new_context(viewport=DESKTOP, base_url=gateway.url).new_page()
        portal.goto("/login")
        portal.get_by_label("Email").fill("ada@example.com")
        portal.get_by_label("Password").fill(PASSWORD)
        with portal.expect_navigation():
            portal.get_by_role("button", name="Log in").click()
        gateway.wait_for(lambda portal=portal: (portal.reload() or True) and
                         portal.get_by_test_id("balance").inner_text() == tmt_text(gateway.balance(cid)),
                         timeout=5)

        # --- disable: the key is refused within about a second, the portal session ends
        client = openai.OpenAI(api_key=key, base_url=gateway.base_url, max_retries=0)
        client.models.list()
        page.get_by_label("Reason", exact=True).fill("chargeback")
        with page.expect_navigation():
            page.get_by_role("button", name="Disable account").click()
        expect(page.get_by_test_id("status")).to_have_text("disabled")

        def refused(client: openai.OpenAI = client) -> bool:
            try:
                client.models.list()
            except openai.AuthenticationError:
                return True
            return False

        gateway.wait_for(refused, timeout=3)
        portal.reload()
        assert "/login" in portal.url

        # --- confirm the held price change
        page.goto("/prices")
        held = page.get_by_test_id("held")
        expect(held.get_by_text("llama-3.1-70b")).to_be_visible()
        shot(page, "console-05-prices-held-desktop")
        with page.expect_navigation():
            held.get_by_role("button", name="Confirm").click()
        expect(page.get_by_text("Price change confirmed.")).to_be_visible()
        assert gateway.sql("SELECT status FROM price_versions WHERE id = :i", i=held_id)[0][0] == "applied"

        # --- approve the deposit waiting for review
        page.goto("/deposits?status=needs_review")
        shot(page, "console-06-deposits-review-desktop")
        page.get_by_test_id("deposits").get_by_label("Reason").fill("checked on tronscan")
        with page.expect_navigation():
            page.get_by_role("button", name="Approve").click()
        expect(page.get_by_text("Approved: credited on the watcher's next check.")).to_be_visible()
        assert gateway.sql("SELECT status FROM deposit_transactions WHERE tx_id = :t", t=TX)[0][0] == "pending"

        # --- each action is in the audit log
        page.goto("/audit")
        audit = page.get_by_test_id("audit")
        for action in ("customer.credit", "customer.disable", "price.confirm", "deposit.approve", "operator.login"):
            expect(audit.get_by_text(action, exact=True).first).to_be_visible()
        expect(audit.get_by_text("bank transfer #881")).to_be_visible()
        shot(page, "console-07-audit-desktop")
        assert problems == []
        ctx.close()
