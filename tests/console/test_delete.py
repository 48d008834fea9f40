"""Deleting providers and models in the console: asked first, refused while a model routes to the
provider, the model stops being served on every replica within the refresh interval, its usage and
price history stay, the config file's entries cannot be deleted here, audited; a viewer cannot."""

from __future__ import annotations

import re

import openai

from tests.conftest import gateway_config
from tests.console.conftest import make_operator


def test_delete_model_then_provider(gateway, console, start_gateway, mock_upstream, sqlite_url):
    replica = start_gateway(gateway_config(mock_upstream.url, sqlite_url))
    op = make_operator(gateway, "deleter@example.com")
    c = console()
    assert c.operator_login(op).status_code == 303
    assert c.form("/providers", "/providers", {"name": "extra", "base_url": mock_upstream.url + "/v1",
                                               "api_key_env": "", "api_key": ""}).status_code == 303
    assert c.form("/providers", "/models", {
        "name": "temp-model", "type": "chat", "routes": "extra mock-chat", "context_length": "",
        "max_output_tokens": "", "input_price": "1", "output_price": "2", "price_source": "",
        "price_source_model": "", "markup": ""}).status_code == 303
    _cid, key = gateway.customer("user@example.com")
    client = openai.OpenAI(api_key=key, base_url=replica.base_url, max_retries=0)

    def served() -> bool:
        try:
            client.chat.completions.create(model="temp-model", messages=[{"role": "user", "content": "hi"}])
        except openai.NotFoundError:
            return False
        return True

    replica.wait_for(served, timeout=10)
    gateway.flush()
    replica.flush()
    usage_sql = "SELECT id, customer_id, cost, input_tokens FROM usage_records WHERE model = 'temp-model' ORDER BY id"
    usage_before = [tuple(r) for r in gateway.sql(usage_sql)]
    assert any(r[2] > 0 for r in usage_before)  # (refused tries are recorded too, at 0)

    page = c.get("/providers").text
    assert 'href="/providers/delete?kind=model&amp;name=temp-model"' in page
    assert "/providers/delete?kind=provider&amp;name=mock" not in page  # the config's: read-only
    # the provider is still used: the confirmation page says so and offers no button; a forced POST is refused
    ask = c.get("/providers/delete?kind=provider&name=extra").text
    assert 'data-testid="still-used">Models still route to extra: temp-model.' in ask and 'class="danger"' not in ask
    r = c.form("/providers", "/providers/delete", {"kind": "provider", "name": "extra", "confirm": "yes"})
    assert r.status_code == 409 and "Models still route to extra: temp-model." in r.text
    # a config provider or model cannot be deleted here
    r = c.form("/providers", "/providers/delete", {"kind": "provider", "name": "mock", "confirm": "yes"})
    assert r.status_code == 409 and "The config file defines provider mock" in r.text
    r = c.form("/providers", "/providers/delete", {"kind": "model", "name": "llama-3.1-70b", "confirm": "yes"})
    assert r.status_code == 409 and "The config file defines model llama-3.1-70b" in r.text
    # without the confirmation, a POST only leads to the question
    r = c.form("/providers", "/providers/delete", {"kind": "model", "name": "temp-model"})
    assert r.status_code == 303 and r.headers["Location"] == "/providers/delete?kind=model&name=temp-model"
    assert "Every replica stops serving" in c.get(r.headers["Location"]).text
    r = c.form("/providers/delete?kind=model&name=temp-model", "/providers/delete",
               {"kind": "model", "name": "temp-model", "confirm": "yes"})
    assert r.status_code == 303 and r.headers["Location"] == "/providers?m=deleted-model"
    replica.wait_for(lambda: not served(), timeout=10)  # the replica's refresh (5 s) removes it
    # history stays: usage rows and the price versions are untouched
    gateway.flush()
    replica.flush()
    assert [tuple(r) for r in gateway.sql(usage_sql)][:len(usage_before)] == usage_before
    assert gateway.sql("SELECT count(*) FROM price_versions WHERE model = 'temp-model'")[0][0] == 1
    # now the provider can go
    r = c.form("/providers/delete?kind=provider&name=extra", "/providers/delete",
               {"kind": "provider", "name": "extra", "confirm": "yes"})
    assert r.status_code == 303
    assert gateway.sql("SELECT count(*) FROM catalog_providers")[0][0] == 0
    rows = gateway.sql("SELECT actor, action, target, before, after FROM console_audit_log "
                       "WHERE action LIKE '%.delete' ORDER BY id")
    assert [(r.action, r.target) for r in rows] == [("model.delete", "temp-model"), ("provider.delete", "extra")]
    assert '"routes":' in rows[0].before and rows[0].after is None
    assert '"key":"none"' in rows[1].before and rows[1].actor == "operator:deleter@example.com"


def test_viewer_cannot_delete(gateway, console):
    viewer = make_operator(gateway, "viewer-del@example.com", "viewer")
    c = console()
    assert c.operator_login(viewer).status_code == 303
    page = c.get("/providers")
    assert "Delete…" not in page.text
    assert c.get("/providers/delete?kind=model&name=x").status_code == 403
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    assert c.post("/providers/delete", {"csrf": csrf, "kind": "model", "name": "x", "confirm": "yes"}).status_code \
        == 403
