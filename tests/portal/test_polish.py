"""Item 6 of issue 13 (polish), over HTTP: one money format, UTC times, styled 404/405
and GET /logout, the demo banner, registration that does not reveal accounts, the
dashboard's h1, the QR code's accessible name."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from aigateway.portal.formatting import tmt_html, tmt_text, when
from tests.portal.conftest import csrf_of
from tests.portal.test_docs_models import _demo_like

HTML = {"Accept": "text/html,application/xhtml+xml"}


@pytest.mark.parametrize("units,context,expected", [
    (17_500_000, "balance", "17.50"), (3_500_094, "balance", "3.50"), (52, "balance", "<0.01"),
    (-52, "balance", "-<0.01"), (0, "balance", "0.00"), (1_234_567_890, "balance", "1,234.56"),
    (52, "usage", "0.000052"), (50, "usage", "0.000050"), (3_500_094, "usage", "3.500094"),
    (350_000, "price", "0.3500"), (25, "price", "0.0001"), (-250_000, "csv", "-0.250000"),
    (1_234_567_890, "csv", "1234.567890"),
])
def test_one_money_format_with_fixed_places_per_context(units, context, expected):
    assert tmt_text(units, context) == expected


def test_signs_locales_and_the_exact_value_in_the_title():
    assert tmt_text(17_500_000, sign=True) == "+17.50" and tmt_text(-17_500_000, sign=True) == "-17.50"
    assert tmt_text(1_234_567_890, locale="ru") == "1\xa0234,56"
    assert str(tmt_html(3_500_094)) == '<span class="tmt" title="3.500094 TMT">3.50</span>'
    assert str(tmt_html(3_500_000)) == '<span class="tmt">3.50</span>'  # not rounded: no title needed
    assert when(datetime(2026, 1, 5, 9, 30, tzinfo=UTC)) == "5 Jan 2026, 09:30 UTC"
    assert when(datetime(2026, 1, 5, 9, 30)) == "5 Jan 2026, 09:30 UTC"  # naive = UTC (SQLite)


def test_transactions_show_two_places_with_the_exact_amount_in_the_title(visitor, gateway):
    v = visitor()
    cid = v.signup("money@example.com")
    gateway.credit(cid, "3.500094", "test:odd-credit")
    page = v.get("/transactions").text
    assert '<span class="tmt" title="+3.500094 TMT">+3.50</span>' in page
    csv_text = v.get("/transactions/export.csv").text
    assert ",credit,3.500094," in csv_text


def test_unknown_urls_and_wrong_methods_get_styled_pages(visitor):
    v = visitor(HTML)
    r = v.get("/no-such-page")
    assert r.status_code == 404 and "text/html" in r.headers["Content-Type"]
    assert "<h1>Page not found</h1>" in r.text and 'href="/static/portal/portal.css' in r.text
    r = v.request("DELETE", "/keys")
    assert r.status_code == 405 and "<h1>" in r.text and "GET" in r.headers["Allow"]
    # the API keeps its own (JSON) errors
    assert "<h1>" not in v.get("/v1/no-such-endpoint").text
    assert "<h1>" not in visitor().get("/no-such-page").text  # no browser, no page


def test_get_logout_asks_and_post_logs_out(visitor):
    v = visitor(HTML)
    assert v.get("/logout").headers["Location"] == "/login"  # not logged in
    v.signup("bye@example.com")
    page = v.get("/logout")
    assert page.status_code == 200 and "<h1>Log out?</h1>" in page.text
    assert v.get("/dashboard").status_code == 200  # a GET alone does not log out
    r = v.post("/logout", {"csrf": csrf_of(page.text)})
    assert r.status_code == 303 and v.get("/dashboard").status_code == 303


def test_registration_does_not_reveal_whether_an_email_has_an_account(visitor, gateway):
    v = visitor()
    first = v.register("known@example.com")
    again = visitor().register("known@example.com", "another long passphrase here")
    other = visitor().register("KNOWN@example.com")
    for r in (first, again, other):
        assert r.status_code == 303 and r.headers["Location"] == "/login?m=created"
    assert gateway.sql("SELECT count(*) FROM customers")[0][0] == 1
    # the original password is untouched
    assert visitor().login("known@example.com").headers["Location"] == "/dashboard"


def test_dashboard_has_an_h1_and_the_qr_code_a_name(visitor, deposits_gateway):
    from tests.portal.conftest import PortalClient

    server, _ = deposits_gateway
    v = PortalClient(server)
    v.signup("a11y@example.com")
    assert re.search(r"<h1[^>]*>Dashboard</h1>", v.get("/dashboard").text)
    deposit = v.get("/deposit").text
    assert re.search(r'<svg role="img" aria-label="QR code of your deposit address"[^>]*class="qr"', deposit)


def test_demo_mode_shows_a_banner_on_every_page(start_gateway, mock_upstream, sqlite_url, gateway):
    server = start_gateway(_demo_like(mock_upstream.url, sqlite_url))
    from tests.portal.conftest import PortalClient

    for path in ("/login", "/register", "/models", "/docs"):
        assert 'data-testid="demo-banner"' in PortalClient(server).get(path).text, path
    assert 'data-testid="demo-banner"' not in PortalClient(gateway).get("/login").text


@pytest.mark.parametrize("locale", ["en", "ru", "tk"])
def test_the_fast_money_format_agrees_with_babel(locale):
    from decimal import ROUND_DOWN, Decimal

    from babel.numbers import format_decimal

    from aigateway.portal.formatting import number

    for units in (0, 10_000, 3_500_094, -3_500_094, 999_999_999, 1_234_567_890_123, -7_000_001):
        for context, places in (("balance", 2), ("usage", 6)):
            exact = (Decimal(units) / 1_000_000).quantize(Decimal(1).scaleb(-places), rounding=ROUND_DOWN)
            if exact == 0 and units:
                continue  # "<0.01", checked above
            babel = format_decimal(exact, format="#,##0." + "0" * places, locale=locale, decimal_quantization=False)
            assert tmt_text(units, context, locale) == babel, (units, context)
        assert number(units, locale) == format_decimal(units, locale=locale)
