"""Shutdown and the books, at the ``run_campaign`` level: a second Ctrl-C still records the
answers already received; a row given back after a drain keeps what its attempts showed;
the delivery guarantee is the campaign's (a different ``--at-most-once`` is refused)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from types import TracebackType

import pytest

from bulkmail import run_campaign
from bulkmail.cli import main
from bulkmail.mail.message import Message
from bulkmail.providers.base import Outcome, Quota, Verdict

from .conftest import CampaignFactory


class Scripted:
    """A provider: ``fast`` recipients are answered once ``release`` is set, and the last of
    them calls ``after_fast``; the others wait for ever (or answer ``slow_outcome``)."""

    def __init__(self, fast: set[str], slow_outcome: Outcome | None = None) -> None:
        self.fast = fast
        self.slow_outcome = slow_outcome
        self.release = asyncio.Event()
        self.started = 0
        self.answered: set[str] = set()
        self.after_fast: asyncio.Handle | None = None
        self.on_fast_done = lambda: None

    async def __aenter__(self) -> Scripted:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def get_quota(self) -> Quota | None:
        return None

    async def send(self, message: Message) -> Outcome:
        self.started += 1
        if message.to in self.fast:
            await self.release.wait()
            self.answered.add(message.to)
            if self.answered == self.fast:
                self.on_fast_done()
            return Outcome(Verdict.SENT, message_id=f"id-{message.to}")
        if self.slow_outcome is not None:
            await self.release.wait()
            return self.slow_outcome
        await asyncio.Event().wait()  # never answered
        raise AssertionError("unreachable")


def states(journal: Path) -> dict[str, tuple[str, bool, int]]:
    conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT email, state, possible_duplicate, attempts FROM rows")
        return {e: (s, bool(d), a) for e, s, d, a in rows}
    finally:
        conn.close()


async def wait_for(condition: object, what: str) -> None:
    async with asyncio.timeout(20):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.005)


async def test_a_second_ctrl_c_still_records_the_answers_received(
    make_campaign: CampaignFactory,
) -> None:
    emails = [f"user{i:06d}@twice.example.org" for i in range(20)]
    path = make_campaign(rows=[f"{e},N" for e in emails])
    fast = set(emails[:10])
    provider = Scripted(fast)
    stop = asyncio.Event()
    run = asyncio.create_task(run_campaign(path, provider=provider, stop=stop, grace=30))
    # Second Ctrl-C the moment the last fast answer is in: before any timed flush.
    provider.on_fast_done = lambda: asyncio.get_running_loop().call_soon(run.cancel)
    await wait_for(lambda: provider.started == 20, "every request out")
    stop.set()  # the first Ctrl-C: drain, waiting for the answers in flight
    await asyncio.sleep(0.1)
    provider.release.set()
    with pytest.raises(asyncio.CancelledError):
        await run
    got = states(path.parent / "campaign.journal.sqlite")
    assert {e for e, (s, _, _) in got.items() if s == "sent"} == fast
    assert {e for e, (s, _, _) in got.items() if s == "in_flight"} == set(emails) - fast


async def test_a_row_given_back_after_a_refused_attempt_stays_plain_pending(
    make_campaign: CampaignFactory,
) -> None:
    """Drained after a 503 (certainly not sent): pending, not flagged; drained after an
    answer that may have been accepted (a lost response): pending, flagged."""
    emails = [f"user{i:06d}@drain.example.org" for i in range(4)]
    path = make_campaign(rows=[f"{e},N" for e in emails])
    for runs, (outcome, flagged) in enumerate(
        (
            (Outcome(Verdict.RETRY, error_code="ServiceUnavailable"), False),
            (Outcome(Verdict.AMBIGUOUS, error_code="ResponseLost"), True),
        ),
        start=1,
    ):
        provider = Scripted(set(), slow_outcome=outcome)
        stop = asyncio.Event()
        run = asyncio.create_task(run_campaign(path, provider=provider, stop=stop))
        await wait_for(lambda p=provider: p.started == 4, "every request out")  # type: ignore[misc]
        stop.set()
        await asyncio.sleep(0.1)  # the drain has begun: no retry is started
        provider.release.set()
        summary = await run
        assert summary.counts["pending"] == 4
        got = states(path.parent / "campaign.journal.sqlite")
        assert {(s, d) for s, d, _ in got.values()} == {("pending", flagged)}, outcome
        assert {a for _, _, a in got.values()} == {runs}  # one attempt a run, added up


def test_a_different_delivery_guarantee_is_refused(
    make_campaign: CampaignFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    path = make_campaign(count=2)
    assert main([str(path), "--quiet", "--at-most-once"]) == 0
    assert main([str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "started at-most-once" in err and "run again with --at-most-once" in err
    assert main([str(path), "--quiet", "--at-most-once"]) == 0
