"""Charts as inline SVG, drawn on the server: no JavaScript library, nothing fetched by the browser.

Each function returns `Markup` whose every text (labels, titles) went through `escape`, so a rule id or a
name can never inject markup. Sizes are in SVG user units; the SVG scales to its container (viewBox).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from markupsafe import Markup, escape

_FONT: Final = 'font-family="system-ui, sans-serif" font-size="11"'
_SMALL: Final = 'font-family="system-ui, sans-serif" font-size="9"'
_MUTED: Final = "#6b7280"


@dataclass(frozen=True)
class Series:
    """One stacked layer of a bar chart: its name (legend), colour and one value per bar."""

    name: str
    color: str
    values: Sequence[float]


def _nice_max(value: float) -> float:
    """The axis top: 1, 2 or 5 times a power of ten, at least `value`."""
    if value <= 0:
        return 1.0
    magnitude = 10.0 ** len(str(int(value))) / 10
    for step in (1.0, 2.0, 5.0, 10.0):
        if step * magnitude >= value:
            return step * magnitude
    return 10.0 * magnitude


def _open(title: str, width: int, height: int, title_x: int) -> list[str]:
    """The parts every chart starts with: the scalable SVG element and its title."""
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}" class="chart">',
        f'<text x="{title_x}" y="14" {_FONT} font-weight="600">{escape(title)}</text>',
    ]


def _y_grid(left: int, right_x: int, top: int, plot_h: int, tick: Callable[[float], str]) -> list[str]:
    """Grid lines at 0, half and the top of a vertical axis, labelled `tick(fraction of the top)`."""
    parts = []
    for fraction in (0, 0.5, 1):
        y = top + plot_h * (1 - fraction)
        parts.append(f'<line x1="{left}" x2="{right_x}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>')
        parts.append(
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" {_FONT} fill="{_MUTED}">{tick(fraction)}</text>'
        )
    return parts


def stacked_bars(
    labels: Sequence[str], series: Sequence[Series], *, title: str, width: int = 1200, height: int = 260
) -> Markup:
    """Vertical bars, one per label, the series stacked bottom-up; every 1/6 of the labels is printed."""
    left, right, top, bottom = 44, 8, 24, 22
    plot_w, plot_h = width - left - right, height - top - bottom
    n = len(labels)
    totals = [sum(s.values[i] for s in series) for i in range(n)]
    top_value = _nice_max(max(totals, default=0.0))
    parts = _open(title, width, height, left)
    parts += _y_grid(left, width - right, top, plot_h, lambda fraction: f"{top_value * fraction:g}")
    if n:
        slot = plot_w / n
        bar_w = max(1.0, slot * 0.8)
        every = max(1, n // 6)
        for i, label in enumerate(labels):
            x = left + i * slot + (slot - bar_w) / 2
            base = float(top + plot_h)
            for s in series:
                h = plot_h * s.values[i] / top_value
                if h > 0:
                    parts.append(
                        f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="{s.color}">'
                        f"<title>{escape(label)} {escape(s.name)}: {s.values[i]:g}</title></rect>"
                    )
                base -= h
            if i % every == 0:
                parts.append(
                    f'<text x="{x + bar_w / 2:.1f}" y="{height - 6}" text-anchor="middle" {_FONT} '
                    f'fill="{_MUTED}">{escape(label)}</text>'
                )
    else:
        parts.append(
            f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" text-anchor="middle" {_FONT} '
            f'fill="{_MUTED}">no verdicts in this window</text>'
        )
    legend_x = width - right
    for s in reversed(series):
        legend_x -= 8 + 7 * len(s.name) + 14
        parts.append(f'<rect x="{legend_x}" y="5" width="10" height="10" fill="{s.color}"/>')
        parts.append(f'<text x="{legend_x + 14}" y="14" {_FONT}>{escape(s.name)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text above went through escape()


def horizontal_bars(
    items: Sequence[tuple[str, float]], *, title: str, width: int = 640, color: str = "#2563eb"
) -> Markup:
    """One bar per (label, value), largest first as given; the value is printed at the bar's end."""
    row_h, top, label_w = 20, 24, 200
    height = top + row_h * max(1, len(items)) + 6
    peak = max((v for _, v in items), default=0.0) or 1.0
    plot_w = width - label_w - 60
    parts = _open(title, width, height, 0)
    if not items:
        parts.append(f'<text x="0" y="{top + 14}" {_FONT} fill="{_MUTED}">no rule fired in this window</text>')
    for i, (label, value) in enumerate(items):
        y = top + i * row_h
        w = max(1.0, plot_w * value / peak)
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end" {_FONT}>{escape(label[:32])}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" fill="{color}"/>'
            f'<text x="{label_w + w + 4:.1f}" y="{y + 14}" {_FONT} fill="{_MUTED}">{value:g}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text above went through escape()


def paired_bars(
    labels: Sequence[str], pair: tuple[Series, Series], *, title: str, width: int = 560, height: int = 200
) -> Markup:
    """Two bars side by side per label (e.g. reference and current shares of a feature's bins), values as
    fractions drawn in percent; every label is printed, so keep them few and short."""
    left, right, top, bottom = 40, 8, 24, 22
    plot_w, plot_h = width - left - right, height - top - bottom
    first, second = pair
    top_value = min(1.0, _nice_max(100 * max([*first.values, *second.values], default=0.0)) / 100)
    parts = _open(title, width, height, left)
    parts += _y_grid(left, width - right, top, plot_h, lambda fraction: f"{100 * top_value * fraction:g}%")
    slot = plot_w / max(1, len(labels))
    bar_w = max(1.0, slot * 0.4)
    for i, label in enumerate(labels):
        x = left + i * slot + slot * 0.1
        for j, s in enumerate(pair):
            h = plot_h * min(s.values[i], top_value) / top_value
            parts.append(
                f'<rect x="{x + j * bar_w:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{s.color}"><title>{escape(label)} {escape(s.name)}: {100 * s.values[i]:.1f}%</title></rect>'
            )
        parts.append(
            f'<text x="{x + bar_w:.1f}" y="{height - 6}" text-anchor="middle" {_SMALL} '
            f'fill="{_MUTED}">{escape(label)}</text>'
        )
    legend_x = width - right
    for s in reversed(pair):
        legend_x -= 8 + 7 * len(s.name) + 14
        parts.append(f'<rect x="{legend_x}" y="5" width="10" height="10" fill="{s.color}"/>')
        parts.append(f'<text x="{legend_x + 14}" y="14" {_FONT}>{escape(s.name)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text above went through escape()
