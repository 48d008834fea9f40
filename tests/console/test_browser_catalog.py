"""The new console actions in headless Chromium: a model that follows a price source with its own
markup, deleting a model (asked first) and refusing to delete a provider still routed to, and a
key's limits set from the customer page; each in the audit log. Screenshots desktop and 390 px."""

from __future__ import annotations

import openai
import pytest
from playwright.sync_api import expect

from tests.console.conftest import browser_log_in, console_url, make_operator, serves
from tests.console.test_model_pricing import _config
from tests.portal.conftest import shot
from tests.pricing.conftest import FakeSource

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 860}


def _fits(page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"] + 1


def test_price_source_delete_and_key_limits_in_the_browser(start_gateway, mock_upstream, sqlite_url, browser):
    source = FakeSource()
    try:
        gateway = start_gateway(_config(mock_upstream.url, sqlite_url, source.url, fetch=True))
        admin = make_operator(gateway, "admin@example.com")
        cid, key = gateway.customer("buyer@example.com")
        kid = gateway.sql("SELECT id FROM api_keys WHERE customer_id = :c", c=cid)[0][0]
        ctx = browser.new_context(viewport=DESKTOP, base_url=console_url(gateway))
        page = ctx.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        browser_log_in(page, admin)

        # a provider and a model that follows the price source with +25 %
        page.goto("/providers")
        page.locator("#p-name").fill("extra")
        page.locator("#p-url").fill(mock_upstream.url + "/v1")
        with page.expect_navigation():
            page.get_by_role("button", name="Save provider").click()
        page.locator("#m-name").fill("followed")
        page.locator("#m-routes").fill("extra mock-chat")
        page.get_by_label("Price source", exact=True).select_option("feed")
        page.get_by_label("Model id in the source").fill("vendor/chat")
        page.get_by_label("Markup on the source price", exact=False).fill("25%")
        with page.expect_navigation():
            page.get_by_role("button", name="Save model").click()
        expect(page.get_by_text("Its price comes from the source's next fetch")).to_be_visible()

        client = openai.OpenAI(api_key=key, base_url=gateway.base_url, max_retries=0)

        gateway.wait_for(lambda: serves(client, "followed"), timeout=15)
        page.goto("/providers")
        # 2.5 USD x 3.50 x 1.25 = 10.9375 TMT per 1M input tokens
        row = page.get_by_test_id("models").locator("tr", has_text="followed")
        expect(row).to_contain_text("10.937500")
        expect(page.get_by_test_id("follows-followed")).to_have_text("follows feed (vendor/chat), markup 0.25")
        page.goto("/providers?model=followed")
        expect(page.get_by_label("Price source", exact=True)).to_have_value("feed")
        shot(page, "console-09-model-price-source-desktop")
        page.set_viewport_size(PHONE)
        shot(page, "console-09-model-price-source-phone")
        _fits(page)
        page.set_viewport_size(DESKTOP)

        # the provider cannot go while the model routes to it; the model can, after the question
        page.goto("/providers")
        page.get_by_test_id("delete-provider-extra").click()
        expect(page.get_by_test_id("still-used")).to_contain_text("Models still route to extra: followed.")
        expect(page.get_by_role("button", name="Delete provider extra")).to_have_count(0)
        shot(page, "console-10-delete-refused-desktop")
        page.set_viewport_size(PHONE)
        shot(page, "console-10-delete-refused-phone")
        _fits(page)
        page.set_viewport_size(DESKTOP)
        page.goto("/providers")
        page.get_by_test_id("delete-model-followed").click()
        expect(page.get_by_role("heading", name="Delete model followed?")).to_be_visible()
        shot(page, "console-10-delete-confirm-desktop")
        page.set_viewport_size(PHONE)
        shot(page, "console-10-delete-confirm-phone")
        _fits(page)
        page.set_viewport_size(DESKTOP)
        with page.expect_navigation():
            page.get_by_role("button", name="Delete model followed").click()
        expect(page.get_by_text("Model deleted.")).to_be_visible()
        expect(page.get_by_test_id("models")).not_to_contain_text("followed")
        gateway.wait_for(lambda: not serves(client, "followed"), timeout=10)
        page.get_by_test_id("delete-provider-extra").click()
        with page.expect_navigation():
            page.get_by_role("button", name="Delete provider extra").click()
        expect(page.get_by_text("Provider deleted.")).to_be_visible()

        # the customer's key: limits from the customer page
        page.goto(f"/customers/{cid}")
        page.get_by_test_id(f"limits-{kid}").click()
        page.get_by_label("Spend cap, TMT").fill("3")
        page.get_by_label("per", exact=True).select_option("day")
        page.get_by_label("Requests per minute").fill("60")
        page.get_by_label("Only these models", exact=False).fill("llama-3.1-70b")
        with page.expect_navigation():
            page.get_by_role("button", name="Save limits").click()
        expect(page.get_by_text("Limits saved.")).to_be_visible()
        expect(page.get_by_test_id("cap")).to_have_text("3.000000")
        expect(page.get_by_test_id("limits-now")).to_contain_text("Spend cap per day, TMT")
        expect(page.get_by_test_id("models-now")).to_have_text("llama-3.1-70b")
        shot(page, "console-11-key-limits-desktop")
        page.set_viewport_size(PHONE)
        shot(page, "console-11-key-limits-phone")
        _fits(page)
        page.set_viewport_size(DESKTOP)

        page.goto(f"/customers/{cid}")
        expect(page.get_by_test_id(f"limits-{kid}")).to_have_text("Set limits")
        expect(page.get_by_test_id(f"limits-summary-{kid}")).to_have_text("3.000000 TMT/day · 60 rpm · llama-3.1-70b")
        shot(page, "console-11-customer-keys-desktop")
        page.set_viewport_size(PHONE)
        shot(page, "console-11-customer-keys-phone")
        _fits(page)
        page.set_viewport_size(DESKTOP)
        page.goto("/audit")
        for action in ("model.save", "model.delete", "provider.delete", "key.limits"):
            expect(page.get_by_test_id("audit").locator("tr", has_text=action).first).to_be_visible()
        expect(page.get_by_test_id("audit")).to_contain_text("rpm: none → 60")
        shot(page, "console-12-audit-desktop")
        page.set_viewport_size(PHONE)
        shot(page, "console-12-audit-phone")
        _fits(page)
        assert problems == []
        ctx.close()
    finally:
        source.stop()
