"""`bulkmail events` (the SNS endpoint) and `bulkmail suppress sync` (the account list)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from bulkmail.cli.send import _run
from bulkmail.errors import CampaignStopped


def cmd_events(argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    p = argparse.ArgumentParser(
        prog="bulkmail events",
        description="Serve the HTTP(S) endpoint Amazon SNS delivers SES bounce, complaint and "
        "delivery events to; permanent bounces and complaints go to the suppression file.",
    )
    p.add_argument("config", metavar="EVENTS.yaml")
    args = p.parse_args(argv)
    from bulkmail.deliverability.config import EventsConfig
    from bulkmail.servers.events import serve_events

    config = EventsConfig.from_file(args.config)  # ConfigError: exit 2, no traceback
    logging.getLogger("bulkmail.events").setLevel(logging.INFO)  # show who is suppressed
    try:
        _run(serve_events(config))
    except KeyboardInterrupt:
        pass
    except OSError as exc:  # the port is taken, the certificate cannot be read
        print(f"bulkmail: cannot serve {config.listen[0]}:{config.listen[1]}: {exc}", file=err)
        return 2
    return 0


def cmd_suppress(argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    p = argparse.ArgumentParser(
        prog="bulkmail suppress",
        description="Keep the SESv2 account suppression list and a local file in step.",
    )
    sub = p.add_subparsers(dest="action", required=True)
    s = sub.add_parser("sync", help="merge the account list and the file both ways")
    s.add_argument("--region", required=True, help="the SES region, e.g. eu-west-1")
    s.add_argument("--file", default="suppressed.txt", help="the local suppression file")
    s.add_argument("--endpoint", help="override the SESv2 endpoint URL (a local sandbox)")
    s.add_argument("--reason", choices=("BOUNCE", "COMPLAINT"), default="BOUNCE")
    s.add_argument("--events", help="an event store: its complaints are pushed as COMPLAINT")
    args = p.parse_args(argv)
    from bulkmail.credentials import aws_from_env
    from bulkmail.deliverability.account_sync import sync_suppression

    credentials = aws_from_env()  # CredentialsError: exit 2
    try:
        result = _run(
            sync_suppression(
                Path(args.file),
                credentials=credentials,
                region=args.region,
                endpoint=args.endpoint,
                reason=args.reason,
                events=Path(args.events) if args.events else None,
            )
        )
    except CampaignStopped as exc:
        print(f"bulkmail: {exc}", file=err)
        return 1
    print(
        f"suppress sync: {result.pulled} added to {args.file}, {result.pushed} added to the "
        f"account list; {result.local} in the file, {result.account} in the account",
        file=out,
    )
    return 0


__all__ = ["cmd_events", "cmd_suppress"]
