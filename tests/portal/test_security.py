"""CSRF, escaping, one customer against another, security headers."""

from __future__ import annotations

import re

import openai
import pytest

from tests.portal.conftest import PASSWORD, PortalClient, csrf_of, wait_usage


def test_state_changing_requests_need_the_csrf_token(visitor):
    v = visitor()
    v.signup("csrf@example.com")
    token = csrf_of(v.get("/keys").text)
    keys_before = v.server.sql("SELECT count(*) FROM api_keys")[0][0]
    for data in [{"name": "no token"}, {"name": "bad token", "csrf": "x" * 43}, {"name": "empty", "csrf": ""}]:
        r = v.post("/keys", data)
        assert r.status_code == 403 and "Page expired" in r.text
    # the right token, but the form came from another site
    r = v.post("/keys", {"name": "cross-site", "csrf": token}, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and "another site" in r.text
    assert v.server.sql("SELECT count(*) FROM api_keys")[0][0] == keys_before
    # logout and revoke are protected too
    assert v.post("/logout", {}).status_code == 403
    assert v.get("/dashboard").status_code == 200  # still logged in
    # the token belongs to the session: another customer's token does not work here
    other = PortalClient(v.server)
    other.signup("csrf2@example.com")
    assert v.post("/keys", {"name": "foreign token", "csrf": csrf_of(other.get("/keys").text)}).status_code == 403
    # with its own token (and a same-origin Origin) the form works
    r = v.post("/keys", {"name": "ok", "csrf": token}, headers={"Origin": v.server.url})
    assert r.status_code == 303 and r.headers["Location"] == "/keys"


def test_login_and_register_forms_need_the_csrf_token(visitor):
    v = visitor()
    v.get("/login")  # receives the anonymous CSRF cookie
    assert v.post("/register", {"email": "a@example.com", "password": PASSWORD, "confirm": PASSWORD}).status_code == 403
    assert v.post("/login", {"email": "a@example.com", "password": PASSWORD, "csrf": "forged"}).status_code == 403
    # a token from the page without the matching cookie (a forged cross-site post) fails
    token = csrf_of(v.get("/login").text)
    bare = PortalClient(v.server)
    assert bare.post("/register", {"email": "b@example.com", "password": PASSWORD, "confirm": PASSWORD,
                                   "csrf": token}).status_code == 403
    assert v.server.sql("SELECT count(*) FROM customers")[0][0] == 0


def test_key_names_are_escaped(visitor):
    v = visitor()
    v.signup("xss@example.com")
    name = '<script>alert("x")</script>'
    r, secret = v.create_key(name)
    assert r.status_code == 200 and secret
    for page in (r.text, v.get("/keys").text):
        assert "<script>alert" not in page
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page


def test_a_customer_cannot_see_or_revoke_another_customers_keys(visitor, gateway):
    alice, mallory = visitor(), visitor()
    alice_id = alice.signup("alice@example.com")
    mallory.signup("mallory@example.com")
    gateway.credit(alice_id, "5", "test:alice")
    _, alice_secret = alice.create_key("alice-prod")
    alice_key_id = gateway.sql("SELECT id FROM api_keys WHERE customer_id = :c", c=alice_id)[0][0]
    client = openai.OpenAI(api_key=alice_secret, base_url=gateway.base_url, max_retries=0)
    client.chat.completions.create(model="llama-3.1-70b", messages=[{"role": "user", "content": "private"}])
    wait_usage(gateway, alice_id, 1)

    keys_page = mallory.get("/keys").text
    assert "alice-prod" not in keys_page and "No keys yet." in keys_page
    token = csrf_of(keys_page)
    for confirm in ("", "yes"):
        r = mallory.post(f"/keys/{alice_key_id}/revoke", {"csrf": token, "confirm": confirm})
        assert r.status_code == 404, confirm
        assert "alice-prod" not in r.text
    assert gateway.sql("SELECT revoked_at FROM api_keys WHERE id = :k", k=alice_key_id)[0][0] is None
    # alice's key still works
    client.chat.completions.create(model="llama-3.1-70b", messages=[{"role": "user", "content": "still mine"}])

    # mallory sees none of alice's usage, transactions or requests
    today = gateway.sql("SELECT created_at FROM usage_records WHERE customer_id = :c", c=alice_id)[0][0][:10]
    assert "No usage in the last 30 days." in mallory.get("/dashboard").text
    assert "No transactions yet." in mallory.get("/transactions").text
    day = mallory.get(f"/transactions/{today}").text
    assert "No requests on this day." in day and "llama-3.1-70b" not in day
    csv_text = mallory.get("/transactions/export.csv").text
    assert csv_text.strip().splitlines() == ["date_utc,type,amount_tmt,description,reference"]
    # while alice sees her own
    assert "llama-3.1-70b" in alice.get(f"/transactions/{today}").text


def test_revocation_needs_confirmation_and_takes_effect_at_once(visitor, gateway):
    v = visitor()
    cid = v.signup("rev@example.com")
    gateway.credit(cid, "5", "test:rev")
    _, secret = v.create_key("to-revoke")
    key_id = gateway.sql("SELECT id FROM api_keys WHERE customer_id = :c", c=cid)[0][0]
    client = openai.OpenAI(api_key=secret, base_url=gateway.base_url, max_retries=0)
    client.models.list()  # the key is now in the gateway's in-memory cache
    token = csrf_of(v.get("/keys").text)
    ask = v.post(f"/keys/{key_id}/revoke", {"csrf": token, "confirm": ""})
    assert ask.status_code == 200 and "Revoke this key?" in ask.text
    assert gateway.sql("SELECT revoked_at FROM api_keys WHERE id = :k", k=key_id)[0][0] is None
    done = v.post(f"/keys/{key_id}/revoke", {"csrf": token, "confirm": "yes"})
    assert done.status_code == 303 and done.headers["Location"] == "/keys?m=revoked"
    with pytest.raises(openai.AuthenticationError):  # no waiting for the cache refresh
        client.models.list()


def test_security_headers(visitor):
    v = visitor()
    v.signup("headers@example.com")
    for path in ["/login", "/dashboard", "/keys", "/docs", "/transactions/export.csv"]:
        h = v.get(path).headers
        assert h["X-Frame-Options"] == "DENY", path
        assert h["X-Content-Type-Options"] == "nosniff"
        assert h["Referrer-Policy"] == "same-origin"
        csp = h["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert h["Cache-Control"] == "no-store"
        assert re.fullmatch(r"app;dur=\d+\.\d", h["Server-Timing"])
    page = v.get("/dashboard").text
    assert "<script>" not in page and " style=" not in page and "onclick" not in page  # no inline code
    static = v.get(re.search(r'src="(/static/portal/portal\.js\?v=\w+)"', page).group(1))
    assert static.status_code == 200 and "immutable" in static.headers["Cache-Control"]
    assert static.headers["X-Content-Type-Options"] == "nosniff"
    # the API keeps its own error format; the portal's middleware stays out of /v1
    api = v.get("/v1/models")
    assert api.status_code == 401 and "X-Frame-Options" not in api.headers
