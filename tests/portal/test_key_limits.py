"""Issue 16: a customer sets a key's limits on the API Keys tab; the list shows this period's
spend against the cap, and the gateway enforces what was saved."""

from __future__ import annotations

import time

import openai
import pytest

from tests.portal.conftest import csrf_of


def test_customer_sets_limits_and_sees_spend_against_the_cap(visitor, gateway):
    v = visitor()
    cid = v.signup("limits@example.com")
    gateway.credit(cid, "10", "test-credit:limits")
    _, secret = v.create_key("app")
    [(key_id,)] = gateway.sql("SELECT id FROM api_keys WHERE customer_id = :c", c=cid)
    page = v.get("/keys").text
    assert "0.000000 TMT this month, no cap" in page

    bad = v.post(f"/keys/{key_id}/limits", {"csrf": csrf_of(page), "spend_cap": "lots", "spend_period": "day"})
    assert bad.status_code == 400 and "The spend cap is an amount in TMT" in bad.text
    saved = v.post(f"/keys/{key_id}/limits", {"csrf": csrf_of(page), "spend_cap": "0.5", "spend_period": "day",
                                               "rpm": "2", "tpm": "", "concurrency": "", "expires": "2099-12-31"})
    assert saved.status_code == 303 and saved.headers["Location"] == "/keys?m=limits"
    shown = v.get("/keys?m=limits").text
    assert "Limits saved" in shown and "0.000000 of 0.500000 TMT today" in shown and 'value="2099-12-31"' in shown

    gateway.run(gateway.gateway.key_limits.refresh())  # instead of waiting for the 1 s refresher
    while time.time() % 60 > 50:  # rates count in one-minute windows: not at a minute's last seconds
        time.sleep(0.2)
    client = openai.OpenAI(api_key=secret, base_url=gateway.base_url, max_retries=0)
    for _ in range(2):
        client.chat.completions.create(model="llama-3.1-70b", messages=[{"role": "user", "content": "Hi"}])
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="llama-3.1-70b", messages=[{"role": "user", "content": "Hi"}])
    assert refused.value.response.headers["Retry-After"]
    gateway.flush()
    [(spent,)] = gateway.sql("SELECT SUM(cost) FROM usage_records WHERE api_key_id = :k", k=key_id)
    assert f"{spent / 1e6:.6f} of 0.500000 TMT today" in v.get("/keys").text


def test_another_customers_key_cannot_be_limited(visitor, gateway):
    owner, other = visitor(), visitor()
    cid = owner.signup("owner-l@example.com")
    owner.create_key("mine")
    other.signup("other-l@example.com")
    [(key_id,)] = gateway.sql("SELECT id FROM api_keys WHERE customer_id = :c", c=cid)
    r = other.post(f"/keys/{key_id}/limits", {"csrf": csrf_of(other.get("/keys").text), "rpm": "1"})
    assert r.status_code == 404
    assert gateway.sql("SELECT count(*) FROM api_key_limits")[0][0] == 0
