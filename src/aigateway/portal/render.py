"""Jinja2 templates (autoescaped) and the filters the pages share."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import jinja2

from aigateway.money import format_tmt

TEMPLATES = Path(__file__).parent / "templates"


def tmt(units: int | None, min_places: int = 2) -> str:
    """Exact TMT with thousands separators, trailing zeros trimmed to `min_places`:
    10000000 -> '10.00', 1234567 -> '1.234567', -120 -> '-0.00012'."""
    if units is None:
        return "—"
    text = format_tmt(units)
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0").ljust(min_places, "0")
    sign = "-" if whole.startswith("-") else ""
    whole = f"{int(whole.lstrip('-')):,}"
    return f"{sign}{whole}.{frac}" if frac else f"{sign}{whole}"


def signed_tmt(units: int) -> str:
    return ("+" if units > 0 else "") + tmt(units)


def when(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if value is None:
        return "—"
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime(fmt) + " UTC"


def number(value: int | float | Decimal | None) -> str:
    return "—" if value is None else f"{value:,}"


def day_label(value: date) -> str:
    return f"{value:%a} {value.day} {value:%b %Y}"


def make_env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # every template, whatever its file name
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(tmt=tmt, signed_tmt=signed_tmt, when=when, number=number, day_label=day_label)
    return env
