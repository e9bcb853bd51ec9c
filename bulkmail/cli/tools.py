"""`bulkmail smtp-password`: the SES SMTP password for an access key, never echoed."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TextIO, TypeVar

from bulkmail.signing import SES_SMTP_REGIONS, ses_smtp_password

T = TypeVar("T")


def cmd_smtp_password(argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    p = argparse.ArgumentParser(
        prog="bulkmail smtp-password",
        description="Derive an Amazon SES SMTP password from a secret access key read from "
        "AWS_SECRET_ACCESS_KEY or standard input (never from the command line).",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--region", help="SES region of the SMTP endpoint (version 4)")
    which.add_argument("--legacy", action="store_true", help="region-free version 2 password")
    args, extra = p.parse_known_args(argv)
    if extra:
        # argparse would echo them ("unrecognized arguments: ..."), and one may be the secret.
        p.error(
            f"{len(extra)} unexpected argument(s), not shown: the secret is read from "
            "AWS_SECRET_ACCESS_KEY or standard input, never from the command line"
        )
    if not args.legacy and args.region not in SES_SMTP_REGIONS:
        print(
            f"bulkmail: region {args.region!r} has no SES SMTP endpoint; valid regions: "
            + ", ".join(SES_SMTP_REGIONS),
            file=err,
        )
        return 2
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY", "").strip()
    if not secret and sys.stdin is not None:
        if sys.stdin.isatty():
            import getpass

            secret = getpass.getpass("AWS secret access key (not echoed): ", stream=err)
        else:
            secret = sys.stdin.readline()
        secret = secret.strip()
    if not secret:
        print(
            "bulkmail: no secret: set AWS_SECRET_ACCESS_KEY or pipe it on standard input", file=err
        )
        return 2
    if args.legacy:
        print(ses_smtp_password(secret, None, version=2), file=out)
    else:
        print(ses_smtp_password(secret, args.region, version=4), file=out)
    return 0


__all__ = ["cmd_smtp_password"]
