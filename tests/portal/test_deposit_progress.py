"""The Deposit tab in each language: its template is translated, and each deposit shows its
progress from the deposits service (seen, waiting, credited at a rate, not credited and why)
in the customer's language, its numbers in the language's format. (The tab in Chromium, in
each language: tests/portal/test_browser_walk.py.)"""

from __future__ import annotations

import pytest

from aigateway.portal import i18n
from aigateway.portal.pages import _deposit_view

OVERVIEW = {  # as deposits.service.DepositsService.overview gives it
    "network": "TRC-20", "rate": "3.50", "min_deposit": "5",
    "pending": [{"tx_id": "aa", "amount_usdt": "15.5", "seen_at": "2026-01-06T10:00:00+00:00",
                 "progress": "seen on chain; waiting for confirmation"}],
    "credited": [{"tx_id": "bb", "amount_usdt": "20", "amount_tmt": "70.00", "rate": "3.50",
                  "credited_at": "2026-01-05T09:30:00+00:00",
                  "progress": "credited 70.00 TMT at 3.50 TMT per USDT"}],
    "ignored": [{"tx_id": "cc", "amount_usdt": "0.5", "reason": "below the minimum deposit",
                 "progress": "not credited: below the minimum deposit", "seen_at": "2026-01-04T08:00:00+00:00"},
                {"tx_id": "dd", "amount_usdt": "9", "reason": "rejected by the operator: sent from a mixer",
                 "progress": "not credited: rejected by the operator: sent from a mixer",
                 "seen_at": "2026-01-03T08:00:00+00:00"}],
}


@pytest.mark.parametrize("locale, expected", [
    ("en", ["seen on chain; waiting for confirmation", "70.00 TMT at 3.50 TMT per USDT",
            "below the minimum deposit", "rejected by the operator: sent from a mixer"]),
    ("ru", ["замечен в блокчейне; ждём подтверждения", "70,00 TMT по курсу 3,50 TMT за 1 USDT",
            "меньше минимальной суммы пополнения", "rejected by the operator: sent from a mixer"]),
    ("tk", ["blokçeýnde göründi; tassyklanmagyna garaşylýar", "70,00 TMT, 1 USDT üçin 3,50 TMT hümmetinden",
            "iň az goýum mukdaryndan az", "rejected by the operator: sent from a mixer"]),
])
def test_each_deposit_shows_its_progress_translated(locale, expected):
    view = _deposit_view(OVERVIEW, i18n.load(locale).gettext, locale)
    # the operator's own note is shown as written
    assert [row["note"] for row in view["rows"]] == expected


@pytest.mark.parametrize("locale, rate, usdt, tmt", [
    ("en", "3.50", ["15.50", "20.00", "0.50", "9.00"], "70.00"),
    ("ru", "3,50", ["15,50", "20,00", "0,50", "9,00"], "70,00"),
    ("tk", "3,50", ["15,50", "20,00", "0,50", "9,00"], "70,00"),
])
def test_rate_and_amounts_are_written_in_the_language(locale, rate, usdt, tmt):
    view = _deposit_view({**OVERVIEW, "rate": "3.5", "min_deposit": "1000.5",
                          "credited": [{**OVERVIEW["credited"][0], "amount_tmt": "70.004"}]},
                         i18n.load(locale).gettext, locale)
    assert view["rate"] == rate
    assert view["min_deposit"] == {"en": "1,000.5"}.get(locale, "1\xa0000,5")
    assert [row["usdt"] for row in view["rows"]] == usdt
    credited = str(view["rows"][1]["tmt"])  # money: the one TMT format, the exact amount in the title
    exact = tmt[:-2] + "004000"  # 70.004000 / 70,004000
    assert credited == f'<span class="tmt" title="{exact} TMT">{tmt}</span>'


def test_a_port_without_progress_still_explains_what_it_can():
    view = _deposit_view({"pending": [{"tx_id": "x"}],
                          "ignored": [{"tx_id": "y", "reason": "below the minimum deposit"}]})
    assert [row["note"] for row in view["rows"]] == [None, "below the minimum deposit"]
