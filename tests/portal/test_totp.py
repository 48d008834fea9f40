"""Optional TOTP two-factor for customers (issue 13): enrol with a QR, recovery codes, a second
log-in step before any session, each code once, wrong codes throttled, turning it off.
Codes are computed from the secret the page shows, as the customer's authenticator app would."""

from __future__ import annotations

import html
import re
import time

import pyotp
import pytest

from tests.portal.conftest import PASSWORD, PortalClient, csrf_of, shot
from tests.portal.test_browser import DESKTOP, PHONE, _watch


def _secret(page_html: str) -> str:
    match = re.search(r'data-testid="totp-secret">([A-Z2-7]+)<', page_html)
    assert match, "no secret on the Security page"
    return match.group(1)


def _codes(page_html: str) -> list[str]:
    block = page_html.split('data-testid="recovery-codes"', 1)[1].split("</section>", 1)[0]
    return re.findall(r"<li>([0-9a-f]{10})</li>", block)


def _code(secret: str, ahead: int = 0) -> str:
    """The code of the time step `ahead` steps from now (the server accepts now +- 1)."""
    return pyotp.TOTP(secret).at(time.time() + 30 * ahead)


def enrol(v: PortalClient, used: list[str] | None = None) -> tuple[str, list[str]]:
    """Turn two-factor on; the code the enrolment used is appended to `used`."""
    r = v.form("/security", "/security/2fa/start", {})
    assert r.status_code == 303
    page = v.get("/security").text
    assert "<svg" in page and 'aria-label="QR code to scan with your authenticator app"' in page
    secret = _secret(page)
    code = _code(secret)
    if used is not None:
        used.append(code)
    r = v.form("/security", "/security/2fa/confirm", {"code": code})
    assert r.status_code == 303, r.text
    page = v.get(r.headers["Location"].split("#")[0]).text
    codes = _codes(page)
    assert "Two-factor authentication is on." in page
    # shown once: a reload no longer has them
    assert 'data-testid="recovery-codes"' not in v.get("/security").text
    return secret, codes


def password_step(v: PortalClient, email: str):
    r = v.login(email)
    assert r.status_code == 303 and r.headers["Location"] == "/login/code"
    return r


def test_enrol_then_log_in_with_a_code_and_a_replay_is_refused(visitor, gateway):
    v = visitor()
    cid = v.signup("totp@example.com")
    # a wrong code does not turn it on
    v.form("/security", "/security/2fa/start", {})
    bad = v.form("/security", "/security/2fa/confirm", {"code": "000000"})
    assert bad.status_code == 400 and "That code is not right" in html.unescape(bad.text)
    used: list[str] = []
    secret, codes = enrol(v, used)
    assert len(codes) == 10 and len(set(codes)) == 10
    stored = [row[0] for row in gateway.sql("SELECT code_hash FROM portal_recovery_codes WHERE customer_id = :c",
                                            c=cid)]
    assert len(stored) == 10 and not set(codes) & set(stored)  # hashed
    v.form("/dashboard", "/logout", {})

    w = visitor()
    password_step(w, "totp@example.com")
    # no session before the second factor; the pending token is stored only as a hash
    assert w.cookie("gw_session") is None
    assert w.get("/dashboard").status_code == 303
    pending = w.cookie("gw_2fa")
    assert pending and gateway.sql("SELECT token_hash FROM portal_pending_logins")[0][0] != pending
    # the enrolment's code cannot be used again (even when the clock has moved to the next step since)
    assert w.form("/login/code", "/login/code", {"code": used[0]}).status_code == 401
    code = _code(secret, ahead=1)
    r = w.form("/login/code", "/login/code", {"code": code})
    assert r.status_code == 303 and r.headers["Location"] == "/dashboard"
    assert w.get("/dashboard").status_code == 200
    assert gateway.sql("SELECT count(*) FROM portal_pending_logins")[0][0] == 0

    # the same code, seconds later, from another browser: refused
    x = visitor()
    password_step(x, "totp@example.com")
    r = x.form("/login/code", "/login/code", {"code": code})
    assert r.status_code == 401 and x.cookie("gw_session") is None


def test_a_recovery_code_works_once(visitor):
    v = visitor()
    v.signup("recover@example.com")
    _secret_, codes = enrol(v)
    w = visitor()
    password_step(w, "recover@example.com")
    r = w.form("/login/code", "/login/code", {"code": codes[3].upper()[:5] + "-" + codes[3][5:]})
    assert r.status_code == 303 and w.get("/dashboard").status_code == 200
    assert "Unused recovery codes: 9" in w.get("/security").text
    x = visitor()
    password_step(x, "recover@example.com")
    assert x.form("/login/code", "/login/code", {"code": codes[3]}).status_code == 401
    assert x.get("/dashboard").status_code == 303


