"""``bulkmail report``: one self-contained HTML page for a campaign, and its chart as a PNG.

>>> write_report(Campaign.from_file("spring.yaml"), Path("report.html"), png=True)  # doctest: +SKIP
[PosixPath('report.html'), PosixPath('report.png')]
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bulkmail.errors import ConfigError
from bulkmail.input.campaign import Campaign
from bulkmail.report.data import ReportData, collect
from bulkmail.report.html import render


def write_report(campaign: Campaign, out: Path, *, png: bool = False) -> list[Path]:
    """Write ``out`` (atomically) and, with ``png``, the send-rate chart beside it."""
    data = collect(campaign.name, campaign.journal, campaign.events)
    out = Path(out)
    _atomic_write(out, render(data).encode("utf-8"))
    written = [out]
    if png:
        try:
            from bulkmail.report.png import write_png
        except ImportError:
            raise ConfigError(
                "needs matplotlib, an optional extra: pip install 'bulkmail[report]'", key="--png"
            ) from None
        written.append(write_png(data, out.with_suffix(".png")))
    return written


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = ["ReportData", "collect", "render", "write_report"]
