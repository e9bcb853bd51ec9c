"""The engine against the in-memory seams: intake, books and a recording provider.

These pin the engine's contract with its collaborators — in flight before sending, every
outcome recorded, a batch settled only once all its rows are final and recorded — without a
list file, a journal or a network.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from types import TracebackType

from bulkmail.books.base import PendingRow
from bulkmail.books.memory import MemoryBooks
from bulkmail.delivery.engine import CampaignRun
from bulkmail.delivery.sender import RetryPolicy, Sender
from bulkmail.errors import InternalError
from bulkmail.intake.memory import MemoryIntake
from bulkmail.mail.message import Message
from bulkmail.providers.base import Outcome, Quota, Verdict


class RecordingProvider:
    """Accepts every message (or answers ``verdicts`` in turn) and remembers what it saw."""

    name = "recording"

    def __init__(self, books: MemoryBooks, *, gate: asyncio.Event | None = None) -> None:
        self.books = books
        self.sent: list[str] = []
        self.in_flight_when_sent: list[bool] = []
        self.gate = gate

    async def __aenter__(self) -> RecordingProvider:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def send(self, message: Message) -> Outcome:
        assert message.key is not None
        self.in_flight_when_sent.append(self.books.states[message.key] == "in_flight")
        if self.gate is not None:
            await self.gate.wait()
        self.sent.append(message.to)
        return Outcome(Verdict.SENT, message_id=f"m-{message.key}")

    async def get_quota(self) -> Quota | None:
        return None


@dataclass(frozen=True)
class Problem:
    code: str
    reason: str


def rows(n: int) -> list[PendingRow]:
    return [PendingRow(i, i, f"r{i}@example.com", {"n": i}, False, 0) for i in range(1, n + 1)]


def compose(row: PendingRow) -> Message | Problem:
    if row.fields.get("n") == 3:
        return Problem("render", "row 3 lacks a variable")
    return Message(to=row.email, sender="news@example.com", subject="Hi", text="x", key=row.id)


def make_run(n: int, chunk: int, **kwargs: object) -> tuple[CampaignRun, MemoryBooks, MemoryIntake]:
    books = MemoryBooks(rows(n))
    intake = MemoryIntake(rows(n), chunk=chunk)
    provider = kwargs.pop("provider", None) or RecordingProvider(books)
    sender = Sender(provider, rate=1_000_000, retry=RetryPolicy(max_attempts=1))  # type: ignore[arg-type]
    run = CampaignRun(
        intake=intake,
        books=books,
        compose=compose,
        sender=sender,
        name="t",
        chunk=chunk,
        **kwargs,  # type: ignore[arg-type]
    )
    return run, books, intake


async def test_every_row_is_in_flight_before_it_is_sent_and_recorded_after() -> None:
    run, books, intake = make_run(25, chunk=10)
    provider = run.sender.provider
    assert isinstance(provider, RecordingProvider)
    summary = await run.run()
    assert sorted(provider.sent) == sorted(f"r{i}@example.com" for i in range(1, 26) if i != 3)
    assert all(provider.in_flight_when_sent)
    assert summary.counts["sent"] == 24 and summary.counts["skipped"] == 1
    assert books.outcomes[3].error_code == "render"
    assert books.outcomes[7].message_id == "m-7"
    # Every batch handed out was settled, once, and only after its rows were recorded.
    assert [b.token for b in intake.settled] == [b.token for b in intake.handed_out]
    assert run.progress.import_done and run.progress.imported == 25


async def test_a_drained_batch_is_not_settled_and_its_unsent_rows_stay_pending() -> None:
    gate = asyncio.Event()
    books = MemoryBooks(rows(40))
    provider = RecordingProvider(books, gate=gate)
    stop = asyncio.Event()
    run, books, intake = make_run(40, chunk=10, provider=provider, stop=stop, grace=5.0)
    run.books = books
    provider.books = books
    task = asyncio.create_task(run.run())
    while not provider.in_flight_when_sent:
        await asyncio.sleep(0)
    stop.set()  # Ctrl-C while the first sends wait for their answers
    await asyncio.sleep(0)
    gate.set()
    summary = await task
    assert summary.stop_kind == "interrupted"
    states = books.states
    assert "in_flight" not in states.values()
    sent = {i for i, s in states.items() if s == "sent"}
    assert {f"r{i}@example.com" for i in sent} == set(provider.sent)
    assert any(s == "pending" for s in states.values())
    # A batch with a row given back is never settled: another worker may take it up again.
    for batch in intake.settled:
        assert all(states[r.id] in ("sent", "skipped") for r in batch.rows)
    assert len(intake.settled) < len(intake.handed_out)


class PauseAfter:
    def __init__(self, books: MemoryBooks, sent: int) -> None:
        self.books, self.sent, self.calls = books, sent, 0

    async def check(self) -> str | None:
        self.calls += 1
        done = sum(1 for s in self.books.states.values() if s == "sent")
        return "bounce rate 6% over the last 100 sends" if done >= self.sent else None


async def test_a_guard_pauses_the_run_with_rows_pending() -> None:
    books = MemoryBooks(rows(2000))
    guard = PauseAfter(books, sent=1)
    sender_rate = 400.0  # slow enough that the guard fires long before the list is done
    intake = MemoryIntake(rows(2000), chunk=100)
    provider = RecordingProvider(books)
    run = CampaignRun(
        intake=intake,
        books=books,
        compose=compose,
        sender=Sender(provider, rate=sender_rate),
        chunk=100,
        guards=[guard],
        guard_interval=0.05,
    )
    summary = await run.run()
    assert summary.stop_kind == "paused"
    assert summary.stopped is not None and "bounce rate" in summary.stopped
    assert guard.calls >= 1
    assert summary.counts.get("pending", 0) > 0
    assert "in_flight" not in books.states.values()
    assert summary.exit_code == 1


class Exploding(RecordingProvider):
    async def send(self, message: Message) -> Outcome:
        raise RuntimeError("boom")


async def test_an_unexpected_exception_stops_the_run_and_leaves_the_row_in_flight() -> None:
    books = MemoryBooks(rows(5))
    intake = MemoryIntake(rows(5), chunk=5)
    run = CampaignRun(
        intake=intake,
        books=books,
        compose=compose,
        sender=Sender(Exploding(books), rate=1_000_000),
        chunk=5,
    )
    summary = await run.run()
    assert summary.stop_kind == "fatal"
    assert summary.stopped is not None and "internal error" in summary.stopped
    assert isinstance(run.sender.stopped, InternalError)
    assert "in_flight" in books.states.values()  # possibly sent: the next run flags it
    assert intake.settled == []