def test_the_second_step_needs_the_password_step_first(visitor):
    v = visitor()
    assert v.get("/login/code").headers["Location"] == "/login?m=expired"
    token = csrf_of(v.get("/login").text)
    r = v.post("/login/code", {"csrf": token, "code": "123456"})
    assert r.status_code == 303 and r.headers["Location"] == "/login?m=expired"
    assert v.cookie("gw_session") is None


def test_wrong_codes_are_throttled(visitor):
    v = visitor()
    v.signup("slow2fa@example.com")
    secret, _codes_ = enrol(v)
    w = visitor()
    password_step(w, "slow2fa@example.com")
    statuses = [w.form("/login/code", "/login/code", {"code": "000000"}).status_code for _ in range(5)]
    assert statuses == [401] * 5
    r = w.form("/login/code", "/login/code", {"code": _code(secret, ahead=1)})
    assert r.status_code == 429 and "Please wait" in r.text  # refused before the code is looked at
    assert w.cookie("gw_session") is None
    # the limit is per account: a fresh browser (new pending log-in) meets the same wait
    x = visitor()
    password_step(x, "slow2fa@example.com")
    assert x.form("/login/code", "/login/code", {"code": _code(secret, ahead=1)}).status_code == 429


def test_concurrent_guesses_cannot_pass_the_limit(visitor, gateway):
    from concurrent.futures import ThreadPoolExecutor

    v = visitor()
    v.signup("race2fa@example.com")
    enrol(v)
    w = visitor()
    password_step(w, "race2fa@example.com")
    token = csrf_of(w.get("/login/code").text)
    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(lambda i: w.post("/login/code", {"csrf": token, "code": f"{i:06d}"}).status_code,
                                 range(20)))
    assert statuses.count(401) == 5 and statuses.count(429) == 15


def test_disable_needs_the_password_and_a_code(visitor):
    v = visitor()
    v.signup("off@example.com")
    secret, _codes_ = enrol(v)
    r = v.form("/security", "/security/2fa/disable", {"password": "wrong password here", "code": _code(secret, 1)})
    assert r.status_code == 400 and "Wrong password." in r.text
    r = v.form("/security", "/security/2fa/disable", {"password": PASSWORD, "code": "000000"})
    assert r.status_code == 400
    r = v.form("/security", "/security/2fa/disable", {"password": PASSWORD, "code": _code(secret, 1)})
    assert r.status_code == 303 and r.headers["Location"] == "/security?m=off"
    assert "Set up two-factor authentication" in v.get("/security").text
    w = visitor()
    assert w.login("off@example.com").headers["Location"] == "/dashboard"


def _shot(page, name: str) -> None:
    # a field filled lower down scrolls the page; a full-page shot then paints the sticky header mid-page
    page.evaluate("() => window.scrollTo(0, 0)")
    shot(page, name)


@pytest.mark.browser
def test_browser_enrol_and_log_in_with_totp(gateway, browser):
    PortalClient(gateway).signup("walk2fa@example.com")
    for viewport, suffix in ((DESKTOP, "desktop"), (PHONE, "phone")):
        ctx = browser.new_context(viewport=viewport, base_url=gateway.url)
        page = ctx.new_page()
        problems = _watch(page)
        email = f"walk2fa-{suffix}@example.com"
        PortalClient(gateway).register(email)
        page.goto("/login")
        page.get_by_label("Email").fill(email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url("**/dashboard")
        page.get_by_role("navigation", name="Sections").get_by_role("link", name="Security").click()
        page.wait_for_url("**/security")
        page.get_by_role("button", name="Set up two-factor authentication").click()
        page.wait_for_url("**/security*")
        assert page.get_by_role("img", name="QR code to scan with your authenticator app").is_visible()
        secret = page.get_by_test_id("totp-secret").inner_text()
        page.get_by_label("6-digit code").fill(_code(secret))
        _shot(page, f"totp-enrol-{suffix}")
        page.get_by_role("button", name="Turn on").click()
        page.wait_for_url("**/security?m=on*")
        codes = page.locator("#recovery-codes-list li").all_inner_texts()
        assert len(codes) == 10
        _shot(page, f"totp-recovery-codes-{suffix}")
        page.get_by_role("button", name="Log out").click()
        page.wait_for_url("**/login?m=bye")

        page.get_by_label("Email").fill(email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url("**/login/code")
        page.get_by_label("Code").fill("123456")
        page.get_by_role("button", name="Log in").click()
        assert page.get_by_role("alert").inner_text().startswith("That code is not right")
        page.get_by_label("Code").fill(_code(secret, ahead=1))
        _shot(page, f"totp-login-code-{suffix}")
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url("**/dashboard")
        assert page.get_by_role("heading", level=1, name="Dashboard").is_visible()
        assert not problems, problems
        ctx.close()
