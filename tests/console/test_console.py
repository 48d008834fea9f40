"""The console over real HTTP: its own listener, operator log-in with TOTP, isolation from
customers, roles, money and account actions with their audit rows, probes and metrics."""

from __future__ import annotations

import re

import openai
import pyotp
import pytest

from aigateway.console.operators import create_operator
from tests.console.conftest import OP_PASSWORD, ConsoleClient, console_url, make_operator

ROUTES_GET = ["/", "/customers", "/customers/1", "/audit", "/audit.csv", "/prices", "/deposits",
              "/customers/1/keys/1/limits", "/providers", "/providers/delete?kind=model&name=x"]
ROUTES_POST = ["/customers/1/money", "/customers/1/status", "/customers/1/sessions", "/prices/rate",
               "/prices/held/1/confirm", "/deposits/review", "/deposits/rescan", "/customers/1/keys/1/limits",
               "/providers/delete", "/models", "/providers"]


def test_console_is_not_on_the_api_listener_and_refuses_customers(gateway, visitor, console):
    cid, key = gateway.customer("cust@example.com")
    assert console_url(gateway) != gateway.url
    # The API listener has no console route at all.
    # The API listener has no console route at all ("/" and "/deposits" there are the portal's pages).
    for path in ["/customers", "/customers/1", "/audit", "/audit.csv", "/prices", "/metrics", "/readyz",
                 "/enrol/x", "/customers/1/keys/1/limits", "/providers", "/providers/delete?kind=model&name=x"]:
        r = visitor().get(path, headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 404, path
    for path in ROUTES_POST:
        assert visitor().post(path, {"csrf": "x"}).status_code in (403, 404, 405), path
    # A logged-in customer's cookie and an API key mean nothing on the console: 401 + log-in form.
    customer = visitor()
    customer.signup("portal@example.com")
    token = customer.cookie("gw_session")
    c = ConsoleClient(gateway)
    for path in ROUTES_GET:
        r = c.get(path, headers={"Cookie": f"gw_session={token}", "Authorization": f"Bearer {key}"})
        assert r.status_code == 401, path
        assert 'action="/login"' in r.text
    for path in ROUTES_POST:
        r = c.post(path, {"csrf": "x"}, headers={"Cookie": f"gw_session={token}", "Authorization": f"Bearer {key}"})
        assert r.status_code in (401, 403), path
    assert gateway.sql("SELECT status, balance FROM customers WHERE id = :c", c=cid)[0] == ("active", 10_000_000)


def test_login_needs_password_and_a_fresh_totp_code(gateway, console):
    op = make_operator(gateway, "ops@example.com")
    c = console()
    r = c.form("/login", "/login", {"email": op.email, "password": op.password, "code": "000000"})
    assert r.status_code == 401 and "Wrong email, password or code." in r.text
    r = c.form("/login", "/login", {"email": op.email, "password": "wrong password!", "code": op.code()})
    assert r.status_code == 401
    r = c.operator_login(op)
    assert r.status_code == 303 and r.headers["Location"] == "/"
    assert c.get("/").status_code == 200
    # the same code again (replay, e.g. shoulder-surfed) is refused in another browser
    again = console()
    assert again.form("/login", "/login", {"email": op.email, "password": op.password,
                                           "code": op.code()}).status_code == 401
    # a CSRF-less POST is refused
    assert c.post("/customers/1/sessions", {}).status_code == 403
    # security headers: no script may run at all
    headers = c.get("/").headers
    assert "script-src" not in headers["Content-Security-Policy"] and "default-src 'none'" in headers[
        "Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY" and headers["Cache-Control"] == "no-store"


def test_enrolment_link_sets_password_and_totp_then_recovery_code_logs_in(gateway, console):
    async def make():
        async with gateway.engine.begin() as conn:
            return await create_operator(conn, "new@example.com", "viewer")

    _id, token = gateway.run(make())
    c = console()
    page = c.get(f"/enrol/{token}")
    assert page.status_code == 200 and "data:image/svg+xml" in page.text
    secret = re.search(r'data-testid="totp-secret">([A-Z2-7]+)<', page.text).group(1)
    r = c.form(f"/enrol/{token}", f"/enrol/{token}", {"password": OP_PASSWORD, "confirm": OP_PASSWORD,
                                                       "code": pyotp.TOTP(secret).now()})
    assert r.status_code == 200
    codes = re.findall(r"<li>([0-9a-f]{10})</li>", r.text)
    assert len(codes) == 10
    assert c.get(f"/enrol/{token}").status_code == 404  # used once
    # a recovery code instead of the TOTP code, accepted once
    r = c.form("/login", "/login", {"email": "new@example.com", "password": OP_PASSWORD, "code": codes[0]})
    assert r.status_code == 303
    other = console()
    r = other.form("/login", "/login", {"email": "new@example.com", "password": OP_PASSWORD, "code": codes[0]})
    assert r.status_code == 401
    stored = gateway.sql("SELECT code_hash FROM console_recovery_codes")
    assert len(stored) == 10 and all(codes[0] not in row[0] for row in stored)  # hashed


def test_login_throttle_is_atomic_and_per_account(gateway, console):
    op = make_operator(gateway, "victim@example.com")
    c = console()
    statuses = [c.form("/login", "/login", {"email": op.email, "password": "guess guess guess",
                                            "code": "123456"}).status_code for _ in range(6)]
    assert statuses[:3] == [401, 401, 401] and 429 in statuses
    # even the right password and code is refused while the wait runs (nothing is checked)
    assert c.operator_login(op).status_code == 429


def test_viewer_changes_nothing(gateway, console):
    cid, _key = gateway.customer("watched@example.com")
    viewer = make_operator(gateway, "viewer@example.com", "viewer")
    c = console()
    assert c.operator_login(viewer).status_code == 303
    page = c.get(f"/customers/{cid}")
    assert page.status_code == 200 and "Post to the ledger" not in page.text
    session_csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    for path, data in [(f"/customers/{cid}/money", {"kind": "credit", "amount": "5", "reason": "x"}),
                       (f"/customers/{cid}/status", {"status": "disabled", "reason": "x"}),
                       (f"/customers/{cid}/sessions", {}), ("/prices/rate", {"rate": "20", "note": "x"}),
                       ("/prices/held/1/confirm", {}), ("/deposits/review", {"tx_id": "ab", "action": "approve",
                                                                            "reason": "x"}),
                       ("/deposits/rescan", {"address": "T123"})]:
        assert c.post(path, {"csrf": session_csrf, **data}).status_code == 403, path
    assert gateway.sql("SELECT status, balance FROM customers WHERE id = :c", c=cid)[0] == ("active", 10_000_000)
    assert gateway.sql("SELECT count(*) FROM console_audit_log WHERE action LIKE 'customer.%'")[0][0] == 0


def test_credit_disable_and_audit(gateway, console):
    cid, key = gateway.customer("payer@example.com")
    op = make_operator(gateway, "admin@example.com")
    c = console()
    assert c.operator_login(op).status_code == 303
    # search by key prefix finds the customer
    prefix = key[:8]
    assert f'/customers/{cid}"' in c.get(f"/customers?q={prefix}").text
    # a credit without a reason is refused, nothing moves
    r = c.form(f"/customers/{cid}", f"/customers/{cid}/money", {"kind": "credit", "amount": "5", "reason": " "})
    assert r.status_code == 400 and "A reason is required." in r.text
    r = c.form(f"/customers/{cid}", f"/customers/{cid}/money",
               {"kind": "credit", "amount": "5.25", "reason": "goodwill"})
    assert r.status_code == 303
    assert gateway.balance(cid) == 15_250_000 == gateway.ledger_sum(cid)
    # an adjustment that would go below zero is refused by the ledger's own rule
    r = c.form(f"/customers/{cid}", f"/customers/{cid}/money",
               {"kind": "adjustment", "amount": "-100", "reason": "oops"})
    assert r.status_code == 400 and gateway.balance(cid) == 15_250_000
    # disable: the key is refused within about a second (key cache refresher)
    client = openai.OpenAI(api_key=key, base_url=gateway.base_url, max_retries=0)
    client.models.list()
    assert c.form(f"/customers/{cid}", f"/customers/{cid}/status",
                  {"status": "disabled", "reason": "chargeback"}).status_code == 303

    def refused():
        try:
            client.models.list()
            return False
        except openai.AuthenticationError:
            return True

    gateway.wait_for(refused, timeout=3)
    assert c.form(f"/customers/{cid}", f"/customers/{cid}/status",
                  {"status": "active", "reason": "resolved"}).status_code == 303
    gateway.wait_for(lambda: not refused(), timeout=3)
    rows = gateway.sql("SELECT actor, action, target, before, after, reason FROM console_audit_log "
                       "WHERE action LIKE 'customer.%' ORDER BY id")
    assert [r.action for r in rows] == ["customer.credit", "customer.disable", "customer.enable"]
    assert rows[0].actor == "operator:admin@example.com" and rows[0].target == f"customer:{cid}"
    assert '"10.000000"' in rows[0].before and '"15.250000"' in rows[0].after and rows[0].reason == "goodwill"
    csv = c.get("/audit.csv")
    assert csv.status_code == 200 and "customer.disable" in csv.text and "chargeback" in csv.text


def test_probes_and_metrics_match_requests(gateway, console):
    import urllib.request

    base = console_url(gateway)

    def scrape() -> str:
        with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
            return r.read().decode()

    def value(text: str, name: str, **labels) -> float:
        total = 0.0
        for line in text.splitlines():
            if line.startswith((name + "{", name + " ")) and all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    before = scrape()
    _cid, key = gateway.customer("metered@example.com")
    client = openai.OpenAI(api_key=key, base_url=gateway.base_url, max_retries=0)
    tokens = 0
    for _ in range(3):
        resp = client.chat.completions.create(model="llama-3.1-70b", messages=[{"role": "user", "content": "hi"}])
        tokens += resp.usage.completion_tokens
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model="mock-badreq", messages=[{"role": "user", "content": "hi"}])
    after = scrape()
    d = lambda name, **labels: value(after, name, **labels) - value(before, name, **labels)  # noqa: E731
    assert d("aigateway_requests_total", model="llama-3.1-70b", status="200") == 3
    assert d("aigateway_requests_total", model="mock-badreq") == 1
    assert d("aigateway_tokens_total", model="llama-3.1-70b", direction="output") == tokens
    assert d("aigateway_request_duration_seconds_count", endpoint="chat") == 4
    # each of the 4 reached the upstream once: both halves of its duration were observed, and they add up
    assert d("aigateway_upstream_duration_seconds_count", endpoint="chat") == 4
    assert d("aigateway_gateway_added_seconds_count", endpoint="chat") == 4
    assert abs(d("aigateway_upstream_duration_seconds_sum", endpoint="chat") +
               d("aigateway_gateway_added_seconds_sum", endpoint="chat") -
               d("aigateway_request_duration_seconds_sum", endpoint="chat")) < 1e-6
    # the 4 usage events went through group commits: the batch-size histogram counted every one
    gateway.wait_for(lambda: value(scrape(), "aigateway_usage_commit_batch_size_sum") -
                     value(before, "aigateway_usage_commit_batch_size_sum") == 4)
    assert "aigateway_holds_open" in after and "aigateway_usage_uncommitted" in after
    # every metric the Grafana dashboard in the repo charts is one this endpoint exports
    import json
    from pathlib import Path

    dashboard = json.loads((Path(__file__).parents[2] / "deploy/grafana/aigateway.json").read_text())
    used = {m for p in dashboard["panels"] for t in p["targets"] for m in re.findall(r"aigateway_[a-z_]+", t["expr"])}
    exported = set(re.findall(r"^(aigateway_[a-z_]+)", after, re.M))
    assert used and used <= exported | {"aigateway_deposit_watcher_lag_seconds", "aigateway_price_fetch_ok"}
    with urllib.request.urlopen(base + "/healthz", timeout=5) as r:
        assert r.status == 200
    with urllib.request.urlopen(base + "/readyz", timeout=5) as r:
        body = r.read().decode()
        assert r.status == 200 and '"database": "ok"' in body and '"recorder": "ok"' in body


def test_rate_change_and_held_price_reject_are_audited(gateway, console):
    from aigateway.money import to_units
    from aigateway.pricing.service import propose_price

    async def hold():
        async with gateway.engine.begin() as conn:
            return await propose_price(conn, "mock-long", to_units("9"), to_units("9"), source="feed", note="jump")

    vid = gateway.run(hold())
    op = make_operator(gateway, "rates@example.com")
    c = console()
    assert c.operator_login(op).status_code == 303
    assert c.form("/prices", "/prices/rate", {"rate": "19.5", "note": ""}).status_code == 400
    assert c.form("/prices", "/prices/rate", {"rate": "abc", "note": "x"}).status_code == 400
    assert c.form("/prices", "/prices/rate", {"rate": "19.5", "note": "central bank"}).status_code == 303
    assert 'data-testid="rate">19.5<' in c.get("/prices").text
    assert c.form("/prices", f"/prices/held/{vid}/reject", {}).status_code == 303
    assert c.form("/prices", f"/prices/held/{vid}/reject", {}).status_code == 400  # not held any more
    assert gateway.sql("SELECT status FROM price_versions WHERE id = :i", i=vid)[0][0] == "rejected"
    rows = gateway.sql("SELECT action, before, after, reason FROM console_audit_log "
                       "WHERE action IN ('rate.set', 'price.reject') ORDER BY id")
    assert [r.action for r in rows] == ["rate.set", "price.reject"]
    assert '"19.5"' in rows[0].after and rows[0].reason == "central bank"


def test_overview_lists_what_needs_the_operator(gateway, console):
    from aigateway.money import to_units
    from aigateway.pricing.service import propose_price
    from aigateway.store.metadata import utcnow

    async def seed():
        from aigateway.pricing.tables import price_fetches

        async with gateway.engine.begin() as conn:
            await propose_price(conn, "mock-drop", to_units("5"), to_units("5"), source="feed", note="jump")
            await conn.execute(price_fetches.insert().values(source="openrouter", holder="t", started_at=utcnow(),
                                                             finished_at=utcnow(), ok=False, error="HTTP 503"))

    gateway.run(seed())
    _cid, key = gateway.customer("busy@example.com")
    openai.OpenAI(api_key=key, base_url=gateway.base_url, max_retries=0).chat.completions.create(
        model="llama-3.1-70b", messages=[{"role": "user", "content": "hi"}])
    gateway.flush()
    viewer = make_operator(gateway, "look@example.com", "viewer")
    c = console()
    assert c.operator_login(viewer).status_code == 303
    page = c.get("/").text
    assert "price change(s) held by the guardrail" in page
    assert "<code>openrouter</code>: HTTP 503" in page
    assert 'data-testid="requests">1<' in page and "busy@example.com" in page
    assert "mock/mock-chat · chat" in page  # the route's row in the last 24 hours
    # the page's title is text, and the routes table is on the page once (it was also pasted into the title)
    assert "<title>Overview · aigateway operator console</title>" in page and page.count('data-testid="routes"') == 1


def test_latency_is_split_between_upstream_and_gateway(start_gateway, mock_upstream, sqlite_url):
    """A slow upstream (1.5 s) and a streamed answer: the wait is upstream time, not the gateway's."""
    import urllib.request

    from aigateway.config import Config
    from tests.conftest import gateway_config

    data = gateway_config(mock_upstream.url, sqlite_url).model_dump()
    data["models"].append({"name": "slow-model", "type": "chat", "input_price": "0.35", "output_price": "1.40",
                           "routes": [{"provider": "mock", "model": "mock-chat-slow"}]})
    server = start_gateway(Config.model_validate(data))

    def scrape() -> dict[str, float]:
        with urllib.request.urlopen(console_url(server) + "/metrics", timeout=10) as r:
            text = r.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if '{endpoint="chat"}' in line:
                out[line.split("{")[0]] = float(line.rsplit(" ", 1)[1])
        return out

    before = scrape()  # the registry is per process: other tests' gateways count in it too
    _cid, key = server.customer("waiting@example.com")
    client = openai.OpenAI(api_key=key, base_url=server.base_url, max_retries=0)
    client.chat.completions.create(model="slow-model", messages=[{"role": "user", "content": "hi"}])
    chunks = list(client.chat.completions.create(model="slow-model", stream=True,
                                                 messages=[{"role": "user", "content": "hi"}]))
    assert chunks
    # a refusal before any upstream (unknown model) is not a call: nothing observed for it
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    after = scrape()

    def value(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert value("aigateway_upstream_duration_seconds_count") == 2
    assert value("aigateway_gateway_added_seconds_count") == 2
    assert value("aigateway_upstream_duration_seconds_sum") >= 2 * 1.5
    assert value("aigateway_gateway_added_seconds_sum") < 1.0
    total = value("aigateway_request_duration_seconds_sum")
    assert abs(value("aigateway_upstream_duration_seconds_sum") + value("aigateway_gateway_added_seconds_sum")
               - total) < 1e-6
