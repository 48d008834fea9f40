"""Item 4 of issue 13: the API docs' examples name models the gateway actually serves:
the portal text's `llama-3.1-70b` / `nomic-embed-text` when served, else the first served
chat and embedding model. In a demo-like config the pasted examples work."""

from __future__ import annotations

import html
import json
import re
import urllib.request
from urllib.parse import urlsplit

from aigateway.config import Config
from aigateway.demo.setup import demo_config
from tests.conftest import gateway_config
from tests.portal.conftest import PortalClient
from tests.portal.test_pages import code_blocks

MODEL_IN_EXAMPLE = re.compile(r"""["']?model["']?\s*[:=]\s*["']([^"']+)["']""")


def _demo_like(mock_url: str, sqlite_url: str) -> Config:
    base = Config.model_validate({"database": {"url": sqlite_url}, "billing": {"flush_interval": 0.02},
                                  "server": {"demo_port": urlsplit(mock_url).port}})
    return demo_config(base, database_overridden=True)


def _post(url: str, key: str, body: dict) -> tuple[int, dict | str]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
            return r.status, raw.decode() if body.get("stream") else json.loads(raw)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_demo_docs_examples_name_served_models_and_work_when_pasted(start_gateway, mock_upstream, sqlite_url):
    server = start_gateway(_demo_like(mock_upstream.url, sqlite_url))
    page = PortalClient(server).get("/docs").text
    blocks = code_blocks(page)
    named = {m for b in blocks for m in MODEL_IN_EXAMPLE.findall(b)}
    assert named == {"mock-chat", "mock-embed"}, named
    assert "llama-3.1-70b" not in html.unescape(page) and "nomic-embed-text" not in html.unescape(page)
    # paste the curl examples' JSON bodies, with a real key, against the real gateway
    _, key = server.customer("docs@example.com", credit="10")
    curls = [b for b in blocks if b.startswith("# Replace YOUR_API_KEY") or b.startswith("# Single string")]
    assert len(curls) == 2
    for block in curls:
        for path, body in re.findall(r"curl -X POST \S*(/v1/\S+) \\.*?-d '([^']*)'", block, re.S):
            status, answer = _post(server.url + path, key, json.loads(body))
            assert status == 200, (path, body, answer)
            assert ("data: [DONE]" in answer) if isinstance(answer, str) else answer.get("model")


def test_spec_models_are_kept_when_served_and_replaced_when_not(start_gateway, mock_upstream, sqlite_url):
    # gateway_config serves llama-3.1-70b and nomic-embed-text: the portal text's names stay
    server = start_gateway(gateway_config(mock_upstream.url, sqlite_url))
    named = {m for b in code_blocks(PortalClient(server).get("/docs").text) for m in MODEL_IN_EXAMPLE.findall(b)}
    assert named == {"llama-3.1-70b", "nomic-embed-text"}


def test_first_served_model_of_each_type_when_the_spec_ones_are_absent(start_gateway, mock_upstream, sqlite_url):
    config = gateway_config(mock_upstream.url, sqlite_url)
    config.models = [m for m in config.models if m.name not in ("llama-3.1-70b", "nomic-embed-text")]
    server = start_gateway(Config.model_validate(config.model_dump()))
    named = {m for b in code_blocks(PortalClient(server).get("/docs").text) for m in MODEL_IN_EXAMPLE.findall(b)}
    # config order: the first priced chat model and the first embedding model
    assert named == {"mock-nousage", "mock-embed-nousage"}
