"""One self-contained HTML page for a campaign: inline CSS, inline SVG charts, nothing fetched.

It opens from disk or as an email attachment: no script, no external style, font or image.

>>> page = render(data)                                           # doctest: +SKIP
>>> "<script" in page, "<svg" in page                             # doctest: +SKIP
(False, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from bulkmail.report.data import ReportData

RATE_COLOUR = "#2563eb"  # the send-rate chart: a test looks for it in the screenshot
_STATUS_COLOUR = {
    "sent": "#16a34a",
    "failed": "#dc2626",
    "skipped": "#a3a3a3",
    "pending": "#f59e0b",
    "in_flight": "#f59e0b",
    "uncertain": "#9333ea",
}
_CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#111}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px}
.sub{color:#555;margin-bottom:16px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{border:1px solid #ddd;border-radius:8px;padding:10px 14px;min-width:96px}
.card b{display:block;font-size:22px}.card span{color:#555;font-size:12px}
table{border-collapse:collapse}td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
svg text{font:11px system-ui,sans-serif;fill:#333}
"""


def _card(label: str, value: object) -> str:
    return f'<div class="card"><b>{escape(str(value))}</b><span>{escape(label)}</span></div>'


def rate_chart(series: Sequence[tuple[float, float]], bucket_s: float) -> str:
    """An SVG column chart of sends per second over time."""
    width, height, left, bottom = 760, 240, 48, 28
    if not series:
        return "<p>Nothing was sent, so there is no send rate to draw.</p>"
    peak = max(rate for _, rate in series) or 1.0
    plot_w, plot_h = width - left - 8, height - bottom - 8
    bar = plot_w / len(series)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="send rate over time">',
        f'<line x1="{left}" y1="8" x2="{left}" y2="{8 + plot_h}" stroke="#999"/>',
        f'<line x1="{left}" y1="{8 + plot_h}" x2="{width - 8}" y2="{8 + plot_h}" stroke="#999"/>',
    ]
    for frac in (0.5, 1.0):
        y = 8 + plot_h * (1 - frac)
        parts.append(
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{peak * frac:.3g}</text>'
        )
    for i, (_, rate) in enumerate(series):
        h = plot_h * rate / peak
        parts.append(
            f'<rect x="{left + i * bar:.2f}" y="{8 + plot_h - h:.2f}" '
            f'width="{max(bar - 1, 1):.2f}" height="{h:.2f}" fill="{RATE_COLOUR}"/>'
        )
    end = round(series[-1][0] + bucket_s, 3)
    parts.append(f'<text x="{left}" y="{height - 8}">0 s</text>')
    parts.append(f'<text x="{width - 8}" y="{height - 8}" text-anchor="end">{end:g} s</text>')
    parts.append("</svg>")
    return "".join(parts)


def bar_rows(items: Sequence[tuple[str, int, str]]) -> str:
    """A table whose last column is an inline SVG bar: (label, count, colour)."""
    if not items:
        return "<p>None.</p>"
    top = max(n for _, n, _ in items) or 1
    rows = []
    for label, n, colour in items:
        w = max(2, int(300 * n / top))
        rows.append(
            f"<tr><td>{escape(label)}</td><td class=n>{n:,}</td><td>"
            f'<svg width="302" height="12"><rect width="{w}" height="12" fill="{colour}"/>'
            "</svg></td></tr>"
        )
    return "<table>" + "".join(rows) + "</table>"


def render(data: ReportData) -> str:
    c = data.counts
    cards = "".join(
        _card(label, f"{c.get(key, 0):,}")
        for label, key in (
            ("recipients", "total"),
            ("sent", "sent"),
            ("failed", "failed"),
            ("skipped", "skipped"),
            ("pending", "pending"),
            ("uncertain", "uncertain"),
            ("possible duplicates", "possible_duplicate"),
        )
    )
    cards += _card("retries", f"{data.retries:,}") + _card("throttled (final)", data.throttled)
    for label in ("hard bounce", "complaint", "soft bounce"):
        cards += _card(label + "s", f"{data.events.get(label, 0):,}")
    outcomes = [
        (f"{status} · {code}" if code else status, n, _STATUS_COLOUR.get(status, "#666"))
        for (status, code), n in sorted(data.outcomes.items(), key=lambda kv: -kv[1])
    ]
    attempts = [
        (f"{n} attempt{'s' if n > 1 else ''}", rows, "#0891b2" if n > 1 else "#16a34a")
        for n, rows in sorted(data.attempts.items())
    ]
    domains = sorted(data.by_domain.items(), key=lambda kv: -sum(kv[1].values()))[:50]
    domain_rows = "".join(
        f"<tr><td>{escape(d)}</td>"
        + "".join(
            f"<td class=n>{k.get(label, 0):,}</td>"
            for label in ("hard bounce", "soft bounce", "complaint")
        )
        + "</tr>"
        for d, k in domains
    )
    domain_table = (
        "<table><tr><th>domain</th><th>hard bounces</th><th>soft bounces</th>"
        f"<th>complaints</th></tr>{domain_rows}</table>"
        if domains
        else "<p>No bounce or complaint recorded for this campaign.</p>"
    )
    span = f"{data.started} – {data.finished}" if data.started else "nothing sent yet"
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<title>bulkmail report: {escape(data.name)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{escape(data.name)}</h1><div class=sub>{escape(span)}</div>"
        f"<div class=cards>{cards}</div>"
        f"<h2>Send rate (sends per second, {data.bucket_s:g} s buckets)</h2>"
        f"{rate_chart(data.rate_series, data.bucket_s)}"
        f"<h2>Outcomes by status and error code</h2>{bar_rows(outcomes)}"
        f"<h2>Attempts per recipient (retries and throttles)</h2>{bar_rows(attempts)}"
        f"<h2>Bounces and complaints by recipient domain</h2>{domain_table}"
        "</body></html>\n"
    )


__all__ = ["RATE_COLOUR", "bar_rows", "rate_chart", "render"]
