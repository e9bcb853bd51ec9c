"""`bulkmail enqueue | worker | status | results`: a campaign run by a fleet through Redis.

bulkmail enqueue CAMPAIGN.yaml --redis URL [--at-most-once] [--expire S]
bulkmail worker --redis URL [--campaign NAME] [--exit-when-done] [--concurrency N]
                [--visibility-timeout S] [--metrics HOST:PORT] [--endpoint URL]
bulkmail status NAME --redis URL [--json]
bulkmail results NAME --redis URL --out results.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import orjson

from bulkmail.cli.send import _print_check, _run


def _redis(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--redis",
        required=True,
        help="redis://[user:password@]host:port/db, or rediss:// for TLS",
    )


def cmd_enqueue(argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    p = argparse.ArgumentParser(
        prog="bulkmail enqueue",
        description="Validate a campaign and put it, with its list, into Redis for workers.",
    )
    p.add_argument("campaign")
    _redis(p)
    p.add_argument("--at-most-once", action="store_true", help="hold ambiguous rows uncertain")
    p.add_argument(
        "--allow-problems",
        action="store_true",
        help="enqueue even if some rows have problems (they are skipped, as a local run does)",
    )
    p.add_argument(
        "--expire", type=int, default=7 * 86400, help="seconds a finished campaign is kept"
    )
    args = p.parse_args(argv)
    from bulkmail import api
    from bulkmail.fleet.definition import campaign_to_data
    from bulkmail.fleet.enqueue import enqueue_campaign
    from bulkmail.fleet.link import Link

    campaign = api.load_campaign(args.campaign)
    if campaign.mode == "batch":
        print("bulkmail: directmail.mode: batch cannot run on a fleet", file=err)
        return 2
    campaign_to_data(campaign)  # attachment_column and unreadable files refused here
    report = api.check_campaign(campaign)
    if report.problems and not args.allow_problems:
        _print_check(report, False, err)
        print(
            "bulkmail: nothing enqueued: fix the rows above first (or --allow-problems)",
            file=err,
        )
        return 2

    async def main() -> dict[str, int]:
        link = Link.from_url(args.redis)
        link.patience = 30.0
        try:
            done = await enqueue_campaign(
                link, campaign, at_most_once=args.at_most_once, ttl=args.expire
            )
            from bulkmail.fleet.books import RedisBooks

            counts = await RedisBooks(link, campaign.name).counts()
            counts["enqueued_now"] = done.enqueued
            counts["resumed_after_line"] = done.resumed_after
            return counts
        finally:
            await link.close()

    counts = _run(main())
    print(
        f"{campaign.name}: enqueued {counts['enqueued_now']} now "
        f"(resumed after line {counts['resumed_after_line']}); in Redis: "
        f"{counts['total']} rows, pending {counts['pending']}, skipped {counts['skipped']}, "
        f"sent {counts['sent']}",
        file=out,
    )
    return 0


def cmd_worker(argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    p = argparse.ArgumentParser(
        prog="bulkmail worker", description="Send chunks of campaigns stored in Redis."
    )
    _redis(p)
    p.add_argument("--campaign", help="serve only this campaign (default: all)")
    p.add_argument("--exit-when-done", action="store_true")
    p.add_argument("--concurrency", type=int, help="upper bound on requests in flight")
    p.add_argument("--visibility-timeout", type=float, default=30.0, metavar="S")
    p.add_argument("--metrics", metavar="HOST:PORT", help="serve Prometheus metrics")
    p.add_argument("--endpoint", help="provider URL for this worker (overrides the campaign)")
    p.add_argument("--grace", type=float, default=10.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    from bulkmail.fleet.link import Link
    from bulkmail.fleet.worker import WorkerOptions, WorkerState, run_worker

    options = WorkerOptions(
        campaign=args.campaign,
        exit_when_done=args.exit_when_done,
        concurrency=args.concurrency,
        visibility=args.visibility_timeout,
        endpoint=args.endpoint,
        grace=args.grace,
    )

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        task = asyncio.current_task()
        presses = 0

        def on_signal() -> None:
            nonlocal presses
            presses += 1
            if presses == 1:
                print("stopping: draining answers in flight", file=err, flush=True)
                stop.set()
            elif task is not None:
                task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, on_signal)
        with contextlib.suppress(NotImplementedError):  # kill -USR1: where is every task?
            loop.add_signal_handler(signal.SIGUSR1, _dump_tasks, err)
        link = Link.from_url(args.redis)
        state = WorkerState()
        metrics = None
        if args.metrics:
            from bulkmail.fleet.metrics import serve_metrics

            metrics = asyncio.create_task(serve_metrics(args.metrics, state, link))
        try:
            return await run_worker(link, options, stop, state)
        finally:
            print(f"redis round trips {link.trips}", file=out, flush=True)
            for name, pacer in state.pacers.items():
                wasted = getattr(pacer, "wasted", 0)
                reservations = getattr(pacer, "reservations", 0)
                late = getattr(pacer, "late", 0)
                print(
                    f"{name}: pacer reservations {reservations}, slots wasted {wasted} "
                    f"({late} woken too late)",
                    file=out,
                )
            if metrics is not None:
                metrics.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await metrics
            await link.close()

    try:
        summaries = _run(main())
    except asyncio.CancelledError:
        print("quit at once; unfinished chunks are reclaimed by other workers", file=err)
        return 130
    code = 0
    for name, s in summaries.items():
        c = s.counts
        print(
            f"{name}: this worker sent {s.sent_this_run} in {s.duration:.1f}s "
            f"({s.rate:.1f}/s); campaign: sent {c.get('sent', 0)}, failed {c.get('failed', 0)}, "
            f"pending {c.get('pending', 0)}, in flight {c.get('in_flight', 0)}"
            + (f"; stopped: {s.stopped}" if s.stopped else ""),
            file=out,
            flush=True,
        )
        if s.stop_kind in ("fatal", "quota"):
            code = 1
    return code


def _dump_tasks(err: TextIO) -> None:
    for task in asyncio.all_tasks():
        task.print_stack(limit=12, file=err)
    err.flush()


def cmd_status(argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    p = argparse.ArgumentParser(prog="bulkmail status", description="A fleet campaign's state.")
    p.add_argument("name")
    _redis(p)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    from bulkmail.fleet.link import Link
    from bulkmail.fleet.status import campaign_status

    async def main() -> Any:
        link = Link.from_url(args.redis)
        link.patience = 30.0
        try:
            return await campaign_status(link, args.name)
        finally:
            await link.close()

    status = _run(main())
    if args.json:
        out.write(orjson.dumps(status.as_dict()).decode() + "\n")
        return 0
    c = status.counts
    eta = "-" if status.eta_s is None else f"{status.eta_s:.0f}s"
    print(
        f"{status.name}: {c.get('total', 0)} rows: sent {c.get('sent', 0)}, failed "
        f"{c.get('failed', 0)}, skipped {c.get('skipped', 0)}, pending {c.get('pending', 0)}, "
        f"in flight {c.get('in_flight', 0)}, uncertain {c.get('uncertain', 0)}, possible "
        f"duplicates {c.get('possible_duplicate', 0)}\n  fleet rate {status.rate:.1f}/s, "
        f"workers alive {len(status.workers)}, chunks queued {status.queued_chunks}, held "
        f"{status.held_chunks}, ETA {eta}",
        file=out,
    )
    return 0


def cmd_results(argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    p = argparse.ArgumentParser(prog="bulkmail results", description="Export the results file.")
    p.add_argument("name")
    _redis(p)
    p.add_argument("--out", required=True, type=Path)
    args = p.parse_args(argv)
    from bulkmail.fleet.link import Link
    from bulkmail.fleet.status import export_results

    async def main() -> int:
        link = Link.from_url(args.redis)
        link.patience = 30.0
        try:
            return await export_results(link, args.name, args.out)
        finally:
            await link.close()

    n = _run(main())
    print(f"{args.name}: {n} rows written to {args.out}", file=out)
    return 0


__all__ = ["cmd_enqueue", "cmd_results", "cmd_status", "cmd_worker"]
