"""The whole customer walk in headless Chromium, in each language (issue 13):

register -> verify the e-mail (the link from the SMTP sink) -> log in without a code ->
enrol TOTP -> log out -> log in with a code -> create a key (and use it once) -> Deposit
tab (the voucher form's own hint, then a voucher redeemed) -> transactions -> password reset by e-mail link ->
log in again (with a recovery code).

One browser for the module, one server per language. Every step is photographed at
desktop width and at 390 px (artifacts/screenshots/walk-<lang>-<nn>-<step>[-phone].png);
no page may scroll sideways on the phone, every page's <h1> is the catalog's translation,
and money and dates are in the language's format.
"""

from __future__ import annotations

from datetime import UTC, datetime

import openai
import pytest
from playwright.sync_api import expect

from aigateway.portal import formatting, i18n
from tests.conftest import gateway_config
from tests.portal.conftest import PASSWORD, DepositsGateway, FakeDeposits, shot, wait_usage
from tests.portal.test_browser import DESKTOP, PHONE, _watch
from tests.portal.test_recovery import NEW_PASSWORD, link_of, sink  # noqa: F401 - sink is a fixture
from tests.portal.test_totp import _code
from tests.vouchers.conftest import make_batch

pytestmark = pytest.mark.browser

# The Deposit tab's numbers and one of the month names, as each language writes them.
NUMBERS = {
    "en": {"rate": "3.50", "usdt": "15.50", "tmt": "70.00", "credit": "1,234.50", "voucher": "1,500.00",
           "month": "Jan"},
    "ru": {"rate": "3,50", "usdt": "15,50", "tmt": "70,00", "credit": "1\xa0234,50", "voucher": "1\xa0500,00",
           "month": "янв."},
    "tk": {"rate": "3,50", "usdt": "15,50", "tmt": "70,00", "credit": "1\xa0234,50", "voucher": "1\xa0500,00",
           "month": "ýan"},
}


@pytest.fixture
def walk_gateway(mock_upstream, sqlite_url, sink):  # noqa: F811 - the fixture imported above
    handler, port = sink
    fake = FakeDeposits()
    fake.credited.append({"tx_id": "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9",
                          "amount_usdt": "20", "amount_tmt": "70.00", "rate": "3.50",
                          "credited_at": "2026-01-05T09:30:00+00:00",
                          "progress": "credited 70.00 TMT at 3.50 TMT per USDT"})
    fake.pending.append({"tx_id": "ffee0011223344556677889900aabbccddeeff00112233445566778899aabbcc",
                         "amount_usdt": "15.5", "seen_at": datetime(2026, 1, 6, 10, 0, tzinfo=UTC),
                         "progress": "seen on chain; waiting for confirmation"})
    config = gateway_config(mock_upstream.url, sqlite_url, smtp={
        "host": "127.0.0.1", "port": port, "from": "AI Gateway <no-reply@example.com>", "starttls": False})
    server = DepositsGateway(config, fake).start()
    yield server, handler
    server.stop()


class Walk:
    """Screenshots of each step at both widths, and the checks every page gets."""

    def __init__(self, page, code: str) -> None:
        self.page, self.code, self.step = page, code, 0
        self.t = i18n.load(code).gettext

    def heading(self, msgid: str) -> None:
        expect(self.page.locator("html")).to_have_attribute("lang", self.code)
        expect(self.page.get_by_role("heading", level=1)).to_have_text(self.t(msgid))

    def shots(self, name: str) -> None:
        self.step += 1
        base = f"walk-{self.code}-{self.step:02d}-{name}"
        page = self.page
        page.evaluate("() => window.scrollTo(0, 0)")
        shot(page, base)
        page.set_viewport_size(PHONE)
        page.evaluate("() => window.scrollTo(0, 0)")
        shot(page, f"{base}-phone")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"{base}: scrolls sideways on a phone ({width}px)"
        page.set_viewport_size(DESKTOP)

    def submit(self, form: str, url: str) -> None:
        """Press the submit button of the form matched by `form`, and wait for `url`."""
        with self.page.expect_navigation(url=url):
            self.page.locator(f"{form} button[type=submit]").first.click()


