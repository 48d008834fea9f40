"""End to end in headless Chromium: what a customer does, from sign-up to log-out.

Screenshots of every page (desktop and phone width) land in artifacts/screenshots/.
"""

from __future__ import annotations

import re

import openai
import pytest
from playwright.sync_api import expect

from aigateway.portal.formatting import tmt_text
from tests.portal.conftest import PASSWORD, shot, wait_usage

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 860}


def go(page, name: str) -> None:
    """Click a tab and wait for its page."""
    with page.expect_navigation():
        page.get_by_role("navigation", name="Sections").get_by_role("link", name=name, exact=True).click()


def click_and_wait(page, locator) -> None:
    with page.expect_navigation():
        locator.click()


def _watch(page) -> list[str]:
    """Collect script errors and CSP violations (both would mean a broken page)."""
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))

    def console(msg) -> None:
        # A form re-rendered with its error has a 4xx status, which Chromium reports; that is intended.
        if msg.type == "error" and not re.search(r"status of 4(00|01|09|29) ", msg.text):
            problems.append(f"console: {msg.text}")

    page.on("console", console)
    return problems


def test_customer_journey(gateway, browser):
    ctx = browser.new_context(viewport=DESKTOP, base_url=gateway.url)
    ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=gateway.url)
    page = ctx.new_page()
    problems = _watch(page)
    dialogs: list[str] = []

    # --- register
    page.goto("/register")
    shot(page, "01-register")
    page.get_by_label("Email").fill("ada@example.com")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Confirm password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url("**/login?m=created")
    expect(page.get_by_text("Account created! Please login.")).to_be_visible()
    shot(page, "02-login-after-register")

    # the operator tops the new customer up (deposits are another concern)
    cid = gateway.sql("SELECT id FROM customers WHERE email = 'ada@example.com'")[0][0]
    gateway.credit(cid, "10", "test:welcome-credit")

    # --- log in
    page.get_by_label("Email").fill("ada@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/dashboard")
    assert page.get_by_test_id("balance").inner_text() == "10.00"
    expect(page.get_by_text("No usage in the last 30 days.")).to_be_visible()
    expect(page.get_by_text("Balance is deducted per API request based on token usage. "
                            "Top up via USDT (TRC-20) on the Deposit tab.")).to_be_visible()
    shot(page, "03-dashboard-empty")

    # --- create a key, copy it
    go(page, "API Keys")
    shot(page, "04-keys-empty")
    page.get_by_label("Name").fill("my-app")
    click_and_wait(page, page.get_by_role("button", name="Create key"))
    expect(page.get_by_text("Key created! Copy it now — it won't be shown again.")).to_be_visible()
    secret = page.get_by_test_id("new-key").input_value()
    assert secret.startswith("gw_")
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("button", name="Copied!")).to_be_visible()  # the clipboard write is async
    assert page.evaluate("navigator.clipboard.readText()") == secret
    shot(page, "05-key-created")

    # a hostile key name is shown as text, never run
    def dismiss(dialog):
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    hostile = '<img src=x onerror=alert(1)><script>alert("xss")</script>'
    page.get_by_label("Name").fill(hostile)
    click_and_wait(page, page.get_by_role("button", name="Create key"))
    assert page.locator("td.key-name", has_text=hostile).count() == 1
    assert dialogs == []

    # --- call the API with the key, through the official SDK
    client = openai.OpenAI(api_key=secret, base_url=gateway.base_url, max_retries=0)
    reply = client.chat.completions.create(model="llama-3.1-70b", messages=[{"role": "user", "content": "Hello!"}])
    assert reply.choices[0].message.content
    chunks = list(client.chat.completions.create(model="llama-3.1-70b", stream=True,
                                                 messages=[{"role": "user", "content": "Explain quantum physics"}]))
    assert chunks
    client.embeddings.create(model="nomic-embed-text", input=["First text", "Second text"])
    records = wait_usage(gateway, cid, 3)
    assert len(records) == 3
    cost = sum(r.cost for r in records)
    assert cost > 0

    # --- the dashboard shows the usage and the lower balance
    go(page, "Dashboard")
    assert page.get_by_test_id("balance").inner_text() == tmt_text(10_000_000 - cost)
    chart = page.locator("svg.chart-wide")
    expect(chart).to_be_visible()
    assert chart.locator("rect[fill]").count() >= 2  # two models on today's bar
    legend = page.locator(".legend").inner_text()
    assert "llama-3.1-70b" in legend and "nomic-embed-text" in legend
    by_model = page.locator("table").first.inner_text()
    assert "llama-3.1-70b" in by_model
    shot(page, "06-dashboard-usage")
    click_and_wait(page, page.get_by_role("link", name="Tokens"))
    assert "Tokens per day" in page.locator("svg.chart title").first.text_content()
    shot(page, "07-dashboard-tokens")

    # --- the transaction history groups the day's charges; drill down to the requests
    go(page, "Transactions")
    rows = page.locator("table.tx-table tbody tr")
    assert rows.count() == 2
    assert "API usage" in rows.nth(0).inner_text() and tmt_text(-cost, sign=True) in rows.nth(0).inner_text()
    assert "Credit" in rows.nth(1).inner_text() and "+10.00" in rows.nth(1).inner_text()
    shot(page, "08-transactions")
    click_and_wait(page, page.get_by_role("link", name="3 requests"))
    assert page.locator("table tbody tr").count() == 3
    expect(page.get_by_text("nomic-embed-text")).to_be_visible()
    shot(page, "09-transactions-day")

    # --- the other tabs
    go(page, "Deposit")
    expect(page.get_by_text("Deposits are not configured yet")).to_be_visible()
    shot(page, "10-deposit-not-configured")
    go(page, "Models")
    expect(page.get_by_text("Prices are per 1 million tokens and update automatically.")).to_be_visible()
    shot(page, "11-models")
    go(page, "Docs")
    assert page.get_by_test_id("base-url").input_value() == gateway.url + "/v1"
    page.get_by_role("tab", name="Python").first.click()
    expect(page.get_by_text(f'base_url="{gateway.url}/v1"').first).to_be_visible()
    shot(page, "12-docs")

    # --- phone width
    page.set_viewport_size(PHONE)
    for path, name in [("/dashboard", "dashboard"), ("/keys", "keys"), ("/transactions", "transactions"),
                       ("/models", "models"), ("/docs", "docs"), ("/deposit", "deposit")]:
        page.goto(path)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"{path} scrolls sideways on a phone ({width}px)"
        shot(page, f"phone-{name}")
    page.set_viewport_size(DESKTOP)

    # --- revoke the key (with confirmation); the API refuses it at once
    page.goto("/keys")
    confirmations: list[str] = []

    def accept(dialog):
        confirmations.append(dialog.message)
        dialog.accept()

    page.remove_listener("dialog", dismiss)
    page.once("dialog", accept)
    page.locator("tr", has_text="my-app").get_by_role("button", name=re.compile("Revoke")).click()
    page.wait_for_url("**/keys?m=revoked")
    assert confirmations and "my-app" in confirmations[0]
    expect(page.get_by_text("Key revoked.")).to_be_visible()
    assert page.locator("tr.revoked", has_text="my-app").count() == 1
    shot(page, "13-key-revoked")
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="llama-3.1-70b", messages=[{"role": "user", "content": "Hi"}])

    # --- log out: the session is gone
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/login?m=bye")
    expect(page.get_by_text("You have been logged out.")).to_be_visible()
    page.goto("/dashboard")
    assert "/login" in page.url
    assert problems == []
    ctx.close()


