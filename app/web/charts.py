"""Charts drawn as inline SVG on the server: no JavaScript library, readable on a phone.

Each chart is drawn twice, for a wide and a narrow viewBox (CSS shows one), because a single
viewBox scaled down to a phone shrinks its text below reading size. Every SVG carries a
<title> and <desc>; the templates add the numbers as a table for screen readers and copying.
Labels are escaped: local names and link URLs come from organizers and members.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from app.web.numbers import pct


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float]
    css: str = "s1"  # s1 (red), s2 (blue), s3 (grey): colours live in app.css


@dataclass(frozen=True)
class _Size:
    suffix: str
    width: int
    height: int
    font: int
    max_labels: int
    left: int


WIDE = _Size("w", 960, 300, 14, 14, 56)
# Drawn at about the phone's own width, so 15 units of text are about 15 px on the screen.
NARROW = _Size("n", 340, 260, 15, 6, 40)


def compact(value: float) -> str:
    """1234 -> "1.2k", 3_400_000 -> "3.4M": axis labels stay short."""
    value = float(value)
    for limit, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            text = f"{value / limit:.1f}".rstrip("0").rstrip(".")
            return f"{text}{unit}"
    return f"{value:.0f}" if value == int(value) else f"{value:.2g}"


def nice_ticks(top: float, count: int = 4) -> list[float]:
    """Round axis ticks from 0 to at least `top` (1, 2, 2.5 or 5 times a power of ten)."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    if step < 1:  # whole people: no ticks between 0 and 1
        step = 1.0
    ticks = [0.0]
    while ticks[-1] < top:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


# Label every k-th bucket, k from this list: hours land on 1, 2, 3, 6, 12 or 24-hour marks.
_LABEL_STEPS = (1, 2, 3, 4, 6, 12, 24, 48, 72, 96, 168, 336)


def label_step(labels: Sequence[str], band: float, font: int, max_labels: int) -> int:
    """The smallest step at which the widest label fits its slot (and no more than max_labels)."""
    widest = max((len(label) for label in labels), default=1) * font * 0.62 + font
    for step in _LABEL_STEPS:
        if band * step >= widest and len(labels) / step <= max_labels:
            return step
    return _LABEL_STEPS[-1]


def _attr(value: object) -> str:
    return str(escape(str(value)))


def _svg_open(chart_id: str, size: _Size, title: str, desc: str) -> list[str]:
    ident = f"{chart_id}-{size.suffix}"
    return [
        f'<svg class="chart-svg chart-{"wide" if size is WIDE else "narrow"}" '
        f'viewBox="0 0 {size.width} {size.height}" role="img" '
        f'aria-labelledby="{ident}-t {ident}-d" font-size="{size.font}" '
        f'preserveAspectRatio="xMidYMid meet">',
        f'<title id="{ident}-t">{escape(title)}</title>',
        f'<desc id="{ident}-d">{escape(desc)}</desc>',
    ]


@dataclass(frozen=True)
class _Plot:
    """Where a time chart draws: the plot area inside the legend, the axes' labels and margins."""

    size: _Size
    left: int
    top: int
    right: int
    plot_w: int
    plot_h: int
    y_max: float
    band: float  # the width of one bucket

    @classmethod
    def fit(cls, size: _Size, buckets: int, ticks: Sequence[float]) -> _Plot:
        font = size.font
        top, bottom, right = font * 2 + 10, font * 2 + 8, 10
        left = max(size.left, int(font * 0.62 * max(len(compact(t)) for t in ticks)) + 12)
        plot_w = size.width - left - right
        return cls(
            size, left, top, right, plot_w, size.height - top - bottom, ticks[-1] or 1,
            plot_w / max(1, buckets),
        )  # fmt: skip

    @property
    def base(self) -> int:
        return self.top + self.plot_h

    def y(self, value: float) -> float:
        return self.top + self.plot_h - self.plot_h * (value / self.y_max)

    def x_mid(self, i: int) -> float:
        return self.left + self.band * (i + 0.5)


