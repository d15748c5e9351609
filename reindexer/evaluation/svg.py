"""Two small inline SVG charts for the HTML report, drawn by hand.

No plotting library and no external assets: the report must be one file that
opens anywhere, CI artefact viewers included. The ``<svg>`` elements carry no
``xmlns`` because inline SVG in HTML5 does not need one (and the report then
holds no URL at all).
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

import numpy as np

WORSE, BETTER, NEUTRAL, AXIS = "#c0392b", "#1e8449", "#7f8c8d", "#555"


def _svg_open(css_class: str, width: float, height: float) -> str:
    return (
        f'<svg class="{css_class}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'role="img" font-family="sans-serif">'
    )


def _fmt(x: float) -> str:
    return f"{x:+.3f}" if x else "0"


def _scale(lo: float, hi: float, left: float, right: float):
    span = (hi - lo) or 1.0
    return lambda v: left + (v - lo) / span * (right - left)


def _half_range(values: Sequence[float], minimum: float, margin: float = 1.1) -> float:
    """A symmetric axis half-width: the largest magnitude times a margin, never zero."""
    finite = np.asarray([v for v in values if np.isfinite(v)], dtype=np.float64)
    biggest = float(np.abs(finite).max()) if finite.size else 0.0
    return max(biggest * margin, minimum)


def interval_plot(rows: Sequence[tuple[str, float, float, float]], *, title: str) -> str:
    """A forest plot: one row per metric, the delta as a dot, its CI as a bar, a line at 0.

    ``rows`` are (label, delta, ci_low, ci_high). Rows whose interval excludes
    zero are coloured (red below, green above).
    """
    row_h, left, right, top = 22, 120, 520, 34  # 540 wide: two charts fit side by side in 1100 px
    height = top + row_h * len(rows) + 30
    half = _half_range([v for _, d, lo, hi in rows for v in (d, lo, hi)], 1e-3)
    x = _scale(-half, half, left, right)
    parts = [
        _svg_open("intervals", right + 20, height),
        f"<title>{escape(title)}</title>",
        f'<text x="{left}" y="16" font-size="13" font-weight="bold">{escape(title)}</text>',
    ]
    bottom = top + row_h * len(rows)
    for tick in np.linspace(-half, half, 5):
        tx = x(tick)
        parts.append(f'<line x1="{tx:.1f}" y1="{top - 6}" x2="{tx:.1f}" y2="{bottom}" stroke="#ddd"/>')
        parts.append(f'<text x="{tx:.1f}" y="{bottom + 16}" font-size="11" text-anchor="middle">{_fmt(tick)}</text>')
    parts.append(f'<line x1="{x(0):.1f}" y1="{top - 6}" x2="{x(0):.1f}" y2="{bottom}" stroke="{AXIS}"/>')
    for i, (label, delta, lo, hi) in enumerate(rows):
        cy = top + row_h * i + row_h / 2
        colour = WORSE if hi < 0 else BETTER if lo > 0 else NEUTRAL
        tip = f"{label}: delta {delta:+.4f}, 95% CI [{lo:+.4f}, {hi:+.4f}]"
        parts += [
            f'<text x="{left - 8}" y="{cy + 4:.1f}" font-size="12" text-anchor="end">{escape(label)}</text>',
            f"<g><title>{escape(tip)}</title>"
            f'<line x1="{x(lo):.1f}" y1="{cy:.1f}" x2="{x(hi):.1f}" y2="{cy:.1f}" stroke="{colour}" stroke-width="2"/>'
            f'<circle cx="{x(delta):.1f}" cy="{cy:.1f}" r="4" fill="{colour}"/></g>',
        ]
    parts.append("</svg>")
    return "\n".join(parts)


def histogram(values: np.ndarray, *, title: str, bins_per_side: int = 10, tie_tolerance: float = 1e-12) -> str:
    """A histogram of per-query deltas: losses (red) | ties (grey) | wins (green).

    Ties are counted exactly and drawn as their own bar at 0, because they are
    usually the largest group and a bin around 0 would mix them with small
    wins and losses. Bins on each side start at 0, so no bin straddles it.
    """
    values = np.asarray(values, dtype=np.float64)
    ties = int(np.count_nonzero(np.abs(values) <= tie_tolerance))
    moved = values[np.abs(values) > tie_tolerance]
    half = _half_range(moved.tolist(), 1e-3, margin=1.0)  # the last bin includes its right edge
    side = np.linspace(0.0, half, bins_per_side + 1)
    edges = np.concatenate([-side[:0:-1], side])  # exactly 0 in the middle
    counts, _ = np.histogram(moved, bins=edges)

    width, height, left, right, top, plot_h = 540, 220, 40, 520, 30, 150
    bar_w = (right - left) / (2 * bins_per_side + 1)
    middle = (left + right) / 2
    span = middle - bar_w / 2 - left

    def x(v: float, negative: bool) -> float:
        """Negative deltas map left of the ties bar, positive ones right of it."""
        offset = abs(v) / half * span
        return middle - bar_w / 2 - offset if negative else middle + bar_w / 2 + offset

    tallest = max(int(counts.max(initial=0)), ties, 1)
    base = top + plot_h
    parts = [
        _svg_open("histogram", width, height),
        f"<title>{escape(title)}</title>",
        f'<text x="{left}" y="16" font-size="13" font-weight="bold">{escape(title)}</text>',
        f'<line x1="{left}" y1="{base}" x2="{right}" y2="{base}" stroke="{AXIS}"/>',
        f'<text x="{left - 6}" y="{top + 4}" font-size="11" text-anchor="end">{tallest}</text>',
        f'<text x="{left - 6}" y="{base}" font-size="11" text-anchor="end">0</text>',
    ]

    def bar(x0: float, x1: float, count: int, colour: str, tip: str) -> str:
        h = count / tallest * plot_h
        return (
            f'<rect x="{x0 + 0.5:.1f}" y="{base - h:.1f}" width="{max(x1 - x0 - 1, 1):.1f}" height="{h:.1f}" '
            f'fill="{colour}"><title>{escape(tip)}</title></rect>'
        )

    for i, count in enumerate(counts):
        if count:
            lo, hi = edges[i], edges[i + 1]
            negative = hi <= 0
            x0, x1 = sorted((x(lo, negative), x(hi, negative)))
            colour = WORSE if negative else BETTER
            parts.append(bar(x0, x1, int(count), colour, f"{count} queries with delta in [{lo:+.4f}, {hi:+.4f}]"))
    if ties:
        parts.append(bar(middle - bar_w / 2, middle + bar_w / 2, ties, NEUTRAL, f"{ties} queries unchanged"))
    for tx, label in ((left, _fmt(-half)), (middle, "ties"), (right, _fmt(half))):
        parts.append(f'<text x="{tx:.1f}" y="{base + 16}" font-size="11" text-anchor="middle">{label}</text>')
    parts.append(
        f'<text x="{middle:.1f}" y="{base + 34}" font-size="11" text-anchor="middle">'
        "per-query delta (candidate - baseline)</text>"
    )
    parts.append("</svg>")
    return "\n".join(parts)
