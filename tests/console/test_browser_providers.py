"""The Providers page in headless Chromium: add a provider (key stored encrypted) and a model,
test-call it, and a customer request is served by it without a restart. Screenshots desktop and 390 px."""

from __future__ import annotations

import openai
import pytest
from playwright.sync_api import expect

from tests.console.conftest import browser_log_in, console_url, make_operator
from tests.console.test_providers import SECRET, upstream  # noqa: F401 (fixture)
from tests.portal.conftest import shot
from tests.support.waits import wait_until

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 860}


def test_add_provider_and_model_in_the_browser(gateway, browser, upstream, monkeypatch):  # noqa: F811
    monkeypatch.setenv("AIGATEWAY_SECRET_KEY", "browser-test-secret-key-0123456789")
    admin = make_operator(gateway, "admin@example.com")
    _cid, key = gateway.customer("buyer@example.com")
    ctx = browser.new_context(viewport=DESKTOP, base_url=console_url(gateway))
    page = ctx.new_page()
    browser_log_in(page, admin)
    page.goto("/providers")
    page.get_by_label("Name", exact=True).first.fill("fakeco")
    page.get_by_label("Base URL (before /chat/completions)").fill(upstream.url + "/v1")
    page.get_by_label("or key to store encrypted", exact=False).fill(SECRET)
    with page.expect_navigation():
        page.get_by_role("button", name="Save provider").click()
    expect(page.get_by_text("Provider saved.")).to_be_visible()
    page.locator("#m-name").fill("browser-model")
    page.locator("#m-routes").fill("fakeco fake-chat-1 1 1")
    page.locator("#m-in-price").fill("2")
    page.locator("#m-out-price").fill("4")
    with page.expect_navigation():
        page.get_by_role("button", name="Save model").click()
    expect(page.get_by_text("Model saved.")).to_be_visible()
    row = page.get_by_test_id("models").locator("tr", has_text="browser-model")
    with page.expect_navigation():
        row.get_by_role("button", name="Test").click()
    expect(page.get_by_test_id("test-answer")).to_have_text("pong from fake")
    shot(page, "console-08-providers-desktop")
    assert SECRET not in page.content()

    client = openai.OpenAI(api_key=key, base_url=gateway.base_url, max_retries=0)

    def served():
        try:
            return client.chat.completions.create(model="browser-model", messages=[{"role": "user", "content": "x"}])
        except openai.NotFoundError:
            return None

    assert wait_until(served, timeout=15, interval=0.2).choices[0].message.content == "pong from fake"
    page.set_viewport_size(PHONE)
    page.goto("/providers")
    shot(page, "console-08-providers-phone")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"] + 1
    ctx.close()
