"""In headless Chromium: the operator exports a batch, a customer redeems a code on the Deposit tab.

Screenshots land in artifacts/screenshots/vouchers-*.png.
"""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest
from playwright.sync_api import expect

from aigateway.vouchers import codes
from tests.portal.conftest import shot
from tests.vouchers.conftest import balance_units, logged_in

pytestmark = pytest.mark.browser


def test_redeem_a_voucher_in_the_browser(gateway, browser, tmp_path, monkeypatch):
    # the operator creates and exports a batch, on the gateway's own database
    monkeypatch.delenv("AIGATEWAY_DATABASE_URL", raising=False)
    config = tmp_path / "op.toml"
    config.write_text(f'discover_ollama = false\n[database]\nurl = "{gateway.config.database.url}"\n')
    export = tmp_path / "vouchers.csv"
    # (a process of its own, as the operator runs it; Playwright's loop owns this thread)
    result = subprocess.run([sys.executable, "-m", "aigateway", "--config", str(config), "admin", "vouchers",
                             "create", "--amount", "50", "--count", "5", "--label", "Ashgabat kiosk 7",
                             "--out", str(export)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    code = next(csv.DictReader(export.open()))["code"]

    client, cid = logged_in(gateway, "kiosk@example.com")
    token = next(c.value for c in client.jar if c.name == "gw_session")

    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=gateway.url)
    ctx.add_cookies([{"name": "gw_session", "value": token, "url": gateway.url}])
    page = ctx.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(f"{r.method} {r.url}"))
    page.goto("/deposit")
    expect(page.get_by_role("heading", name="Redeem a voucher")).to_be_visible()

    # a typo is caught in the page, before the server is asked
    canonical = codes.normalise(code)
    typo = canonical[:5] + ("7" if canonical[5] != "7" else "8") + canonical[6:]
    field = page.get_by_test_id("voucher-code")
    field.fill(codes.group(typo))
    page.get_by_role("button", name="Redeem").click()
    expect(page.locator("[data-voucher-hint]")).to_have_text("This code has a typo: please check every character.")
    assert not any(r.startswith("POST") for r in requests)
    shot(page, "vouchers-1-typo")

    # the right code, typed in lower case without dashes
    field.fill(canonical.lower())
    with page.expect_navigation():
        page.get_by_role("button", name="Redeem").click()
    assert "/deposit/voucher?r=" in page.url
    expect(page.get_by_test_id("voucher-credited")).to_contain_text("+50.00 TMT credited to your balance "
                                                                    "(Ashgabat kiosk 7)")
    expect(page.locator(".balance-pill")).to_contain_text("50.00")
    shot(page, "vouchers-2-credited")
    assert balance_units(gateway, cid) == 50_000_000 == gateway.ledger_sum(cid)

    # reloading the result page credits nothing more (post/redirect/get)
    page.reload()
    assert balance_units(gateway, cid) == 50_000_000

    page.goto("/transactions")
    expect(page.get_by_text("Voucher (Ashgabat kiosk 7)")).to_be_visible()
    expect(page.get_by_text("+50.00").first).to_be_visible()
    expect(page.locator(".badge-voucher")).to_have_text("Voucher")
    shot(page, "vouchers-3-history")

    # the same code again: one message for every refusal
    page.goto("/deposit")
    page.get_by_test_id("voucher-code").fill(code)
    with page.expect_navigation():
        page.get_by_role("button", name="Redeem").click()
    expect(page.get_by_role("alert")).to_contain_text("This code cannot be redeemed.")
    shot(page, "vouchers-4-refused")

    # at phone width the form stays usable
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/deposit")
    form_box = page.get_by_role("button", name="Redeem").bounding_box()
    assert form_box is not None and form_box["x"] + form_box["width"] <= 390
    shot(page, "vouchers-5-phone")
    ctx.close()
