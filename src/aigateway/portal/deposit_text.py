"""The Deposit tab's progress line per deposit, in the customer's language.

The deposits service describes each deposit in English (`progress`: seen, waiting for
confirmation, credited at a rate, not credited and why); its fixed phrases are listed
here so they are in the catalogs, and the two with values are rebuilt from the row's
fields. Text the portal does not know (an operator's own rejection note) is shown as is.
"""

from __future__ import annotations

from aigateway.portal import formatting
from aigateway.portal.i18n import N_

# The service's fixed phrases (deposits.service: _pending_progress, _NOT_CREDITED).
PHRASES = (
    N_("seen on chain"),
    N_("seen on chain; waiting for confirmation"),
    N_("seen on chain; crediting is delayed and retried automatically"),
    N_("below the minimum deposit"),
    N_("held for a review by the operator"),
    N_("the transaction failed on chain or is not a USDT transfer to this address"),
    N_("not confirmed on chain within the waiting time; the operator can check it again"),
)
_CREDITED, _NOT_CREDITED = "credited ", "not credited: "


def progress(row: dict, _=lambda text: text, locale: str = "en") -> str | None:
    """The translated progress of one deposit row from the port, or None when it has none.
    Shown beside the status badge, so it does not repeat "credited" / "not credited".
    Amounts and the rate are written in `locale`'s digits (portal.formatting)."""
    text = row.get("progress")
    if not text:
        return _(row["reason"]) if row.get("reason") else None
    if text.startswith(_CREDITED) and row.get("amount_tmt") and row.get("rate"):
        units = formatting.tmt_units(row["amount_tmt"])
        tmt = formatting.tmt_text(units, "balance", locale) if units is not None else str(row["amount_tmt"])
        rate = formatting.decimal_text(row["rate"], locale, min_places=2)
        return _("%(tmt)s TMT at %(rate)s TMT per USDT") % {"tmt": tmt, "rate": rate}
    if text.startswith(_NOT_CREDITED):
        return _(text.removeprefix(_NOT_CREDITED))
    return _(text)
