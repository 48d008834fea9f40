"""The public pages in each language at phone width (artifacts/screenshots/i18n-<lang>-*.png).
The signed-in walk in each language is tests/portal/test_browser_walk.py."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.portal.conftest import shot
from tests.portal.test_browser import PHONE

pytestmark = pytest.mark.browser


def test_public_pages_at_phone_width_in_each_language(gateway, browser):
    for code in ("en", "ru", "tk"):
        ctx = browser.new_context(viewport=PHONE, base_url=gateway.url, extra_http_headers={"Accept-Language": code})
        page = ctx.new_page()
        for path in ("/login", "/register", "/models"):
            page.goto(path)
            expect(page.locator("html")).to_have_attribute("lang", code)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], f"{code} {path} scrolls sideways on a phone ({width}px)"
            shot(page, f"i18n-{code}-phone-public{path.replace('/', '-')}")
        ctx.close()
