"""A customer's key limits set from the console: the same service as the CLI and portal, applied by
the running gateway within about a second, validated on the form, audited before -> after; a viewer
sees them but cannot change them."""

from __future__ import annotations

import re

import openai

from tests.console.conftest import make_operator


def _key_id(gateway, cid: int) -> int:
    return gateway.sql("SELECT id FROM api_keys WHERE customer_id = :c", c=cid)[0][0]


def test_admin_sets_key_limits_and_the_gateway_applies_them(gateway, console):
    cid, key = gateway.customer("limited@example.com")
    kid = _key_id(gateway, cid)
    op = make_operator(gateway, "limits@example.com")
    c = console()
    assert c.operator_login(op).status_code == 303
    page = c.get(f"/customers/{cid}").text
    assert f'href="/customers/{cid}/keys/{kid}/limits"' in page
    path = f"/customers/{cid}/keys/{kid}/limits"
    # invalid values: every problem shown, nothing saved
    r = c.form(path, path, {"spend_cap": "-1", "spend_period": "week", "rpm": "0", "tpm": "x", "concurrency": "",
                            "expires": "soon", "models": "no-such-model"})
    assert r.status_code == 400
    for field in ("spend_cap", "spend_period", "rpm", "tpm", "expires", "models"):
        assert f"<li>{field}:" in r.text, field
    assert gateway.sql("SELECT count(*) FROM api_key_limits WHERE key_id = :k", k=kid)[0][0] == 0
    # a model allowlist: the other models are refused within about a second
    r = c.form(path, path, {"spend_cap": "2.5", "spend_period": "day", "rpm": "", "tpm": "", "concurrency": "3",
                            "expires": "2099-12-31", "models": "llama-3.1-70b"})
    assert r.status_code == 303 and r.headers["Location"] == path + "?m=saved"
    row = gateway.sql("SELECT spend_cap, spend_period, rpm, concurrency FROM api_key_limits WHERE key_id = :k",
                      k=kid)[0]
    assert tuple(row) == (2_500_000, "day", None, 3)
    client = openai.OpenAI(api_key=key, base_url=gateway.base_url, max_retries=0)
    client.chat.completions.create(model="llama-3.1-70b", messages=[{"role": "user", "content": "hi"}])

    def other_refused() -> bool:
        try:
            client.chat.completions.create(model="mock-long", messages=[{"role": "user", "content": "hi"}])
        except (openai.PermissionDeniedError, openai.NotFoundError):
            return True
        return False

    gateway.wait_for(other_refused, timeout=5)
    shown = c.get(path).text
    assert 'data-testid="models-now">llama-3.1-70b<' in shown and "Spend cap per day, TMT" in shown
    assert 'data-testid="cap">2.500000<' in shown
    # requests per minute: the second request in the minute is refused with 429
    r = c.form(path, path, {"spend_cap": "2.5", "spend_period": "day", "rpm": "1", "tpm": "", "concurrency": "3",
                            "expires": "2099-12-31", "models": ""})
    assert r.status_code == 303

    def limited() -> bool:
        try:
            for _ in range(2):
                client.chat.completions.create(model="mock-long", messages=[{"role": "user", "content": "hi"}])
        except openai.RateLimitError:
            return True
        except (openai.PermissionDeniedError, openai.NotFoundError):
            return False  # the allowlist is not lifted yet on this replica
        return False

    gateway.wait_for(limited, timeout=5)
    rows = gateway.sql("SELECT actor, action, target, before, after FROM console_audit_log "
                       "WHERE action = 'key.limits' ORDER BY id")
    assert [r.target for r in rows] == [f"customer:{cid} key:{kid}"] * 2
    assert rows[0].actor == "operator:limits@example.com"
    assert '"models":"all"' in rows[0].before and '"models":["llama-3.1-70b"]' in rows[0].after
    assert '"spend_cap":"2.500000"' in rows[0].after and '"spend_cap":null' in rows[0].before
    assert '"rpm":null' in rows[1].before and '"rpm":1' in rows[1].after and "spend_cap" not in rows[1].after
    # the audit page shows the change as before -> after
    assert "rpm: none → 1" in c.get("/audit").text


def test_viewer_sees_but_cannot_set_key_limits_and_foreign_keys_are_404(gateway, console):
    cid, _key = gateway.customer("seen@example.com")
    other, _ = gateway.customer("other@example.com")
    kid = _key_id(gateway, cid)
    viewer = make_operator(gateway, "viewer-limits@example.com", "viewer")
    c = console()
    assert c.operator_login(viewer).status_code == 303
    page = c.get(f"/customers/{cid}/keys/{kid}/limits")
    assert page.status_code == 200 and "Save limits" not in page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    r = c.post(f"/customers/{cid}/keys/{kid}/limits", {"csrf": csrf, "rpm": "1", "spend_period": "month"})
    assert r.status_code == 403
    assert c.get(f"/customers/{other}/keys/{kid}/limits").status_code == 404
    assert gateway.sql("SELECT count(*) FROM api_key_limits")[0][0] == 0
    assert gateway.sql("SELECT count(*) FROM console_audit_log WHERE action = 'key.limits'")[0][0] == 0