def test_deposit_tab_configured(deposits_gateway, browser):
    server, fake = deposits_gateway
    from tests.portal.conftest import PortalClient

    cid = PortalClient(server).signup("dep@example.com")
    ctx = browser.new_context(viewport=DESKTOP, base_url=server.url)
    page = ctx.new_page()
    problems = _watch(page)
    page.goto("/login")
    page.get_by_label("Email").fill("dep@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/dashboard")
    go(page, "Deposit")
    address = page.get_by_test_id("deposit-address").input_value()
    assert address == f"TFake{cid:04d}Address5xQ9mVb7NzR2kLpW3"
    assert page.locator(".qr-box svg path").count() >= 1
    expect(page.get_by_text("Send USDT on the TRC-20 network to this address. Your TMT balance will be credited "
                            "automatically within 1-2 minutes after confirmation.")).to_be_visible()
    expect(page.get_by_text("Only send USDT (TRC-20) to this address. Sending other tokens may result in "
                            "permanent loss.")).to_be_visible()
    assert "3.50" in page.locator(".rate").inner_text()
    expect(page.get_by_text("Pending", exact=True)).to_be_visible()
    expect(page.get_by_text("Credited", exact=True)).to_be_visible()
    assert cid in fake.watched
    shot(page, "14-deposit")
    page.set_viewport_size(PHONE)
    page.reload()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    shot(page, "phone-deposit-configured")
    assert problems == []
    ctx.close()


def test_public_pages_and_sign_in_at_phone_width(gateway, browser):
    ctx = browser.new_context(viewport=PHONE, base_url=gateway.url)
    page = ctx.new_page()
    problems = _watch(page)
    for path, name in [("/login", "login"), ("/register", "register"), ("/docs", "docs-public"),
                       ("/models", "models-public")]:
        page.goto(path)
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        shot(page, f"phone-{name}")
    page.goto("/register")
    page.get_by_label("Email").fill("weak@example.com")
    page.get_by_label("Password", exact=True).fill("short")
    page.get_by_label("Confirm password").fill("short")
    click_and_wait(page, page.get_by_role("button", name="Create account"))
    assert page.get_by_role("alert").inner_text().startswith("Password is too weak")
    shot(page, "phone-register-weak-password")
    assert problems == []
    ctx.close()
