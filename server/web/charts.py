"""Success/failure over time as inline SVG, drawn on the server (no chart library).

`bar_chart` is pure: buckets in, SVG markup out. Bars are stacked (successes at the
bottom, failures on top); each bar has a `<title>` so hovering or a screen reader
tells the exact counts, and the whole picture has a text summary as its label.
"""

from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup, escape

from aami.server.services.ui_queries import Bucket


@dataclass(frozen=True)
class ChartSize:
    width: int = 1000  # wide and short: readable at 1280 px without dominating the page
    height: int = 180
    left: int = 40  # room for the y-axis labels
    bottom: int = 20  # room for the x-axis labels
    top: int = 8


def _nice_max(value: int) -> int:
    """The smallest 1/2/5 x 10^n at or above value, so axis labels are round."""
    if value <= 0:
        return 1
    scale = 1
    while True:
        for step in (1, 2, 5):
            if step * scale >= value:
                return step * scale
        scale *= 10


def bar_chart(buckets: list[Bucket], *, label: str, time_format: str = "%H:%M",
              size: ChartSize = ChartSize()) -> Markup:
    total_ok = sum(b.success for b in buckets)
    total_fail = sum(b.failed for b in buckets)
    summary = f"{label}: {total_ok} succeeded, {total_fail} failed"
    plot_w = size.width - size.left - 4
    plot_h = size.height - size.bottom - size.top
    top = _nice_max(max((b.success + b.failed for b in buckets), default=0))
    n = max(1, len(buckets))
    slot = plot_w / n
    bar_w = max(1.0, slot * 0.8)
    base_y = size.top + plot_h
    parts = [f'<svg class="chart" viewBox="0 0 {size.width} {size.height}" role="img" '
             f'aria-label="{escape(summary)}" xmlns="http://www.w3.org/2000/svg">',
             f"<title>{escape(summary)}</title>",
             f'<line class="axis" x1="{size.left}" y1="{base_y}" x2="{size.width - 4}" '
             f'y2="{base_y}"/>',
             f'<text x="{size.left - 4}" y="{size.top + 9}" text-anchor="end">{top}</text>',
             f'<text x="{size.left - 4}" y="{base_y}" text-anchor="end">0</text>']
    label_every = max(1, n // 6)
    for i, bucket in enumerate(buckets):
        x = size.left + i * slot + (slot - bar_w) / 2
        ok_h = plot_h * bucket.success / top
        fail_h = plot_h * bucket.failed / top
        when = bucket.start.strftime("%Y-%m-%d %H:%M")
        parts.append(f"<g><title>{when} UTC: {bucket.success} succeeded, "
                     f"{bucket.failed} failed</title>")
        if bucket.success:
            parts.append(f'<rect class="s" x="{x:.1f}" y="{base_y - ok_h:.1f}" '
                         f'width="{bar_w:.1f}" height="{ok_h:.1f}"/>')
        if bucket.failed:
            parts.append(f'<rect class="f" x="{x:.1f}" y="{base_y - ok_h - fail_h:.1f}" '
                         f'width="{bar_w:.1f}" height="{fail_h:.1f}"/>')
        if not bucket.success and not bucket.failed:
            # An empty slot still gets a hover target, so "nothing ran" is visible too.
            parts.append(f'<rect x="{x:.1f}" y="{size.top}" width="{bar_w:.1f}" '
                         f'height="{plot_h}" fill="transparent"/>')
        parts.append("</g>")
        if i % label_every == 0:
            parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{size.height - 5}" '
                         f'text-anchor="middle">{bucket.start.strftime(time_format)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every interpolated text is escaped or numeric
