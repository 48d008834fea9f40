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

Amounts that reach the portal as decimal text (the Deposit tab's rate and USDT amounts,
from the deposits concern) are written in the locale's digits by `decimal_text`, every
digit kept; TMT given as text goes through `tmt_units` and then `tmt_html` like any other.
A form field that takes money back (a key's spend cap) is filled by `tmt_input` (no
grouping, trailing zeros trimmed) and read by `parse_amount`, which accepts either "," or
"." as the decimal sign and ignores grouping spaces.
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime
from decimal import ROUND_DOWN, ROUND_UP, Decimal, InvalidOperation

from babel.dates import format_date, format_datetime
from babel.numbers import format_decimal, get_decimal_symbol, get_group_symbol, get_minus_sign_symbol
from markupsafe import Markup, escape

from aigateway.money import UNITS_PER_TMT, MoneyError, to_units
from aigateway.timeutil import as_utc

PLACES = {"balance": 2, "usage": 6, "price": 4, "csv": 6}
ROUNDING = {"price": ROUND_UP}  # everything else: toward zero
_UNIT = Decimal(1) / UNITS_PER_TMT


def _pattern(places: int) -> str:
    return "#,##0" + ("." + "0" * places if places else "")


@functools.cache
def _symbols(locale: str) -> tuple[str, str, str]:
    """(group, decimal, minus) of a locale, read once from Babel (CLDR)."""
    return get_group_symbol(locale), get_decimal_symbol(locale), get_minus_sign_symbol(locale)


def _decimal(value: Decimal | int, places: int, locale: str) -> str:
    """What babel's format_decimal(value, "#,##0.00…") gives for the portal's three locales
    (3-digit groups), at a fraction of its cost: the dashboard formats hundreds of amounts.
    tests/portal/test_polish.py checks the two agree."""
    group, point, minus = _symbols(locale)
    text = f"{abs(value):,.{places}f}" if places else f"{abs(value):,}"
    text = text.replace(",", "\0").replace(".", point).replace("\0", group)
    return (minus if value < 0 else "") + text


def tmt_text(units: int | None, context: str = "balance", locale: str = "en", *, sign: bool = False,
             places: int | None = None) -> str:
    """`units` micro-TMT as text in `context` (see the module docstring) for `locale`.
    `sign` puts a "+" before positive amounts (ledger entries). Integer arithmetic only."""
    if units is None:
        return "—"
    units = int(units)
    if context == "csv":
        whole, frac = divmod(abs(units), UNITS_PER_TMT)
        return f"{'-' if units < 0 else ''}{whole}.{frac:06d}"
    if places is None:
        places = PLACES[context]
    step = 10 ** (6 - places)
    kept, rest = divmod(abs(units), step)
    if rest and ROUNDING.get(context, ROUND_DOWN) == ROUND_UP:
        kept += 1
    group, point, minus = _symbols(locale)
    plus = "+" if sign and units > 0 else ""
    negative = minus if units < 0 else ""
    if units != 0 and kept == 0:  # e.g. a 0.000052 charge at 2 places
        return f"{negative or plus}<0{point}{'0' * (places - 1)}1"
    whole, frac = divmod(kept, 10 ** places)
    text = f"{whole:,}".replace(",", group) + (f"{point}{frac:0{places}d}" if places else "")
    return (negative or plus) + text


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


def tmt_units(text: str | int | Decimal | None) -> int | None:
    """TMT given as decimal text ('70.00', '70.000000') in micro-TMT, or None when it is not an amount."""
    if text is None or text == "":
        return None
    try:
        return to_units(text)
    except MoneyError:
        return None


def decimal_text(value: str | int | Decimal | None, locale: str = "en", *, min_places: int = 0) -> str:
    """A decimal that arrives as text (a rate, a USDT amount) in the locale's digits: every
    digit kept, at least `min_places` decimals. Text that is not a number is shown as is."""
    if value is None or value == "":
        return "—"
    try:
        number_value = Decimal(str(value).strip())
    except InvalidOperation:
        return str(value)
    if not number_value.is_finite():
        return str(value)
    exponent = number_value.as_tuple().exponent
    places = max(min_places, -exponent if isinstance(exponent, int) and exponent < 0 else 0)
    return _decimal(number_value, places, locale)


def tmt_input(units: int | None, locale: str = "en") -> str:
    """An amount as a form field's value: exact, no grouping, at least 2 decimals ('2,50' in ru)."""
    if units is None:
        return ""
    text = tmt_text(units, "usage", locale).replace(_symbols(locale)[0], "")
    point = _symbols(locale)[1]
    whole, _, frac = text.partition(point)
    frac = frac.rstrip("0").ljust(2, "0")
    return f"{whole}{point}{frac}"


def parse_amount(text: str) -> Decimal:
    """An amount typed by a customer: '2.50', '2,50', '1 234,5', '1,234.50'. The last of "," and "."
    is the decimal sign, any other one and spaces are grouping. MoneyError when it is not a number."""
    cleaned = "".join(ch for ch in text.strip() if not ch.isspace())
    cleaned = cleaned.replace("\u2212", "-")  # a typographic minus
    last = max(cleaned.rfind(","), cleaned.rfind("."))
    if last >= 0:
        cleaned = cleaned[:last].replace(",", "").replace(".", "") + "." + cleaned[last + 1:]
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise MoneyError(f"not an amount: {text!r}") from None
    if not value.is_finite():
        raise MoneyError(f"not an amount: {text!r}")
    return value


def axis_places(step_units: float) -> int:
    """Decimals a chart axis needs to tell its ticks (multiples of `step_units`) apart."""
    step = Decimal(str(step_units)) * _UNIT
    places = 0
    while places < 6 and step != step.quantize(Decimal(1).scaleb(-places)):
        places += 1
    return places


def number(value: int | float | Decimal | None, locale: str = "en") -> str:
    if value is None:
        return "—"
    if isinstance(value, int):
        return _decimal(value, 0, locale)
    return format_decimal(value, locale=locale)


def when(value: datetime | None, locale: str = "en", *, with_time: bool = True) -> str:
    """A moment in UTC, labelled: '5 Jan 2026, 09:30 UTC' (per locale)."""
    if value is None:
        return "—"
    pattern = "d MMM y, HH:mm" if with_time else "d MMM y"
    return format_datetime(as_utc(value), pattern, tzinfo=UTC, locale=locale) + " UTC"


@functools.lru_cache(maxsize=4096)
def day_label(value: date | str, locale: str = "en") -> str:
    """A UTC day ('2026-01-05' or a date): 'Mon 5 Jan 2026'."""
    if isinstance(value, str):
        value = date.fromisoformat(value)
    return format_date(value, "EEE d MMM y", locale=locale)


@functools.lru_cache(maxsize=4096)
def short_day(value: date, locale: str = "en") -> str:
    """A chart axis day: '5 Jan'."""
    return format_date(value, "d MMM", locale=locale)


def time_utc(value: datetime, locale: str = "en") -> str:
    return format_datetime(as_utc(value), "HH:mm:ss", tzinfo=UTC, locale=locale) + " UTC"
