"""The send-rate chart as a PNG, drawn with matplotlib (the optional ``report`` extra)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: a file only

import matplotlib.pyplot as plt  # noqa: E402

from bulkmail.report.data import ReportData  # noqa: E402
from bulkmail.report.html import RATE_COLOUR  # noqa: E402


def write_png(data: ReportData, path: Path) -> Path:
    """Draw ``data.rate_series`` as columns into ``path``; returns it."""
    fig, ax = plt.subplots(figsize=(8, 3), dpi=100)
    try:
        xs = [t for t, _ in data.rate_series]
        ys = [r for _, r in data.rate_series]
        ax.bar(xs, ys, width=data.bucket_s * 0.9, align="edge", color=RATE_COLOUR)
        ax.set_xlabel("seconds since the first send")
        ax.set_ylabel("sends per second")
        ax.set_title(f"{data.name}: send rate ({data.bucket_s:g} s buckets)")
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


__all__ = ["write_png"]
