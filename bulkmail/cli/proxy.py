"""`bulkmail proxy PROXY.yaml`: the SES-API endpoint applications send through."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from typing import TextIO

from bulkmail.cli.send import _run


def cmd_proxy(argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    p = argparse.ArgumentParser(
        prog="bulkmail proxy",
        description="Serve the SES API; send every recipient its own message, paced.",
    )
    p.add_argument("config", help="the proxy's YAML file")
    args = p.parse_args(argv)
    from bulkmail.proxy import ProxyConfig, run_proxy

    config = ProxyConfig.from_file(args.config)
    logging.getLogger("bulkmail").setLevel(logging.INFO)
    try:
        summary = _run(run_proxy(config, out=out))
    except KeyboardInterrupt:
        return 0
    if summary is not None and summary.stop_kind in ("fatal", "quota"):
        print(f"bulkmail proxy: stopped: {summary.stopped}", file=err)
        return 2
    return 0


__all__ = ["cmd_proxy"]
