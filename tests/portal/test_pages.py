"""The public pages (API documentation, models) and the Deposit tab, over HTTP."""

from __future__ import annotations

import html
import re
from pathlib import Path

from aigateway.appkeys import DEPOSITS
from tests.conftest import gateway_config, service_missing
from tests.portal.conftest import PortalClient

SPEC = Path(__file__).resolve().parents[3] / "shared" / "spec" / "portal-text.txt"


def spec_blocks(base: str) -> list[str]:
    """The portal spec's code examples, with the real base URL filled in."""
    if not SPEC.exists():
        service_missing(f"the portal spec at {SPEC}")
    text = SPEC.read_text()

    def between(start: str, end: str, occurrence: int = 0) -> str:
        at = -1
        for _ in range(occurrence + 1):
            at = text.index(start, at + 1)
        return text[at: text.index(end, at + 1)].strip()

    blocks = [
        between("# Replace YOUR_API_KEY", "# pip install openai"),
        between("# pip install openai", "// npm install openai", 0),
        between("// npm install openai", "Embeddings\n", 0),
        between("# Single string\ncurl", "# pip install openai"),
        between("# pip install openai", "// npm install openai", 1),
        between("// npm install openai", "Available Models", 1),
        between("curl /v1/models", "Authentication"),
    ]
    return [b.replace('"/v1"', f'"{base}/v1"').replace(" /v1/", f" {base}/v1/") for b in blocks]


def code_blocks(page: str) -> list[str]:
    return [html.unescape(m).strip() for m in re.findall(r"<pre class=\"code\"><code>(.*?)</code></pre>", page, re.S)]


def test_docs_show_the_spec_examples_with_the_real_base_url(start_gateway, mock_upstream, sqlite_url):
    base = "https://api.example.com"
    server = start_gateway(gateway_config(mock_upstream.url, sqlite_url, server={"public_url": base + "/"}))
    page = PortalClient(server).get("/docs").text  # public: no login needed
    shown = code_blocks(page)
    for block in spec_blocks(base):
        assert block in shown, block
    assert f'value="{base}/v1"' in page
    assert "Authorization: Bearer gw_your_api_key_here" in page
    for text in ["Everything you need to integrate AI Gateway into your application.",
                 "Register an account on this portal and top up your TMT balance via the Deposit tab.",
                 "Billed by input tokens only (no output tokens).",
                 "If balance is insufficient, the request returns 402 Payment Required.",
                 "Invalid or revoked API key", "Check key on API Keys tab", "Insufficient balance",
                 "Top up via Deposit tab", "Model not found", "Check model name via GET /v1/models",
                 "All providers unavailable", "Retry in a few minutes"]:
        assert text in html.unescape(page), text


def test_models_page_lists_servable_models_with_prices(visitor):
    page = html.unescape(visitor().get("/models").text)
    assert "All models available for use via the API. Prices are per 1 million tokens and update automatically." in page
    row = re.search(r"<code>llama-3\.1-70b</code>.*?</tr>", page, re.S).group(0)
    text = re.sub(r"<[^>]+>", "", row)  # prices: 4 places (portal.formatting, context "price")
    assert "Chat" in text and "0.3500 TMT" in text and "1.4000 TMT" in text and "8,192" in text
    row = re.search(r"<code>nomic-embed-text</code>.*?</tr>", page, re.S).group(0)
    assert "Embedding" in row and "0.0200 TMT" in re.sub(r"<[^>]+>", "", row)
    assert "unpriced-model" not in page  # not servable until priced
    assert "Prices last updated" in page and "UTC" in page


def test_deposit_tab_without_deposits(visitor):
    v = visitor()
    v.signup("nodep@example.com")
    page = v.get("/deposit").text
    assert "Deposits are not configured yet" in page
    assert "deposit-address" not in page and "qr-box" not in page  # no fake address


def test_deposit_tab_with_deposits(deposits_gateway):
    server, fake = deposits_gateway
    v = PortalClient(server)
    cid = v.signup("withdep@example.com")
    page = html.unescape(v.get("/deposit").text)
    assert f'value="TFake{cid:04d}Address5xQ9mVb7NzR2kLpW3"' in page
    assert "<svg" in page[page.index('class="qr-box"'):]
    assert ("Send USDT on the TRC-20 network to this address. Your TMT balance will be credited automatically "
            "within 1-2 minutes after confirmation.") in page
    assert "Important:</strong> Only send USDT (TRC-20) to this address. Sending other tokens may result in " \
           "permanent loss." in page
    assert "<strong>3.50</strong> TMT" in page and "5 USDT" in page
    assert "15.50" in page and "20.00" in page and "70.00" in page and "5 Jan 2026, 09:30 UTC" in page
    assert "Not credited" in page and "below the minimum deposit" in page and "TRC-20" in page
    assert fake.watched == [cid]
    # the live list the tab polls
    fragment = v.get("/deposit/status")
    assert fragment.status_code == 200 and "<html" not in fragment.text and "Credited" in fragment.text
    assert fake.watched == [cid, cid]
    # a customer's deposit address is theirs: another customer gets their own
    other = PortalClient(server)
    other_id = other.signup("otherdep@example.com")
    assert f"TFake{other_id:04d}" in other.get("/deposit").text and f"TFake{cid:04d}" not in other.get("/deposit").text


def test_pages_need_login_and_unknown_paths(visitor):
    v = visitor()
    for path in ["/dashboard", "/keys", "/transactions", "/transactions/export.csv", "/deposit", "/deposit/status"]:
        r = v.get(path)
        assert r.status_code == 303 and r.headers["Location"].startswith("/login?m=expired"), path
    assert v.get("/").headers["Location"] == "/login"
    v.signup("home@example.com")
    assert v.get("/").headers["Location"] == "/dashboard"
    assert v.get("/login").headers["Location"] == "/dashboard"
    assert v.get("/docs").status_code == 200 and v.get("/models").status_code == 200


def test_deposit_tab_with_the_real_deposits_concern(start_gateway, mock_upstream, sqlite_url):
    """The portal against the deposits concern itself (its watcher off: no network needed)."""
    from tests.deposits.conftest import deposits_section

    section = deposits_section("http://127.0.0.1:9", run_watcher=False)
    server = start_gateway(gateway_config(mock_upstream.url, sqlite_url, deposits=section))
    v = PortalClient(server)
    cid = v.signup("realdep@example.com")
    page = html.unescape(v.get("/deposit").text)
    address = re.search(r'id="deposit-address"[^>]*value="(T[1-9A-HJ-NP-Za-km-z]{33})"', page).group(1)
    assert address == server.run(server.app[DEPOSITS].address_for(cid))
    assert "<strong>3.50</strong> TMT" in page and "TRC-20 (TRON mainnet)" in page and "No deposits yet." in page
    assert v.get("/deposit/status").status_code == 200
