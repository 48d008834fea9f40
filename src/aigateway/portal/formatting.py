"""How the portal writes money, numbers and times: one function per kind, per locale (Babel).

Money (TMT) is stored as integer micro-TMT, six decimal places. Every amount the portal
shows goes through `tmt_text`, with a fixed number of decimals per *context*:

  balance  2 places  balances, deposits, credits, adjustments, transaction amounts,
                     30-day spend. Rounded toward zero, so a balance is never shown
                     larger than it is; a non-zero amount below 0.01 reads "<0.01".
  usage    6 places  request, per-model and per-day costs: exact (1 unit = 0.000001).
  price    4 places  prices per 1M tokens; rounded up, so a price never reads lower
                     than what is charged.
  axis     as many places as the chart's tick step needs (at most 6).
  csv      6 places  exact, "." as the decimal point, no grouping: for machines.

Where a shown amount is rounded, the exact amount is in the element's title (`tmt_html`),
and the CSV export always carries it. Times are shown in UTC, labelled "UTC".
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import ROUND_DOWN, ROUND_UP, Decimal

from babel.dates import format_date, format_datetime
from babel.numbers import format_decimal
from markupsafe import Markup, escape

from aigateway.money import UNITS_PER_TMT

PLACES = {"balance": 2, "usage": 6, "price": 4, "csv": 6}
ROUNDING = {"price": ROUND_UP}  # everything else: toward zero
_UNIT = Decimal(1) / UNITS_PER_TMT


def _pattern(places: int) -> str:
    return "#,##0" + ("." + "0" * places if places else "")


def tmt_text(units: int | None, context: str = "balance", locale: str = "en", *, sign: bool = False,
             places: int | None = None) -> str:
    """`units` micro-TMT as text in `context` (see the module docstring) for `locale`.
    `sign` puts a "+" before positive amounts (ledger entries)."""
    if units is None:
        return "—"
    if context == "csv":
        return str((Decimal(units) * _UNIT).quantize(Decimal("0.000001")))
    if places is None:
        places = PLACES[context]
    exact = Decimal(units) * _UNIT
    shown = exact.quantize(Decimal(1).scaleb(-places), rounding=ROUNDING.get(context, ROUND_DOWN))
    plus = "+" if sign and units > 0 else ""
    if units != 0 and shown == 0:  # e.g. a 0.000052 charge at 2 places
        smallest = format_decimal(Decimal(1).scaleb(-places), format=_pattern(places), locale=locale)
        return f"{'-' if units < 0 else plus}<{smallest}"
    text = format_decimal(shown, format=_pattern(places), locale=locale, decimal_quantization=False)
    return plus + text


def tmt_exact(units: int | None, locale: str = "en") -> str:
    return tmt_text(units, "usage", locale)


def tmt_html(units: int | None, context: str = "balance", locale: str = "en", *, sign: bool = False) -> Markup:
    """The amount in a <span> whose title holds the exact value (when the text is rounded)."""
    text = tmt_text(units, context, locale, sign=sign)
    if units is None:
        return Markup(escape(text))
    if units % 10 ** (6 - PLACES.get(context, 6)) == 0:  # nothing was rounded away
        return Markup('<span class="tmt">{}</span>').format(text)
    exact = tmt_text(units, "usage", locale, sign=sign)
    return Markup('<span class="tmt" title="{} TMT">{}</span>').format(exact, text)


def axis_places(step_units: float) -> int:
    """Decimals a chart axis needs to tell its ticks (multiples of `step_units`) apart."""
    step = Decimal(str(step_units)) * _UNIT
    places = 0
    while places < 6 and step != step.quantize(Decimal(1).scaleb(-places)):
        places += 1
    return places


def number(value: int | float | Decimal | None, locale: str = "en") -> str:
    return "—" if value is None else format_decimal(value, locale=locale)


def utc(value: datetime) -> datetime:
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def when(value: datetime | None, locale: str = "en", *, with_time: bool = True) -> str:
    """A moment in UTC, labelled: '5 Jan 2026, 09:30 UTC' (per locale)."""
    if value is None:
        return "—"
    pattern = "d MMM y, HH:mm" if with_time else "d MMM y"
    return format_datetime(utc(value), pattern, tzinfo=timezone.utc, locale=locale) + " UTC"


def day_label(value: date | str, locale: str = "en") -> str:
    """A UTC day ('2026-01-05' or a date): 'Mon 5 Jan 2026'."""
    if isinstance(value, str):
        value = date.fromisoformat(value)
    return format_date(value, "EEE d MMM y", locale=locale)


def short_day(value: date, locale: str = "en") -> str:
    """A chart axis day: '5 Jan'."""
    return format_date(value, "d MMM", locale=locale)


def time_utc(value: datetime, locale: str = "en") -> str:
    return format_datetime(utc(value), "HH:mm:ss", tzinfo=timezone.utc, locale=locale) + " UTC"
