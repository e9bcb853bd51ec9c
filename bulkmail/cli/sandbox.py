"""`bulkmail sandbox`: the embedded SES/DirectMail emulator on 127.0.0.1."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from bulkmail.cli.send import _run


def cmd_sandbox(argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    p = argparse.ArgumentParser(
        prog="bulkmail sandbox",
        description="Run a local SES/DirectMail-compatible server that writes .eml files.",
    )
    p.add_argument("--port", type=int, default=8025)
    p.add_argument("--quota", type=float, help="recipients per second before throttling")
    p.add_argument("--daily-quota", type=int, help="recipients per day before refusing")
    p.add_argument("--outbox", default="outbox", help="folder for accepted messages")
    p.add_argument(
        "--latency",
        type=float,
        default=0.0,
        help="seconds to delay every answer (a distant provider)",
    )
    p.add_argument(
        "--faults",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of sends (0-1) that meet a fault: 500, 503, reset, lost answer, slow answer",
    )
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    from bulkmail.servers.sandbox import run_sandbox

    try:
        _run(
            run_sandbox(
                port=args.port,
                quota=args.quota,
                outbox=Path(args.outbox),
                daily_quota=args.daily_quota,
                latency=args.latency,
                fault_rate=args.faults,
                seed=args.seed,
            )
        )
    except KeyboardInterrupt:
        pass
    return 0


__all__ = ["cmd_sandbox"]
