"""`bulkmail CAMPAIGN.yaml` and `bulkmail check`: run or check a campaign file."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import shlex
import signal
from collections.abc import Coroutine, Iterator, Sequence
from typing import Any, Literal, TextIO, TypeVar

import orjson

from bulkmail.delivery.engine import Summary
from bulkmail.errors import CampaignStopped

T = TypeVar("T")


def _send_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bulkmail",
        description="Send a campaign: one signed request per recipient, paced to your quota.",
        epilog="Other commands: bulkmail check | sandbox | smtp-password (each with --help).",
    )
    p.add_argument("campaign", help="campaign YAML file")
    p.add_argument("--rate", help="recipients per second (overrides the file), or 'auto'")
    p.add_argument("--endpoint", help="provider URL, or 'sandbox' for the embedded emulator")
    p.add_argument("--results", help="results JSONL path (default beside the campaign)")
    p.add_argument("--journal", help="journal path (default beside the campaign)")
    p.add_argument("--concurrency", type=int, help="requests in flight (default: adaptive)")
    p.add_argument(
        "--outage-wait",
        help="how long to wait out a provider that cannot be reached (refused, DNS) before "
        "stopping with rows pending, e.g. 90s or 10m (default 10m)",
    )
    p.add_argument("--dry-run", action="store_true", help="validate and render, send nothing")
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress, only errors")
    p.add_argument(
        "--at-most-once",
        action="store_true",
        help="never resend a recipient whose earlier attempt may have arrived; report it as "
        "uncertain instead",
    )
    p.add_argument(
        "--retry-failed",
        nargs="?",
        const="retryable",
        choices=("retryable", "all"),
        metavar="all",
        help="send again the recipients an earlier run marked failed for a reason that may "
        "pass (transport errors, 5xx, throttling); =all also those the provider refused "
        "(invalid address, MessageRejected)",
    )
    change = p.add_mutually_exclusive_group()
    change.add_argument(
        "--restart", action="store_true", help="the campaign changed: start over from scratch"
    )
    change.add_argument(
        "--force", action="store_true", help="the campaign changed: continue with the new one"
    )
    p.add_argument("--grace", type=float, default=10.0, help=argparse.SUPPRESS)
    return p


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if args.rate is not None:
        out["rate"] = "auto" if args.rate == "auto" else _number(args.rate, "--rate")
    for key in ("endpoint", "results", "journal", "concurrency", "outage_wait"):
        value = getattr(args, key, None)
        if value is not None:
            out[key] = value
    return out


def _number(text: str, flag: str) -> float:
    try:
        return float(text)
    except ValueError:
        from bulkmail.errors import ConfigError

        raise ConfigError(f"{text!r} is not a number", key=flag) from None


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


@contextlib.contextmanager
def _collecting_less() -> Iterator[None]:
    """The cyclic garbage collector tuned for a send run, and put back after it.

    A send allocates and frees many short-lived objects per recipient, nearly all freed by
    reference counting. With the default thresholds (700, 10, 10) the collector ran ~195
    times over 20,000 recipients and took 0.22-0.24 s, 4 % of the run, to find next to
    nothing; at (10,000, 10, 10), with what import and set-up made frozen out of every
    later collection, 57 times and 0.035 s (benchmarks/README.md).
    """
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _resume_command(argv: Sequence[str]) -> str:
    kept = [
        a for a in argv if a not in ("--restart", "--force") and not a.startswith("--retry-failed")
    ]
    return "bulkmail " + " ".join(shlex.quote(a) for a in kept)


def cmd_send(argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    # A bare --retry-failed takes no value: "--retry-failed camp.yaml" must not read the
    # campaign as the flag's value (only the --retry-failed=all spelling carries one).
    argv = ["--retry-failed=retryable" if a == "--retry-failed" else a for a in argv]
    args = _send_parser().parse_args(argv)
    from bulkmail import api

    campaign = api.load_campaign(args.campaign, _overrides(args))
    if args.dry_run:
        return _print_check(api.check_campaign(campaign), args.json, out, dry_run=True)
    on_change: Literal["refuse", "restart", "force"] = (
        "restart" if args.restart else "force" if args.force else "refuse"
    )
    show_progress = not args.quiet and not args.json and out.isatty()

    async def main() -> Summary:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        task = asyncio.current_task()
        presses = 0

        def on_signal(signum: int) -> None:
            nonlocal presses
            presses += 1
            if presses == 1:
                print(
                    f"\nstopping: no new recipients; waiting up to {args.grace:.0f}s for "
                    "answers in flight (press Ctrl-C again to quit at once)",
                    file=err,
                )
                stop.set()
            elif task is not None:
                task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, on_signal, sig)
        display = _Progress(out) if show_progress else None
        try:
            return await api.run_campaign(
                campaign,
                on_change=on_change,
                at_most_once=args.at_most_once,
                retry_failed=args.retry_failed or "none",
                stop=stop,
                grace=args.grace,
                on_start=display.start if display else None,
            )
        finally:
            if display:
                display.stop()

    try:
        with _collecting_less():
            summary = _run(main())
    except asyncio.CancelledError:
        print("quit at once; the journal is consistent. Resume with:", file=err)
        print("  " + _resume_command(argv), file=err)
        return 130
    except CampaignStopped as exc:  # before anything was sent (e.g. reading the quota)
        print(f"bulkmail: {exc}", file=err)
        return 2
    c = summary.counts
    if not args.quiet or args.json:
        line = (
            f"{summary.name}: sent {c.get('sent', 0)}, failed {c.get('failed', 0)}, "
            f"skipped {c.get('skipped', 0)}, pending {c.get('pending', 0)}, "
            f"uncertain {c.get('uncertain', 0)}, possible duplicates "
            f"{c.get('possible_duplicate', 0)}; this run {summary.sent_this_run} in "
            f"{summary.duration:.1f}s ({summary.rate:.1f}/s). Results: {summary.results}"
        )
        print(line, file=err if args.json else out)
    elif summary.exit_code:  # --quiet still says, in one line, that not everyone was sent
        print(
            f"{summary.name}: not everyone was sent: sent {c.get('sent', 0)}, failed "
            f"{c.get('failed', 0)}, skipped {c.get('skipped', 0)} ({summary.problem_skips} "
            f"for a problem), pending {c.get('pending', 0)}, uncertain {c.get('uncertain', 0)}."
            f" Results: {summary.results}",
            file=err,
        )
    recovery = summary.recovery
    if recovery.retried:
        print(f"retried: {recovery.retried} recipients that had failed were sent again", file=err)
    if recovery.held:
        print(
            f"held: {recovery.held} recipients flagged possible_duplicate by an earlier run are "
            "held as uncertain (this campaign sends at most once)",
            file=err,
        )
    if summary.recovery.ambiguous:
        print(
            f"resumed: {summary.recovery.ambiguous} recipients were in flight when the last run "
            f"ended: {summary.recovery.requeued} resent and flagged possible_duplicate, "
            f"{summary.recovery.uncertain} held as uncertain",
            file=err,
        )
    if summary.stopped:
        print(f"stopped: {summary.stopped}", file=err)
        if summary.stop_kind in ("quota", "interrupted", "paused", "unavailable") or c.get(
            "pending", 0
        ):
            print("resume later with:\n  " + _resume_command(argv), file=err)
    if args.json:
        out.write(orjson.dumps(summary.as_dict()).decode() + "\n")
    return summary.exit_code


def _print_check(report: Any, as_json: bool, out: TextIO, *, dry_run: bool = False) -> int:
    if as_json:
        out.write(orjson.dumps(report.as_dict()).decode() + "\n")
    else:
        verb = "would send" if dry_run else "ready to send"
        print(f"{report.campaign}: {report.rows} rows, {verb} {report.would_send}", file=out)
        for code, n in sorted(report.skipped.items()):
            print(f"  skipped {n} ({code})", file=out)
        for ex in report.examples:
            print(f"  line {ex['line']}: {ex['email'] or '-'}: {ex['reason']}", file=out)
        if report.variables:
            print(f"  template variables: {', '.join(report.variables)}", file=out)
    return 1 if report.problems else 0


def cmd_check(argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    p = argparse.ArgumentParser(
        prog="bulkmail check", description="Validate a campaign and every row; send nothing."
    )
    p.add_argument("campaign")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    from bulkmail import api

    return _print_check(api.check_campaign(args.campaign), args.json, out)


def _pause_text(progress: Any) -> str:
    """``paused: provider unreachable; next try in 8s`` while an outage is waited out."""
    paused = getattr(progress, "paused", None)
    return f"[yellow]paused: {paused}" if paused else ""


class _Progress:
    """A rich progress bar (sent, rate, ETA, errors) polling the engine's counters."""

    def __init__(self, out: TextIO) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[rate]:.0f}/s"),
            TextColumn("failed {task.fields[failed]}"),
            TextColumn("{task.fields[pause]}"),
            TimeRemainingColumn(),
            console=Console(file=out),
            transient=False,
        )
        self._task_id = self._bar.add_task("sending", total=None, rate=0.0, failed=0, pause="")
        self._poller: asyncio.Task[None] | None = None
        self._progress: Any = None

    def start(self, progress: Any) -> None:
        self._progress = progress
        self._bar.start()
        self._poller = asyncio.get_running_loop().create_task(self._poll())

    def _refresh(self) -> None:
        progress = self._progress
        total = (progress.imported + progress.resumed) if progress.import_done else None
        self._bar.update(
            self._task_id,
            completed=progress.sent + progress.failed + progress.skipped,
            total=total,
            rate=progress.rate,
            failed=progress.failed,
            pause=_pause_text(progress),
        )

    async def _poll(self) -> None:
        while True:
            self._refresh()
            await asyncio.sleep(0.25)

    def stop(self) -> None:
        if self._poller:
            self._poller.cancel()
            self._refresh()  # the last frame shows the final counts
        self._bar.stop()


__all__ = ["cmd_check", "cmd_send"]
