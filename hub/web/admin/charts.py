"""Charts drawn on the server as SVG: no script, and nothing the CSP would refuse (no style
attributes; the looks come from classes in admin.css). Scaled by the browser's width
(viewBox), with a title and a table of the same numbers for screen readers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 28


@dataclass(frozen=True)
class Series:
    name: str
    css: str  # a class of admin.css: s1 .. s4
    values: list[int]


def bars(days: list[date], series: list[Series], title: str) -> Markup:
    """Stacked bars per day, one colour per series, with a y axis and the days' numbers."""
    totals = [sum(s.values[i] for s in series) for i in range(len(days))]
    top = _nice(max(totals, default=0))
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = inner_w / max(len(days), 1)
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>']
    for i in range(5):  # grid lines and their numbers
        value = top * i / 4
        y = TOP + inner_h - inner_h * i / 4
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
                     f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_num(value)}</text>')
    for i, day in enumerate(days):
        x = LEFT + i * step + step * 0.15
        base = TOP + inner_h
        for s in series:
            h = inner_h * s.values[i] / top if top else 0
            if h > 0:
                base -= h
                parts.append(f'<rect class="{s.css}" x="{x:.1f}" y="{base:.1f}" width="{step * 0.7:.1f}" '
                             f'height="{h:.1f}"><title>{day.day}.{day.month}.: {s.name} {s.values[i]}</title></rect>')
        if len(days) <= 12 or day.day in (1, 8, 15, 22, 29):
            parts.append(f'<text class="axis" x="{x + step * 0.35:.1f}" y="{HEIGHT - 8}" '
                         f'text-anchor="middle">{day.day}.</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _nice(value: int) -> int:
    """A round top for the y axis (4 grid steps)."""
    if value <= 4:
        return 4
    magnitude = 10 ** (len(str(value)) - 1)
    for factor in (1, 2, 2.5, 4, 5, 8, 10):
        top = int(factor * magnitude)
        if top >= value and top % 4 == 0:
            return top
    return value + (-value % 4)


def _num(value: float) -> str:
    return f"{value:,.0f}".replace(",", ".")