def _time_chart(
    chart_id: str,
    size: _Size,
    *,
    title: str,
    desc: str,
    labels: Sequence[str],
    series: Sequence[Series],
    kind: str,
    point_titles: Sequence[str],
    anchors: Sequence[int] | None,
) -> str:
    ticks = nice_ticks(max((v for s in series for v in s.values), default=0))
    plot = _Plot.fit(size, len(labels), ticks)
    out = _svg_open(chart_id, size, title, desc)
    out += _legend(plot, series)
    out += _y_axis(plot, ticks)
    out += _x_axis(plot, labels, anchors)
    out += _bars(plot, series) if kind == "bar" else _lines(plot, series, len(labels))
    # Hover targets: one transparent column per point whose <title> a mouse user can read.
    out.extend(
        f'<rect class="hit" x="{plot.left + plot.band * i:.1f}" y="{plot.top}" '
        f'width="{plot.band:.1f}" height="{plot.plot_h}"><title>{escape(text)}</title></rect>'
        for i, text in enumerate(point_titles)
    )
    out.append("</svg>")
    return "".join(out)


def _legend(plot: _Plot, series: Sequence[Series]) -> list[str]:
    """Across the top: colour key then name, so it reads in one line on a phone too."""
    font, out = plot.size.font, []
    legend_x = plot.left
    for s in series:
        out.append(
            f'<rect class="key {s.css}" x="{legend_x}" y="{font * 0.4:.1f}" '
            f'width="{font}" height="{font}" rx="2"/>'
        )
        out.append(
            f'<text class="legend" x="{legend_x + font + 6}" y="{font * 1.3:.1f}">'
            f"{escape(s.name)}</text>"
        )
        legend_x += font + 16 + int(font * 0.6 * len(s.name))
    return out


def _y_axis(plot: _Plot, ticks: Sequence[float]) -> list[str]:
    """A grid line and a compact number at each tick."""
    font, out = plot.size.font, []
    for t in ticks:
        ty = plot.y(t)
        out.append(
            f'<line class="grid" x1="{plot.left}" x2="{plot.size.width - plot.right}" '
            f'y1="{ty:.1f}" y2="{ty:.1f}"/>'
        )
        out.append(
            f'<text class="tick" x="{plot.left - 6}" y="{ty + font * 0.35:.1f}" text-anchor="end">'
            f"{compact(t)}</text>"
        )
    return out


def _x_axis(plot: _Plot, labels: Sequence[str], anchors: Sequence[int] | None) -> list[str]:
    """Every k-th bucket's label (label_step), kept inside the drawing, and the axis line."""
    size, font, out = plot.size, plot.size.font, []
    step = label_step(labels, plot.band, font, size.max_labels)
    marks = anchors if anchors is not None else range(len(labels))
    for i, (label, mark) in enumerate(zip(labels, marks, strict=True)):
        if mark % step:
            continue
        lx = plot.x_mid(i)
        # Keep the first and last labels inside the drawing.
        half = len(label) * font * 0.31
        anchor = "middle"
        if lx - half < plot.left - font:
            anchor, lx = "start", max(lx - font, 2)
        elif lx + half > size.width:
            anchor, lx = "end", size.width - 2
        out.append(
            f'<line class="axis" x1="{plot.x_mid(i):.1f}" x2="{plot.x_mid(i):.1f}" '
            f'y1="{plot.base}" y2="{plot.base + 4}"/>'
        )
        out.append(
            f'<text class="tick" x="{lx:.1f}" y="{plot.base + font + 6}" '
            f'text-anchor="{anchor}">{escape(label)}</text>'
        )
    out.append(
        f'<line class="axis" x1="{plot.left}" x2="{size.width - plot.right}" '
        f'y1="{plot.base}" y2="{plot.base}"/>'
    )
    return out


def _bars(plot: _Plot, series: Sequence[Series]) -> list[str]:
    """Grouped bars; a few buckets would make slabs: bars stay at most 3 font-heights wide."""
    out = []
    inner = min(plot.band * 0.8, plot.size.font * 3 * len(series))
    bar_w = inner / max(1, len(series))
    for si, s in enumerate(series):
        parts = []
        for i, value in enumerate(s.values):
            if not value:
                continue
            bx = plot.x_mid(i) - inner / 2 + bar_w * si
            parts.append(
                f'<rect x="{bx:.1f}" y="{plot.y(value):.1f}" width="{max(bar_w - 1, 1):.1f}" '
                f'height="{plot.base - plot.y(value):.1f}"/>'
            )
        out.append(f'<g class="bars {s.css}">{"".join(parts)}</g>')
    return out


