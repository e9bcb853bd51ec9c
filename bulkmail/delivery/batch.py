"""DirectMail ``mode: batch``: one ``BatchSendMail`` call per console recipient list.

In batch mode DirectMail does the per-recipient work itself: the template
(``directmail.template_name``) and the recipient list (``directmail.receivers_name``) both
live in the DirectMail console, and one call sends the whole list. So there is no journal of
recipients here; what is recorded is each *call*, as one JSON line in the results file::

    {"receivers_name": "spring", "template_name": "news", "status": "sent",
     "env_id": "600000000123456", "error_code": null, "error": null, "attempts": 1,
     "first_attempt_at": "2026-03-01T09:00:00.000Z", "finished_at": "2026-03-01T09:00:00.210Z"}

``receivers_name`` is one name today, because that is what ``campaign.py`` accepts (a
one-line string); :func:`receivers_names` also takes a list so that allowing several in the
campaign file is a change to the checker only. The lists are sent in the order given, one
call each.

Pacing: BatchSendMail allows 20 calls per 60 s (10 outside China); every *attempt*, retries
included, goes through :func:`~bulkmail.pacing.calls.batch_limiter`. Answers:

========== ===========================================================================
sent       the line says ``sent`` with the ``EnvId``
throttled  back off (:class:`~bulkmail.delivery.sender.RetryPolicy`, ``max_throttled``), try again
retry      503 / connection refused (certainly not queued): back off, try again, up to
           the campaign's ``max_attempts``; then ``failed``
ambiguous  no answer after the request went out, or another 5xx (500, 502, 504 may come
           after the list was queued): ``uncertain``, *not* retried, and skipped by a
           rerun, since a second call could send the whole list twice (check the
           console's sending log; remove its results line to send it again on purpose)
rejected   ``failed``; the next list is still sent
fatal      the line is written, then :class:`~bulkmail.errors.FatalProviderError`
quota      the line is written, then :class:`~bulkmail.errors.QuotaExhausted`
========== ===========================================================================

Durable before each call: the call's line, with ``"status": "in_flight"``, is written to
``RESULTS.in-flight`` beside the results file and synced to disk before the first
``BatchSendMail`` of a list (it covers that list's retries too); the outcome line is appended
to the results file, synced, and only then is the in-flight file removed. A run killed during
the call (SIGKILL, power loss, a second Ctrl-C) leaves that file behind; the next run records
the list ``uncertain`` (``error_code: interrupted``) and never sends it again. A second
Ctrl-C writes the ``uncertain`` line itself before quitting.

Re-running is safe: a list whose last line in the results file says ``sent`` (or
``uncertain``) for the same template is skipped, so a whole list is never sent twice by a
re-run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Any, BinaryIO

import orjson
from aiolimiter import AsyncLimiter

from bulkmail.books.journal import Recovery, timestamp
from bulkmail.delivery.engine import Summary
from bulkmail.delivery.sender import RetryPolicy
from bulkmail.errors import CampaignStopped, ConfigError, FatalProviderError, QuotaExhausted
from bulkmail.input.campaign import Campaign
from bulkmail.pacing.calls import batch_limiter
from bulkmail.providers.base import Outcome, Verdict
from bulkmail.providers.directmail import DirectMailProvider


@dataclass(slots=True, frozen=True, kw_only=True)
class BatchCall:
    """What became of one ``BatchSendMail`` call (one line of the results file)."""

    receivers_name: str
    template_name: str
    #: "sent" | "failed" | "uncertain" (may have been sent: never retried) | "in_flight"
    #: (written before the call; a later line settles it)
    status: str
    env_id: str | None
    error_code: str | None
    error: str | None
    attempts: int
    first_attempt_at: str
    finished_at: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "receivers_name": self.receivers_name,
            "template_name": self.template_name,
            "status": self.status,
            "env_id": self.env_id,
            "error_code": self.error_code,
            "error": self.error,
            "attempts": self.attempts,
            "first_attempt_at": self.first_attempt_at,
            "finished_at": self.finished_at,
        }

    def as_json(self) -> bytes:
        return orjson.dumps(self.as_dict())


@dataclass(slots=True, kw_only=True)
class BatchSummary:
    """What a batch run did: calls sent, failed, and skipped as already sent.

    >>> s = BatchSummary(name="spring", results="spring.results.jsonl", sent=1)
    >>> s.counts, s.exit_code
    ({'sent': 1, 'failed': 0, 'skipped': 0}, 0)
    """

    name: str
    results: str
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    duration: float = 0.0
    calls: list[BatchCall] = field(default_factory=list)
    stopped: str | None = None

    @property
    def counts(self) -> dict[str, int]:
        return {"sent": self.sent, "failed": self.failed, "skipped": self.skipped}

    @property
    def exit_code(self) -> int:
        return 1 if self.failed or self.stopped else 0

    def as_summary(self) -> Summary:
        """The engine's :class:`~bulkmail.delivery.engine.Summary` (counts are *lists*, not
        recipients), so ``run_campaign`` and the CLI report a batch run like any other."""
        return Summary(
            name=self.name,
            counts=self.counts,
            sent_this_run=self.sent,
            duration=self.duration,
            rate=self.sent / self.duration if self.duration > 0 else 0.0,
            recovery=Recovery(ambiguous=0, requeued=0, uncertain=0),
            results=self.results,
            journal="",
            stopped=self.stopped,
            stop_kind="interrupted" if self.stopped else None,
        )


def receivers_names(options: Mapping[str, Any]) -> tuple[str, ...]:
    """The recipient lists of ``campaign.directmail``: one name, or a list of names.

    >>> receivers_names({"receivers_name": "spring"})
    ('spring',)
    >>> receivers_names({"receivers_name": ["a", "b", "a"]})
    ('a', 'b')
    """
    raw = options.get("receivers_name")
    names = [raw] if isinstance(raw, str) else list(raw or [])
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError("directmail.receivers_name must be a name or a list of names")
    return tuple(dict.fromkeys(names))


#: Answers after which DirectMail certainly did not queue the call: safe to retry. Any other
#: 5xx (500, 502, 504) may come after the list was queued, and a retry would send the whole
#: list twice, so the call is recorded ``uncertain`` instead.
_SAFE_RETRY_CODES = frozenset({"ServiceUnavailable", "HTTP503", "ConnectError"})


def _already_sent(results: Path, template: str) -> dict[str, dict[str, Any]]:
    """The last line of each list in ``results`` whose status is ``sent`` (or ``uncertain``:
    it may have been sent, so a rerun must not send it again) with ``template``."""
    last: dict[str, dict[str, Any]] = {}
    try:
        with results.open("rb") as f:
            for line in f:
                try:
                    doc = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue  # a torn last line from a crash: that call is not counted
                if isinstance(doc, dict) and isinstance(doc.get("receivers_name"), str):
                    last[doc["receivers_name"]] = doc
    except FileNotFoundError:
        pass
    return {
        name: doc
        for name, doc in last.items()
        if doc.get("status") in ("sent", "uncertain") and doc.get("template_name") == template
    }


def _in_flight_path(results: Path) -> Path:
    return results.with_name(results.name + ".in-flight")


def _read_in_flight(path: Path) -> dict[str, Any] | None:
    """The call a run died in (``None``: none, or a torn write from before the call)."""
    try:
        doc = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except orjson.JSONDecodeError:
        return None  # torn: the write never completed, so the request never left
    if isinstance(doc, dict) and isinstance(doc.get("receivers_name"), str):
        return doc
    return None


def _write_durably(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the file's name is on disk too
    finally:
        os.close(dir_fd)


_INTERRUPTED = (
    "the run ended during the BatchSendMail call: the list may have been sent (check the "
    "console's sending log; remove this list's results lines to send it again on purpose)"
)


def _interrupted(doc: Mapping[str, Any], finished: str) -> BatchCall:
    """The ``uncertain`` line that settles an ``in_flight`` one."""
    return BatchCall(
        receivers_name=str(doc["receivers_name"]),
        template_name=str(doc.get("template_name")),
        status="uncertain",
        env_id=None,
        error_code="interrupted",
        error=_INTERRUPTED,
        attempts=int(doc.get("attempts") or 1),
        first_attempt_at=str(doc.get("first_attempt_at") or finished),
        finished_at=finished,
    )


def _append(out: BinaryIO, call: BatchCall) -> None:
    out.write(call.as_json() + b"\n")
    out.flush()
    os.fsync(out.fileno())  # at most 20 calls a minute: durable lines cost nothing


async def run_batch_campaign(
    campaign: Campaign,
    provider: DirectMailProvider,
    *,
    results: Path,
    limiter: AsyncLimiter | None = None,
    retry: RetryPolicy | None = None,
    stop: asyncio.Event | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: random.Random | None = None,
    clock: Callable[[], float] = time.time,
) -> BatchSummary:
    """Send the campaign's console template to each of its console lists; see the module.

    ``provider`` must already be entered (``async with``). ``limiter`` defaults to
    :func:`batch_limiter` for the provider's region; tests pass a fast one. ``stop`` ends
    the run between calls (Ctrl-C).

    >>> async def main(campaign: Campaign) -> None:                  # doctest: +SKIP
    ...     async with DirectMailProvider(credentials=creds) as dm:
    ...         summary = await run_batch_campaign(campaign, dm, results=campaign.results)
    """
    options = campaign.directmail
    if options.get("mode") != "batch":
        raise ConfigError(
            "run_batch_campaign needs directmail.mode: batch",
            file=str(campaign.path),
            key="directmail.mode",
        )
    template = str(options["template_name"])
    try:
        names = receivers_names(options)
    except ValueError as exc:
        raise ConfigError(
            str(exc), file=str(campaign.path), key="directmail.receivers_name"
        ) from None
    account = parseaddr(campaign.sender)[1]
    limiter = limiter if limiter is not None else batch_limiter(provider.region)
    policy = retry if retry is not None else RetryPolicy(max_attempts=campaign.max_attempts)
    rng = rng or random.Random()
    summary = BatchSummary(name=campaign.name, results=str(results))
    started = time.monotonic()
    done = _already_sent(results, template)
    results.parent.mkdir(parents=True, exist_ok=True)
    marker = _in_flight_path(results)

    async def attempt(name: str) -> Outcome:
        async with limiter:
            return await provider.batch_send(
                template_name=template,
                receivers_name=name,
                account_name=account,
                address_type=int(options.get("address_type", 1)),
                tag_name=options.get("tag_name"),
                click_trace=options.get("click_trace"),
            )

    with results.open("ab") as out:
        left = _read_in_flight(marker)
        if left is not None:  # the last run died during this call: it may have been sent
            settled = done.get(left["receivers_name"])
            if settled is None or settled.get("first_attempt_at") != left["first_attempt_at"]:
                call = _interrupted(left, timestamp(clock()))
                _append(out, call)
                summary.calls.append(call)
                summary.failed += 1
                done[call.receivers_name] = call.as_dict()
        with contextlib.suppress(FileNotFoundError):
            marker.unlink()
        for name in names:
            if name in done:
                summary.skipped += 1
                continue
            if stop is not None and stop.is_set():
                summary.stopped = "stopped before every list was sent"
                break
            first = clock()
            attempts = throttled = 0
            in_flight = BatchCall(
                receivers_name=name,
                template_name=template,
                status="in_flight",
                env_id=None,
                error_code=None,
                error=None,
                attempts=1,
                first_attempt_at=timestamp(first),
                finished_at="",
            )
            _write_durably(marker, in_flight.as_json())  # on disk before the request leaves
            while True:
                try:
                    outcome = await attempt(name)
                except asyncio.CancelledError:  # a second Ctrl-C: settle the call, then quit
                    _append(out, _interrupted(in_flight.as_dict(), timestamp(clock())))
                    marker.unlink()
                    raise
                attempts += 1
                verdict = outcome.verdict
                if verdict is Verdict.THROTTLED:
                    throttled += 1
                    if throttled < policy.max_throttled:
                        await sleep(policy.delay(min(throttled, 6), rng, outcome.retry_after))
                        continue
                elif (
                    verdict is Verdict.RETRY
                    and outcome.error_code in _SAFE_RETRY_CODES
                    and attempts - throttled < policy.max_attempts
                ):
                    await sleep(policy.delay(attempts - throttled, rng, outcome.retry_after))
                    continue
                break
            ok = verdict is Verdict.SENT
            maybe_sent = verdict is Verdict.AMBIGUOUS or (
                verdict is Verdict.RETRY and outcome.error_code not in _SAFE_RETRY_CODES
            )
            call = BatchCall(
                receivers_name=name,
                template_name=template,
                status="sent" if ok else "uncertain" if maybe_sent else "failed",
                env_id=outcome.message_id,
                error_code=outcome.error_code,
                error=outcome.error,
                attempts=attempts,
                first_attempt_at=timestamp(first),
                finished_at=timestamp(clock()),
            )
            _append(out, call)
            marker.unlink()  # after the outcome is on disk: settled either way
            summary.calls.append(call)
            if ok:
                summary.sent += 1
            else:
                summary.failed += 1
            stopping = _stopping(verdict, outcome)
            if stopping is not None:
                summary.duration = time.monotonic() - started
                raise stopping
    summary.duration = time.monotonic() - started
    return summary


def _stopping(verdict: Verdict, outcome: Outcome) -> CampaignStopped | None:
    text = f"{outcome.error_code}: {outcome.error}" if outcome.error else str(outcome.error_code)
    if verdict is Verdict.FATAL:
        return FatalProviderError(text, code=outcome.error_code)
    if verdict is Verdict.QUOTA:
        return QuotaExhausted(text, code=outcome.error_code)
    return None


__all__ = ["BatchCall", "BatchSummary", "receivers_names", "run_batch_campaign"]
