"""Item 6 of issue 13 in headless Chromium: the phone tab bar shows there is more, the
header balance follows a deposit credit, links in text are told apart from it, the demo
banner shows. Screenshots land in artifacts/screenshots/ (polish-*)."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from aigateway.portal.formatting import tmt_text
from tests.portal.conftest import PASSWORD, PortalClient, shot
from tests.portal.test_browser import DESKTOP, PHONE, _watch
from tests.portal.test_docs_models import _demo_like

pytestmark = pytest.mark.browser

# Colour contrast (WCAG 2 relative luminance) of every visible text link against its
# surroundings: a link inside text must be underlined, or differ from the text by 3:1.
LINKS = """() => {
  function rgb(s) { return (s.match(/[\\d.]+/g) || [0, 0, 0]).map(Number); }
  function lum(c) { var a = c.slice(0, 3).map(function (v) { v /= 255;
    return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * a[0] + 0.7152 * a[1] + 0.0722 * a[2]; }
  function ratio(a, b) { var x = lum(a), y = lum(b); return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05); }
  var out = [];
  document.querySelectorAll("main a:not(.btn), footer a, .switch a").forEach(function (a) {
    var r = a.getBoundingClientRect(); if (!r.width || !r.height) return;
    var st = getComputedStyle(a), parent = getComputedStyle(a.parentElement);
    if (a.parentElement.textContent.trim() === a.textContent.trim()) return;  // alone, not inside text
    out.push({ text: a.textContent.trim(), underlined: st.textDecorationLine.indexOf("underline") >= 0,
               vsText: ratio(rgb(st.color), rgb(parent.color)) });
  });
  return out;
}"""


def _login(page, email: str) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/dashboard")


def test_phone_tabs_hint_header_balance_after_a_deposit_and_links(deposits_gateway, browser):
    server, fake = deposits_gateway
    cid = PortalClient(server).signup("polish@example.com")
    ctx = browser.new_context(viewport=PHONE, base_url=server.url)
    page = ctx.new_page()
    problems = _watch(page)
    _login(page, "polish@example.com")
    expect(page.get_by_role("heading", level=1, name="Dashboard")).to_be_visible()

    # 390 px: the tab bar overflows; the right-hand hint is visible, and scrolling to the end
    # moves it to the left-hand side
    tabs = page.locator("nav.tabs")
    bar = page.locator("[data-scroll-hint]")
    assert bar.evaluate("b => b.scrollWidth > b.clientWidth")
    expect(tabs).to_have_class("tabs more-right")
    # (the hint fades in over .15 s)
    # polled with evaluate: wait_for_function's string predicate is an eval, which the portal's CSP refuses
    deadline = time.monotonic() + 5
    while tabs.evaluate("t => getComputedStyle(t, '::after').opacity") != "1":
        assert time.monotonic() < deadline, "the tab hint never faded in"
        page.wait_for_timeout(20)
    shot(page, "polish-phone-dashboard-tabs")
    bar.evaluate("b => { b.scrollLeft = b.scrollWidth; }")
    expect(tabs).to_have_class("tabs more-left")
    page.get_by_role("link", name="Docs", exact=True).click()
    page.wait_for_url("**/docs")
    expect(page.get_by_role("link", name="Docs", exact=True)).to_be_in_viewport()

    # the header balance follows a deposit credit while the Deposit tab is open
    page.set_viewport_size(DESKTOP)
    page.goto("/deposit")
    pill = page.locator(".balance-pill [data-balance]")
    expect(pill).to_have_text("0.00")
    server.credit(cid, "17.5", "deposit:test-tx")  # what the deposits concern posts on a credit
    fake.credited.append({"tx_id": "77" * 32, "amount_usdt": "5.00", "amount_tmt": "17.50",
                          "credited_at": "2026-01-07T10:00:00+00:00"})
    # the wallet sees the new balance within its refresh; then the tab's next check shows it
    server.wait_for(lambda: page.request.get("/deposit/status").headers.get("x-portal-balance") == "17.50")
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")  # back on the tab
    expect(pill).to_have_text(tmt_text(17_500_000))
    state = page.locator("[data-refresh-state]")
    expect(state).to_have_text(__import__("re").compile(r"^Updated \d\d:\d\d:\d\d UTC$"))
    shot(page, "polish-deposit-credited")

    # links inside text are underlined (colour alone is 1.05:1 against muted text)
    for path in ("/transactions", "/docs", "/models", "/dashboard"):
        page.goto(path)
        for link in page.evaluate(LINKS):
            assert link["underlined"] or link["vsText"] >= 3, (path, link)
    assert problems == []
    ctx.close()


def test_login_links_and_the_demo_banner(start_gateway, mock_upstream, sqlite_url, browser):
    server = start_gateway(_demo_like(mock_upstream.url, sqlite_url))
    ctx = browser.new_context(viewport=DESKTOP, base_url=server.url)
    page = ctx.new_page()
    page.goto("/login")
    expect(page.get_by_test_id("demo-banner")).to_be_visible()
    expect(page.get_by_test_id("demo-banner")).to_contain_text("Demo mode")
    links = page.evaluate(LINKS)
    assert any(link["text"] == "Create an account" for link in links)
    for link in links:
        assert link["underlined"] or link["vsText"] >= 3, link
    shot(page, "polish-demo-login")
    page.goto("/no-such-page")
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    shot(page, "polish-404")
    ctx.close()
