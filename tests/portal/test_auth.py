"""Registration, login, logout, sessions and login throttling, over plain HTTP."""

from __future__ import annotations

import html
import time

from aigateway.portal import throttle
from tests.conftest import gateway_config
from tests.portal.conftest import PASSWORD, PortalClient


def error_of(page: str) -> str:
    start = page.index('role="alert"')
    return html.unescape(page[page.index(">", start) + 1: page.index("</div>", start)])


def test_register_then_login_then_logout(visitor):
    v = visitor()
    r = v.register("new@example.com")
    assert r.status_code == 303 and r.headers["Location"] == "/login?m=created"
    assert "Account created! Please login." in v.get("/login?m=created").text
    stored = v.server.sql("SELECT password_hash FROM customers WHERE email = 'new@example.com'")[0][0]
    assert stored.startswith("$argon2id$") and PASSWORD not in stored

    r = v.login("NEW@example.com ")  # emails are case-insensitive
    assert r.status_code == 303 and r.headers["Location"] == "/dashboard"
    assert v.get("/dashboard").status_code == 200
    cookie = v.cookie("gw_session")
    assert cookie

    logout = v.form("/dashboard", "/logout", {})
    assert logout.status_code == 303 and logout.headers["Location"] == "/login?m=bye"
    assert v.get("/dashboard").headers["Location"].startswith("/login")
    # the old cookie is dead server-side too, not only removed from the browser
    replay = PortalClient(v.server)
    replay.jar.set_cookie(_cookie("gw_session", cookie))
    assert replay.get("/dashboard").status_code == 303


def _cookie(name: str, value: str):
    import http.cookiejar

    return http.cookiejar.Cookie(0, name, value, None, False, "127.0.0.1", False, False, "/", True, False, None,
                                 False, None, None, {})


def test_registration_messages(visitor):
    v = visitor()
    assert v.register("taken@example.com").status_code == 303
    cases = [
        (dict(email="weak@example.com", password="short"), 400, "Password is too weak: use at least 10 characters."),
        (dict(email="weak@example.com", password="password123"), 400, "Password is too weak: it is too common"),
        (dict(email="weak@example.com", password="aaaaaaaaaaaa"), 400, "Password is too weak: it is too common"),
        (dict(email="longname@example.com", password="longname-2024!"), 400, "must not contain your email"),
        (dict(email="not-an-email"), 400, "Enter a valid email address"),
        (dict(email="ok@example.com", confirm="something else entirely"), 400, "The two passwords do not match."),
    ]
    for kwargs, status, message in cases:
        r = v.register(**kwargs)
        assert r.status_code == status, kwargs
        assert message in error_of(r.text), (kwargs, error_of(r.text))
    # a failed form keeps the email but never echoes the password
    r = v.register("weak@example.com", "short-pw")
    assert 'value="weak@example.com"' in r.text and "short-pw" not in r.text


def test_wrong_credentials(visitor):
    v = visitor()
    v.register("cred@example.com")
    for email, password in [("cred@example.com", "wrong password!"), ("nobody@example.com", PASSWORD),
                            ("", "")]:
        r = v.login(email, password)
        assert r.status_code in (400, 401)
        assert "gw_session" not in (r.headers.get("Set-Cookie") or "")
        message = error_of(r.text)
        assert message in ("Wrong email or password.", "Enter your email and password.")
    # same message for an unknown email and a wrong password: no account enumeration
    assert error_of(v.login("cred@example.com", "wrong password!").text) == \
        error_of(v.login("nobody@example.com", "wrong password!").text)


def test_repeated_failed_logins_are_slowed_down(start_gateway, mock_upstream, sqlite_url):
    server = start_gateway(gateway_config(mock_upstream.url, sqlite_url, portal={"trust_forwarded_for": True}))
    attacker = PortalClient(server, headers={"X-Forwarded-For": "203.0.113.7"})
    assert attacker.register("victim@example.com").status_code == 303
    for _ in range(throttle.FREE_FAILURES - 1):
        assert error_of(attacker.login("victim@example.com", "guess number one").text) == "Wrong email or password."
    last = attacker.login("victim@example.com", "guess number two")
    assert "Too many failed attempts: wait 2 seconds" in error_of(last.text)

    # now even the right password is refused until the delay has passed, without being checked
    blocked = attacker.login("victim@example.com", PASSWORD)
    assert blocked.status_code == 429
    assert error_of(blocked.text).startswith("Too many failed login attempts. Please wait")
    # the real customer, from another address, is not affected
    owner = PortalClient(server, headers={"X-Forwarded-For": "198.51.100.2"})
    assert owner.login("victim@example.com").status_code == 303
    # each further failure doubles the wait
    time.sleep(2.1)
    assert "wait 4 seconds" in error_of(attacker.login("victim@example.com", "guess three").text)
    assert attacker.login("victim@example.com", PASSWORD).status_code == 429
    assert [throttle.delay_after(n) for n in range(1, 13)] == [0, 0, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]


def test_session_cookie_flags(visitor):
    v = visitor()
    v.register("flags@example.com")
    r = v.login("flags@example.com")
    cookie = r.headers["Set-Cookie"]
    assert "gw_session=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # served over plain HTTP here
    assert "HttpOnly" in v.get("/register").headers.get("Set-Cookie", "HttpOnly")


def test_https_deployment_gets_secure_host_cookies(start_gateway, mock_upstream, sqlite_url):
    server = start_gateway(gateway_config(mock_upstream.url, sqlite_url,
                                          server={"public_url": "https://ai.example.com"}))
    v = PortalClient(server)
    first = v.get("/login")
    assert "__Host-gw_csrf=" in first.headers["Set-Cookie"] and "Secure" in first.headers["Set-Cookie"]
    assert first.headers["Strict-Transport-Security"].startswith("max-age=")
    # the cookie jar will not send Secure cookies over http, so post the tokens by hand
    token = v.cookie("__Host-gw_csrf")
    v.post("/register", {"csrf": token, "email": "tls@example.com", "password": PASSWORD, "confirm": PASSWORD},
           headers={"Cookie": f"__Host-gw_csrf={token}"})
    r = v.post("/login", {"csrf": token, "email": "tls@example.com", "password": PASSWORD},
               headers={"Cookie": f"__Host-gw_csrf={token}"})
    assert r.status_code == 303
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith("__Host-gw_session=") and "Secure" in cookie and "HttpOnly" in cookie


def test_login_redirects_back_but_never_off_site(visitor):
    v = visitor()
    v.register("next@example.com")
    r = v.get("/transactions?page=2")
    assert r.status_code == 303 and r.headers["Location"] == "/login?m=expired&next=/transactions%3Fpage%3D2"
    page = v.get(r.headers["Location"]).text
    assert 'name="next" value="/transactions?page=2"' in page
    r = v.form("/login?next=/transactions", "/login", {"email": "next@example.com", "password": PASSWORD,
                                                       "next": "/transactions?page=2"})
    assert r.headers["Location"] == "/transactions?page=2"
    for evil in ["https://evil.example/", "//evil.example/", "/\\evil.example"]:
        v2 = PortalClient(v.server)
        r = v2.form("/login", "/login", {"email": "next@example.com", "password": PASSWORD, "next": evil})
        assert r.headers["Location"] == "/dashboard", evil
