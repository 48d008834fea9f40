"""The usage chart: a stacked bar per day, one colour per model, as inline SVG.

Rendered on the server (no script, no external request); every bar has a
<title> for a hover tooltip and the page has the same numbers in a table for
screen readers and copy-paste.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypedDict

from markupsafe import Markup, escape

from aigateway.portal.formatting import axis_places, day_label, number, short_day, tmt_text
from aigateway.portal.i18n import N_
from aigateway.portal.queries import UsageSummary

PALETTE = ("#4f46e5", "#0d9488", "#f59e0b", "#e11d48", "#0284c7", "#7c3aed", "#94a3b8")
MAX_SERIES = 6  # the biggest models get a colour each; the rest share "Other models"
OTHER = N_("Other models")

METRICS = {
    "cost": N_("Cost (TMT)"),
    "tokens": N_("Tokens"),
    "requests": N_("Requests"),
}



class _Layout(TypedDict):
    width: int
    height: int
    label_every: int
    name: str


# Two drawings of the same data: a wide one, and a narrow one for phones (CSS shows one),
# so the labels keep a readable size at any width.
WIDE: _Layout = {"width": 960, "height": 280, "label_every": 5, "name": "wide"}
NARROW: _Layout = {"width": 400, "height": 250, "label_every": 7, "name": "narrow"}
RIGHT, TOP, BOTTOM = 10, 16, 32
CHAR_W = 7.0  # average width of an axis label character (12px font) in user units


def compact(n: float) -> str:
    """12345 -> '12.3k'; 2500000 -> '2.5M'."""
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= limit:
            text = f"{n / limit:.1f}".rstrip("0").rstrip(".")
            return text + suffix
    return f"{n:g}" if n != int(n) else str(int(n))


def _nice_max(peak: float) -> tuple[float, float]:
    """A round axis maximum above `peak` and its tick step (4 steps)."""
    if peak <= 0:
        return 4.0, 1.0
    raw = peak / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        step = m * magnitude
        if step * 4 >= peak:
            return step * 4, step
    return raw * 4, raw  # pragma: no cover


def series_of(summary: UsageSummary, metric: str) -> list[tuple[str, str, list[str]]]:
    """[(label, colour, [model names])] biggest first; the tail is grouped as OTHER."""
    ranked = sorted(summary.models, key=lambda m: (-getattr(m, metric), m.model))
    ranked = [m for m in ranked if getattr(m, metric) > 0] or ranked
    head = ranked if len(ranked) <= MAX_SERIES else ranked[:MAX_SERIES - 1]
    series = [(m.model, PALETTE[i], [m.model]) for i, m in enumerate(head)]
    if len(ranked) > len(head):
        series.append((OTHER, PALETTE[-1], [m.model for m in ranked[len(head):]]))
    return series


def _identity(text: str) -> str:
    return text


@dataclass(frozen=True)
class Words:
    """The locale and translator the chart's labels are written with."""

    locale: str = "en"
    gettext: Callable[[str], str] = _identity


def fmt(metric: str, value: float, words: Words = Words()) -> str:
    if metric == "cost":
        return tmt_text(int(value), "usage", words.locale) + " TMT"
    return number(int(value), words.locale)


def render(summary: UsageSummary, metric: str, words: Words = Words()) -> Markup:
    return Markup(_draw(summary, metric, words, **WIDE) + _draw(summary, metric, words, **NARROW))


def _draw(summary: UsageSummary, metric: str, words: Words, *, width: int, height: int, label_every: int,
          name: str) -> str:
    _ = words.gettext
    series = series_of(summary, metric)
    peak = max((getattr(d, metric) for d in summary.days), default=0)
    top, step = _nice_max(peak)
    places = axis_places(step)
    ticks = [(step * i, tmt_text(int(step * i), "axis", words.locale, places=places) if metric == "cost"
              else compact(step * i)) for i in range(5)]
    left = 14 + CHAR_W * max(len(label) for _, label in ticks)
    plot_w, plot_h = width - left - RIGHT, height - TOP - BOTTOM
    slot = plot_w / len(summary.days)
    bar = max(2.0, slot * 0.68)
    title = _("%(metric)s per day, last %(days)s days") % {"metric": _(METRICS[metric]), "days": len(summary.days)}
    desc = _("Stacked bars, one per day (UTC), coloured by model. Total %(total)s.") % {
        "total": fmt(metric, getattr(summary.total, metric), words)}
    out = [
        f'<svg class="chart chart-{name}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="chart-title-{name} chart-desc-{name}" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="chart-title-{name}">{escape(title)}</title>',
        f'<desc id="chart-desc-{name}">{escape(desc)}</desc>',
    ]
    for value, label in ticks:  # grid and y-axis labels
        y = TOP + plot_h - plot_h * value / top
        out.append(f'<line class="grid" x1="{left:.1f}" x2="{width - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(f'<text class="axis" x="{left - 8:.1f}" y="{y + 4:.1f}" text-anchor="end">{escape(label)}</text>')
    last = len(summary.days) - 1
    for i, d in enumerate(summary.days):
        x = left + slot * i + (slot - bar) / 2
        base = TOP + plot_h
        lines = [_("%(day)s: %(requests)s requests, %(tokens)s tokens, %(cost)s") % {
            "day": day_label(d.day, words.locale), "requests": number(d.requests, words.locale),
            "tokens": number(d.tokens, words.locale), "cost": fmt("cost", d.cost, words)}]
        segments = []
        for label, colour, names in series:
            value = sum(d.by_model.get(n, {}).get(metric, 0) for n in names)
            if value <= 0:
                continue
            h = plot_h * value / top
            base -= h
            segments.append(f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar:.1f}" height="{max(h, 0.8):.1f}" '
                            f'fill="{colour}"/>')
            lines.append(f"{_(label) if label == OTHER else label}: {fmt(metric, value, words)}")
        out.append('<g class="day">')
        out.append(f"<title>{escape(chr(10).join(lines))}</title>")
        # an invisible full-height target, so the tooltip also works on short or empty bars
        out.append(f'<rect class="hit" x="{left + slot * i:.1f}" y="{TOP}" width="{slot:.1f}" height="{plot_h}"/>')
        out.extend(segments)
        out.append("</g>")
        if (last - i) % label_every == 0:  # counted back from today
            # today's label ends at the right edge instead of overflowing it
            cx, anchor = (left + slot * (i + 1), "end") if i == last else (left + slot * i + slot / 2, "middle")
            out.append(f'<text class="axis" x="{cx:.1f}" y="{height - 8}" text-anchor="{anchor}">'
                       f'{escape(short_day(d.day, words.locale))}</text>')
    out.append(f'<line class="baseline" x1="{left:.1f}" x2="{width - RIGHT}" y1="{TOP + plot_h}" '
               f'y2="{TOP + plot_h}"/>')
    out.append("</svg>")
    return "".join(out)


def legend(summary: UsageSummary, metric: str) -> list[tuple[str, str]]:
    return [(label, colour) for label, colour, _ in series_of(summary, metric)]
