"""The usage chart: a stacked bar per day, one colour per model, as inline SVG.

Rendered on the server (no script, no external request); every bar has a
<title> for a hover tooltip and the page has the same numbers in a table for
screen readers and copy-paste.
"""

from __future__ import annotations

import math

from markupsafe import Markup, escape

from aigateway.money import UNITS_PER_TMT
from aigateway.portal.queries import UsageSummary

PALETTE = ("#4f46e5", "#0d9488", "#f59e0b", "#e11d48", "#0284c7", "#7c3aed", "#94a3b8")
MAX_SERIES = 6  # the biggest models get a colour each; the rest share "Other models"
OTHER = "Other models"

METRICS = {
    "cost": "Cost (TMT)",
    "tokens": "Tokens",
    "requests": "Requests",
}

# Two drawings of the same data: a wide one, and a narrow one for phones (CSS shows one),
# so the labels keep a readable size at any width.
WIDE = {"width": 960, "height": 280, "label_every": 5, "name": "wide"}
NARROW = {"width": 400, "height": 250, "label_every": 7, "name": "narrow"}
RIGHT, TOP, BOTTOM = 10, 16, 32
CHAR_W = 7.0  # average width of an axis label character (12px font) in user units


def compact(n: float) -> str:
    """12345 -> '12.3k'; 2500000 -> '2.5M'."""
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= limit:
            text = f"{n / limit:.1f}".rstrip("0").rstrip(".")
            return text + suffix
    return f"{n:g}" if n != int(n) else str(int(n))


def tmt_short(units: float) -> str:
    value = units / UNITS_PER_TMT
    if value == 0:
        return "0"
    if value >= 1000:
        return compact(value)
    for places in (2, 3, 4, 5, 6):
        if abs(value) >= 10 ** -(places - 1) or places == 6:
            return f"{value:.{places}f}".rstrip("0").rstrip(".")
    return f"{value:.6f}"


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


def fmt(metric: str, value: float) -> str:
    if metric == "cost":
        return tmt_short(value) + " TMT"
    return f"{int(value):,}"


def render(summary: UsageSummary, metric: str) -> Markup:
    return Markup(_draw(summary, metric, **WIDE) + _draw(summary, metric, **NARROW))


def _draw(summary: UsageSummary, metric: str, *, width: int, height: int, label_every: int, name: str) -> str:
    series = series_of(summary, metric)
    peak = max((getattr(d, metric) for d in summary.days), default=0)
    top, step = _nice_max(peak)
    ticks = [(step * i, tmt_short(step * i) if metric == "cost" else compact(step * i)) for i in range(5)]
    left = 14 + CHAR_W * max(len(label) for _, label in ticks)
    plot_w, plot_h = width - left - RIGHT, height - TOP - BOTTOM
    slot = plot_w / len(summary.days)
    bar = max(2.0, slot * 0.68)
    out = [
        f'<svg class="chart chart-{name}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="chart-title-{name} chart-desc-{name}" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="chart-title-{name}">{escape(METRICS[metric])} per day, last {len(summary.days)} days</title>',
        f'<desc id="chart-desc-{name}">Stacked bars, one per day (UTC), coloured by model. '
        f'Total {escape(fmt(metric, getattr(summary.total, metric)))}.</desc>',
    ]
    for value, label in ticks:  # grid and y-axis labels
        y = TOP + plot_h - plot_h * value / top
        out.append(f'<line class="grid" x1="{left:.1f}" x2="{width - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(f'<text class="axis" x="{left - 8:.1f}" y="{y + 4:.1f}" text-anchor="end">{escape(label)}</text>')
    last = len(summary.days) - 1
    for i, d in enumerate(summary.days):
        x = left + slot * i + (slot - bar) / 2
        base = TOP + plot_h
        lines = [f"{d.day:%a %d %b %Y}: {d.requests:,} requests, {d.tokens:,} tokens, {tmt_short(d.cost)} TMT"]
        segments = []
        for label, colour, names in series:
            value = sum(d.by_model.get(n, {}).get(metric, 0) for n in names)
            if value <= 0:
                continue
            h = plot_h * value / top
            base -= h
            segments.append(f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar:.1f}" height="{max(h, 0.8):.1f}" '
                            f'fill="{colour}"/>')
            lines.append(f"{label}: {fmt(metric, value)}")
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
                       f'{d.day.day} {d.day:%b}</text>')
    out.append(f'<line class="baseline" x1="{left:.1f}" x2="{width - RIGHT}" y1="{TOP + plot_h}" '
               f'y2="{TOP + plot_h}"/>')
    out.append("</svg>")
    return "".join(out)


def legend(summary: UsageSummary, metric: str) -> list[tuple[str, str]]:
    return [(label, colour) for label, colour, _ in series_of(summary, metric)]
