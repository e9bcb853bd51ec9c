"""`bulkmail report`: one self-contained HTML page about a campaign (and a PNG chart)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO


def cmd_report(argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    p = argparse.ArgumentParser(
        prog="bulkmail report",
        description="Write one HTML file (no external script, style or image) with the "
        "campaign's counts, send rate, outcomes, retries, bounces and complaints.",
    )
    p.add_argument("campaign", metavar="CAMPAIGN.yaml")
    p.add_argument("--out", default="report.html", help="the HTML file to write")
    p.add_argument("--journal", help="the campaign's journal, if not where the file says")
    p.add_argument("--png", action="store_true", help="also write the send-rate chart as PNG")
    args = p.parse_args(argv)
    from bulkmail.api import load_campaign
    from bulkmail.report import write_report

    campaign = load_campaign(args.campaign, {"journal": args.journal})
    for path in write_report(campaign, Path(args.out), png=args.png):
        print(f"wrote {path}", file=out)
    return 0


__all__ = ["cmd_report"]