@pytest.mark.parametrize("code", ["en", "ru", "tk"])
def test_the_whole_walk_in_each_language(walk_gateway, browser, code):
    server, mail = walk_gateway
    browser_locale = {"en": "en-US", "ru": "ru-RU", "tk": "tk-TM"}[code]  # a customer's own browser
    ctx = browser.new_context(viewport=DESKTOP, base_url=server.url, locale=browser_locale)
    page = ctx.new_page()
    problems = _watch(page)
    walk = Walk(page, code)
    t = walk.t
    n = NUMBERS[code]
    email = f"walk-{code}@example.com"

    # --- register, with the language chosen by the switcher (remembered by a cookie)
    page.goto("/lang/en?next=/register")  # then the switcher in the header, as a customer would
    with page.expect_navigation():
        page.locator(f"nav.lang-switch a[hreflang={code}]").click()
    walk.heading("Create your account")
    page.locator("#reg-email").fill(email)
    page.locator("#reg-password").fill(PASSWORD)
    page.locator("#reg-confirm").fill(PASSWORD)
    walk.shots("register")
    walk.submit("form[action='/register']", "**/login?m=created-mail")
    expect(page.get_by_text(t("Account created! We sent you a link to confirm your email. Please login."))) \
        .to_be_visible()
    walk.shots("login-after-register")

    # --- the confirmation e-mail, in the language; its link followed in the browser
    message = mail.wait(email)
    url, _ = link_of(message, "verify")
    assert message["Subject"] == t("Confirm your e-mail address for %(site)s") % {"site": "AI Gateway"}
    page.goto(url)
    walk.heading("Confirm your e-mail address")
    walk.shots("verify")
    walk.submit("form[action='/verify']", "**/verify")
    expect(page.locator(".alert-success")).to_contain_text(email)
    walk.shots("verified")

    cid = server.sql("SELECT id FROM customers WHERE email = :e", e=email)[0][0]
    server.credit(cid, "1234.5", f"test:walk-{code}")  # the operator tops the new customer up

    # --- log in, no second factor yet
    page.goto("/login")
    walk.heading("Log in")
    page.locator("#login-email").fill(email)
    page.locator("#login-password").fill(PASSWORD)
    walk.submit("form[action='/login']", "**/dashboard")
    walk.heading("Dashboard")
    expect(page.locator(".verify-notice")).to_have_count(0)  # confirmed
    walk.shots("dashboard-empty")

    # --- enrol TOTP on the Security tab
    page.goto("/security")
    walk.heading("Security")
    walk.submit("form[action='/security/2fa/start']", "**/security*")
    expect(page.get_by_role("img", name=t("QR code to scan with your authenticator app"))).to_be_visible()
    secret = page.get_by_test_id("totp-secret").inner_text()
    page.locator("#tfa-code").fill(_code(secret))
    walk.shots("totp-enrol")
    walk.submit("form[action='/security/2fa/confirm']", "**/security?m=on*")
    expect(page.get_by_test_id("notice")).to_have_text(t("Two-factor authentication is on."))
    recovery = page.locator("#recovery-codes-list li").all_inner_texts()
    assert len(recovery) == 10
    walk.shots("totp-recovery-codes")

    # --- log out, log in with a code
    walk.submit("form[action='/logout']", "**/login?m=bye")
    expect(page.get_by_text(t("You have been logged out."))).to_be_visible()
    page.locator("#login-email").fill(email)
    page.locator("#login-password").fill(PASSWORD)
    walk.submit("form[action='/login']", "**/login/code")
    walk.heading("Enter your code")
    page.locator("#login-code").fill("000000")
    page.locator("form[action='/login/code'] button[type=submit]").click()
    expect(page.get_by_role("alert")).to_contain_text(t("That code is not right. Enter the 6-digit code your "
                                                          "authenticator app shows now, or a recovery code."))
    page.locator("#login-code").fill(_code(secret, ahead=1))  # the enrolment used this step's code
    walk.shots("login-code")
    walk.submit("form[action='/login/code']", "**/dashboard")
    walk.heading("Dashboard")

    # --- create a key (post/redirect/get) and use it once, so there is usage to show
    page.goto("/keys")
    walk.heading("API Keys")
    page.locator("#key-name").fill("app")
    walk.submit("form[action='/keys']", "**/keys")
    secret_key = page.get_by_test_id("new-key").input_value()
    assert secret_key.startswith("gw_")
    expect(page.get_by_text(t("Key created! Copy it now — it won't be shown again."))).to_be_visible()
    walk.shots("key-created")
    page.reload()
    expect(page.get_by_test_id("new-key")).to_have_count(0)  # shown once; the reload made no key
    assert server.sql("SELECT count(*) FROM api_keys WHERE name = 'app' AND customer_id = "
                      "(SELECT id FROM customers WHERE email = :e)", e=email)[0][0] == 1
    page.locator("details.key-limits-edit summary").first.click()  # the limits form, open
    walk.shots("keys-limits")

    client = openai.OpenAI(api_key=secret_key, base_url=server.base_url, max_retries=0)
    client.chat.completions.create(model="llama-3.1-70b", messages=[{"role": "user", "content": "Hi"}])
    wait_usage(server, cid, 1)
    server.wait_for(lambda: server.sql("SELECT count(*) FROM ledger_entries WHERE customer_id = :c",
                                       c=cid)[0][0] == 2)
    page.goto("/dashboard")
    walk.heading("Dashboard")
    # 1234.50 less one small request, rounded toward zero
    assert page.get_by_test_id("balance").inner_text() == n["credit"][:-2] + "49"
    walk.shots("dashboard-usage")

    # --- the Deposit tab: numbers in the language; the voucher form's hint too
    page.goto("/deposit")
    walk.heading("USDT Deposit (TRC-20)")
    assert n["rate"] in page.locator(".rate").inner_text()
    table = page.locator("[data-refresh]").inner_text()
    assert n["usdt"] in table and n["tmt"] in table and n["month"] in table, table
    expect(page.get_by_text(t("%(tmt)s TMT at %(rate)s TMT per USDT") % {"tmt": n["tmt"], "rate": n["rate"]})) \
        .to_be_visible()
    page.get_by_test_id("voucher-code").fill("ABCD-EFGH")
    page.get_by_test_id("voucher-code").press("Enter")  # stopped in the page: too short
    expect(page.locator("[data-voucher-hint]")).to_have_text(
        t("A voucher code has 20 characters; this one has {count}.").replace("{count}", "8"))
    walk.shots("deposit")
    _, [voucher] = make_batch(server, "1500", 1, "Kassa")
    page.get_by_test_id("voucher-code").fill(voucher)
    walk.submit("form[action='/deposit/voucher']", "**/deposit/voucher?r=*")
    walk.heading("Redeem a voucher")
    expect(page.get_by_test_id("voucher-credited")).to_contain_text(f"+{n['voucher']} TMT")
    exact = formatting.tmt_text(1_500_000_000, "usage", code, sign=True)  # the exact amount, on hover
    expect(page.get_by_test_id("voucher-credited")).to_have_attribute("title", f"{exact} TMT")
    walk.shots("voucher-redeemed")

    # --- transactions
    page.goto("/transactions")
    walk.heading("Transaction History")
    rows = page.locator("table").first.inner_text()
    assert "+" + n["credit"] in rows and "+" + n["voucher"] in rows and t("API usage") in rows, rows
    assert t("Voucher (%(label)s)") % {"label": "Kassa"} in rows  # the ledger's memo, in the language
    walk.shots("transactions")

    # --- forgotten password, from another browser (a phone), by the e-mailed link
    phone_ctx = browser.new_context(viewport=PHONE, base_url=server.url, locale=browser_locale)
    phone = phone_ctx.new_page()
    problems += _watch(phone)
    phone.goto(f"/lang/{code}?next=/login")
    phone.locator("a[href='/forgot']").click()
    phone.wait_for_url("**/forgot")
    other = Walk(phone, code)
    other.step = walk.step
    other.heading("Forgot your password?")
    phone.locator("#forgot-email").fill(email)
    other.submit("form[action='/forgot']", "**/forgot")
    expect(phone.locator(".alert-success")).to_contain_text(email)
    other.shots("forgot-sent")
    reset = mail.wait(email, 2)
    assert reset["Subject"] == t("Reset your %(site)s password") % {"site": "AI Gateway"}
    url, _ = link_of(reset, "reset")
    phone.goto(url)
    other.heading("Choose a new password")
    phone.locator("#reset-password").fill(NEW_PASSWORD)
    phone.locator("#reset-confirm").fill(NEW_PASSWORD)
    other.shots("reset")
    other.submit("form[action='/reset']", "**/login?m=reset")
    expect(phone.get_by_text(t("Your password was changed. Please log in with the new one."))).to_be_visible()
    phone.locator("#login-email").fill(email)
    phone.locator("#login-password").fill(NEW_PASSWORD)
    other.submit("form[action='/login']", "**/login/code")
    phone.locator("#login-code").fill(recovery[0])  # a recovery code works too (once)
    other.submit("form[action='/login/code']", "**/dashboard")
    other.heading("Dashboard")
    # the reset ended the desktop session; the spent link says so in the language
    page.goto("/dashboard")
    page.wait_for_url("**/login**")
    page.goto(url)
    walk.step = other.step
    walk.heading("This link no longer works")
    walk.shots("reset-link-used")

    # --- every signed-in page once more at both widths, from the phone's session
    for path, title in (("/models", "Available Models"), ("/docs", "API Documentation")):
        phone.set_viewport_size(DESKTOP)
        phone.goto(path)
        other.step = walk.step
        other.heading(title)
        other.shots(path.strip("/"))
        walk.step = other.step
    phone_ctx.close()
    ctx.close()
    assert [p for p in problems if "status of 410" not in p] == []
