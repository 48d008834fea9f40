"""A ledger entry's memo on the Transactions page, in the customer's language.

The ledger keeps memos as the concern that wrote them made them, in English (the CSV
export and the operator's tools show them so): deposits "USDT deposit 20 USDT @ 3.50",
operator-entered deposits "USDT deposit (manual) 20 USDT @ 3.50: <reason>" or
"deposit (manual): <reason>", vouchers "Voucher (<batch label>)". Those known shapes are
rebuilt here from their parts, translated, with the amounts in the locale's digits
(portal.formatting). The operator's own words (a reason, a batch label, any other memo)
are shown as written: they are not the portal's text.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from aigateway.portal import formatting
from aigateway.portal.i18n import N_

Gettext = Callable[[str], str]

DEPOSIT = N_("USDT deposit: %(usdt)s USDT at %(rate)s TMT per USDT")
MANUAL_DEPOSIT = N_("USDT deposit entered by the operator: %(usdt)s USDT at %(rate)s TMT per USDT (%(reason)s)")
MANUAL_CREDIT = N_("Deposit entered by the operator (%(reason)s)")
VOUCHER = N_("Voucher (%(label)s)")

_NUMBER = r"-?\d+(?:\.\d+)?"
_DEPOSIT = re.compile(rf"USDT deposit ({_NUMBER}) USDT @ ({_NUMBER})\Z")
_MANUAL_DEPOSIT = re.compile(rf"USDT deposit \(manual\) ({_NUMBER}) USDT @ ({_NUMBER}): (.*)\Z", re.S)
_MANUAL_CREDIT = re.compile(r"deposit \(manual\): (.*)\Z", re.S)
_VOUCHER = re.compile(r"Voucher \((.*)\)\Z", re.S)


def _identity(text: str) -> str:
    return text


def memo_text(kind: str, memo: str | None, locale: str = "en", _: Gettext = _identity) -> str | None:
    """The memo as the customer reads it, or None when the entry has none."""
    if not memo:
        return None
    if kind in ("deposit", "adjustment"):  # a deposit entered by the operator is an adjustment
        if match := _DEPOSIT.match(memo):
            usdt, rate = match.groups()
            return _(DEPOSIT) % {"usdt": formatting.decimal_text(usdt, locale, min_places=2),
                                 "rate": formatting.decimal_text(rate, locale, min_places=2)}
        if match := _MANUAL_DEPOSIT.match(memo):
            usdt, rate, reason = match.groups()
            return _(MANUAL_DEPOSIT) % {"usdt": formatting.decimal_text(usdt, locale, min_places=2),
                                        "rate": formatting.decimal_text(rate, locale, min_places=2),
                                        "reason": reason}
        if match := _MANUAL_CREDIT.match(memo):
            return _(MANUAL_CREDIT) % {"reason": match.group(1)}
    if kind == "voucher" and (match := _VOUCHER.match(memo)):
        return _(VOUCHER) % {"label": match.group(1)}
    return memo