def _lines(plot: _Plot, series: Sequence[Series], buckets: int) -> list[str]:
    """A filled area and a line per series; dots on each point while there are few."""
    out = []
    x_mid, y, base = plot.x_mid, plot.y, plot.base
    for s in series:
        points = " ".join(f"{x_mid(i):.1f},{y(v):.1f}" for i, v in enumerate(s.values))
        if not points:
            continue
        area = f"{x_mid(0):.1f},{base:.1f} {points} {x_mid(len(s.values) - 1):.1f},{base:.1f}"
        out.append(f'<polygon class="area {s.css}" points="{area}"/>')
        out.append(f'<polyline class="line {s.css}" points="{points}"/>')
        if buckets <= 40:
            out.extend(
                f'<circle class="dot {s.css}" cx="{x_mid(i):.1f}" cy="{y(v):.1f}" r="3"/>'
                for i, v in enumerate(s.values)
            )
    return out


def time_chart(
    chart_id: str,
    *,
    title: str,
    desc: str,
    labels: Sequence[str],
    series: Sequence[Series],
    kind: str = "line",
    point_titles: Sequence[str] = (),
    narrow_labels: Sequence[str] | None = None,
    anchors: Sequence[int] | None = None,
) -> Markup:
    """A line (or grouped bar) chart over ordered buckets, drawn for wide and narrow screens.

    Args:
        chart_id: unique on the page (the ids of <title> and <desc> derive from it).
        labels: one short x label per bucket; only every k-th is printed so they never collide.
        anchors: one integer per bucket (e.g. local hours since the epoch); a label is printed
            where the anchor is a multiple of the step, so hourly labels fall on 6 am, noon...
        point_titles: one hover text per bucket ("Tue 2 pm: 40 opened, 5 clicked").
        narrow_labels: shorter labels for the phone variant (defaults to `labels`).
    """
    if kind not in ("line", "bar"):
        raise ValueError("kind is 'line' or 'bar'")
    wide = _time_chart(
        chart_id, WIDE, title=title, desc=desc, labels=labels, series=series, kind=kind,
        point_titles=point_titles, anchors=anchors,
    )  # fmt: skip
    narrow = _time_chart(
        chart_id, NARROW, title=title, desc=desc, labels=narrow_labels or labels, series=series,
        kind=kind, point_titles=point_titles, anchors=anchors,
    )  # fmt: skip
    return Markup(f'<div class="chart">{wide}{narrow}</div>')  # noqa: S704 - every label escaped


def threshold_meter(
    chart_id: str,
    *,
    title: str,
    desc: str,
    value: float | None,
    warning: float,
    alarm: float,
) -> Markup:
    """A horizontal scale: green up to `warning`, amber to `alarm`, red past it, and a marker.

    The scale runs to twice the alarm level (or just past the value when it is higher), so
    the green and amber zones stay visible however small they are.
    """
    width, height, left, right = 360, 64, 8, 8
    top_value = max(alarm * 2, (value or 0) * 1.15)
    plot = width - left - right

    def x(v: float) -> float:
        return left + plot * min(v, top_value) / top_value

    ident = f"{chart_id}-m"
    out = [
        f'<svg class="meter-svg" viewBox="0 0 {width} {height}" role="img" font-size="14" '
        f'aria-labelledby="{ident}-t {ident}-d">',
        f'<title id="{ident}-t">{escape(title)}</title>',
        f'<desc id="{ident}-d">{escape(desc)}</desc>',
        f'<rect class="zone healthy" x="{left}" y="20" '
        f'width="{x(warning) - left:.1f}" height="14"/>',
        f'<rect class="zone warning" x="{x(warning):.1f}" y="20" '
        f'width="{x(alarm) - x(warning):.1f}" height="14"/>',
        f'<rect class="zone alarm" x="{x(alarm):.1f}" y="20" '
        f'width="{width - right - x(alarm):.1f}" height="14"/>',
    ]
    for mark in (0.0, warning, alarm):
        anchor = "start" if mark == 0 else "middle"
        out.append(
            f'<text class="tick" x="{x(mark):.1f}" y="54" text-anchor="{anchor}">{pct(mark)}</text>'
        )
    if value is not None:
        vx = x(value)
        out.append(f'<path class="marker" d="M{vx:.1f},20 l-6,-14 h12 z"/>')
        out.append(f'<line class="marker-line" x1="{vx:.1f}" x2="{vx:.1f}" y1="18" y2="36"/>')
    out.append("</svg>")
    return Markup("".join(out))  # noqa: S704 - only numbers and escaped text
