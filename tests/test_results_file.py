"""The results file written as the run goes: the same bytes as the one-shot export, written
only from rows that can no longer change, never past what was imported."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from bulkmail import SesProvider, run_campaign
from bulkmail.books._results_file import ResultsStream, write_results
from bulkmail.books.journal import Journal, RowOutcome
from bulkmail.servers.sandbox import SANDBOX_AWS, Sandbox
from tests.conftest import CampaignFactory
from tests.test_journal import Clock, Rejected, people, rcpt


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j, _ = Journal.open(
        tmp_path / "c.journal.sqlite", campaign_hash="c1", list_hash="l1", clock=Clock()
    )
    with j:
        yield j


def stream(journal: Journal, path: Path, **options: int) -> ResultsStream:
    # white-box: the journal's connection, so that step and least can be made small
    return ResultsStream(journal._conn, path, lambda: journal.imported_through, **options)


def reference(journal: Journal, tmp_path: Path) -> bytes:
    return reference_of(journal._conn, tmp_path)


def reference_of(conn: sqlite3.Connection, tmp_path: Path) -> bytes:
    out = tmp_path / "one-shot.jsonl"
    write_results(conn, out)
    return out.read_bytes()


def test_a_streamed_file_is_the_one_shot_export_byte_for_byte(
    journal: Journal, tmp_path: Path
) -> None:
    rng = random.Random(5)
    out = tmp_path / "results.jsonl"
    s = stream(journal, out, step=7, least=1)
    line = 1
    for _chunk in range(12):  # import, send and record chunk by chunk, advancing as we go
        recipients, rejected = [], []
        for _ in range(25):
            line += rng.choice([1, 1, 1, 2, 9])  # blank lines leave gaps
            if rng.random() < 0.15:
                rejected.append(Rejected(line, f"bad{line}", "invalid_address", 'q "x" é'))
            else:
                recipients.append(rcpt(line, f"u{line}@example.org", name=f"N\u2028{line}"))
        rows = journal.add_rows(recipients, rejected, through_line=line)
        s.advance()
        ids = [r.id for r in rows]
        journal.mark_in_flight(ids)
        s.advance()
        outcomes = []
        for i in ids:
            state = rng.choice(["sent", "sent", "failed", "uncertain", "pending"])
            outcomes.append(
                RowOutcome(i, state, message_id=f"m-{i}" if state == "sent" else None,
                           error_code="X" if state == "failed" else None, attempts=1)
            )  # fmt: skip
        journal.record(outcomes)
        s.advance()
    journal.add_rows([], [], through_line=line + 3, last=True)
    assert 0 < s.through < line  # the first row given back to pending held it there
    written = s.finish()
    assert out.read_bytes() == reference(journal, tmp_path)
    assert written == len(out.read_bytes().splitlines())
    assert not list(tmp_path.glob(".results.jsonl.*"))  # the hidden file was renamed


def test_it_stops_at_the_first_row_still_open(journal: Journal, tmp_path: Path) -> None:
    journal.add_rows(people(1, 10), [], through_line=10, last=True)
    journal.mark_in_flight(list(range(1, 11)))
    journal.record([RowOutcome(i, "sent", message_id=f"m{i}", attempts=1) for i in (1, 2, 3, 5)])
    s = stream(journal, tmp_path / "r.jsonl", least=1)
    assert s.advance() == 3 and s.through == 3  # row 4 is in flight
    journal.record([RowOutcome(4, "pending", attempts=1)])  # given back: still open
    assert s.advance() == 0 and s.through == 3
    journal.record([RowOutcome(4, "failed", error_code="X", attempts=2)])
    assert s.advance() == 2 and s.through == 5
    s.finish()
    assert (tmp_path / "r.jsonl").read_bytes() == reference(journal, tmp_path)


def test_it_never_writes_past_the_lines_imported(journal: Journal, tmp_path: Path) -> None:
    # lines 1-5 imported; line 6 and on are not in the journal yet (a skip may still come)
    journal.add_rows(people(1, 5), [], through_line=5)
    journal.mark_in_flight([1, 2, 3, 4, 5])
    journal.record([RowOutcome(i, "sent", attempts=1) for i in range(1, 6)])
    s = stream(journal, tmp_path / "r.jsonl", least=1)
    assert s.advance() == 5 and s.through == 5
    journal.add_rows([], [Rejected(6, "x", "bad_row", "wrong number of columns")], through_line=6)
    assert s.advance() == 1
    s.finish()
    assert (tmp_path / "r.jsonl").read_bytes() == reference(journal, tmp_path)


def test_small_batches_wait_for_least_lines(journal: Journal, tmp_path: Path) -> None:
    journal.add_rows(people(1, 30), [], through_line=30, last=True)
    journal.mark_in_flight(list(range(1, 31)))
    s = stream(journal, tmp_path / "r.jsonl", least=10, step=25)
    journal.record([RowOutcome(i, "sent", attempts=1) for i in range(1, 6)])
    assert s.advance() == 0  # 5 ready: under least
    journal.record([RowOutcome(i, "sent", attempts=1) for i in range(6, 31)])
    assert s.advance() == 25 and s.through == 25  # at most step a call
    assert s.advance() == 0  # the last 5 wait for finish
    assert s.finish() == 30


def test_a_run_stopped_early_keeps_the_old_results_file(journal: Journal, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    out.write_text("the last run's results\n")
    journal.add_rows(people(1, 10), [], through_line=10, last=True)
    journal.mark_in_flight(list(range(1, 11)))
    journal.record([RowOutcome(i, "sent", attempts=1) for i in range(1, 11)])
    s = stream(journal, out, least=1)
    assert s.advance() == 10
    s.discard()  # the run stopped: no finish
    assert out.read_text() == "the last run's results\n"
    assert not list(tmp_path.glob(".r.jsonl.*"))
    s.discard()  # idempotent


def test_a_write_error_falls_back_to_the_one_shot_export(journal: Journal, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    journal.add_rows(people(1, 10), [], through_line=10, last=True)
    journal.mark_in_flight(list(range(1, 11)))
    journal.record([RowOutcome(i, "sent", attempts=1) for i in range(1, 11)])
    s = journal.stream_results(out)

    def full(_data: bytes) -> int:
        raise OSError(28, "No space left on device")

    s._out.write = full  # type: ignore[method-assign]  # white-box: the disk fills
    s._least = 1
    assert s.advance() == 0 and s.broken
    assert journal.export_results(out, stream=s) == 10  # exported in one go instead
    assert out.read_bytes() == reference(journal, tmp_path)


def test_events_or_another_path_export_in_one_go(journal: Journal, tmp_path: Path) -> None:
    journal.add_rows(people(1, 3), [], through_line=3, last=True)
    s = journal.stream_results(tmp_path / "streamed.jsonl")
    other = tmp_path / "other.jsonl"
    assert journal.export_results(other, stream=s) == 3
    assert not (tmp_path / "streamed.jsonl").exists()
    assert not list(tmp_path.glob(".streamed.jsonl.*"))  # the stream was discarded
    events = tmp_path / "none-yet.sqlite"
    s = journal.stream_results(other)
    assert journal.export_results(other, events=events, stream=s) == 3
    assert all(b'"event":null' in line for line in other.read_bytes().splitlines())


async def test_a_campaign_run_streams_its_results_file(
    make_campaign: CampaignFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ahead: list[int] = []
    advance = ResultsStream.advance

    def counted(self: ResultsStream) -> int:
        ahead.append(advance(self))
        return ahead[-1]

    monkeypatch.setattr(ResultsStream, "advance", counted)
    rows = [f"user{i:05d}@stream.example.org,N{i}" for i in range(4500)]
    rows[100] = rows[7]  # a duplicate, skipped in line order
    rows[2000] = "not-an-address,X"
    path = make_campaign(rows=rows, rate=100_000)
    async with Sandbox() as sandbox:
        provider = SesProvider(credentials=SANDBOX_AWS, endpoint=sandbox.url)
        summary = await run_campaign(path, provider=provider)
    assert summary.counts["sent"] == 4498
    assert sum(ahead) >= 2000  # written while the campaign ran, not at its end
    conn = sqlite3.connect(summary.journal)
    try:
        assert Path(summary.results).read_bytes() == reference_of(conn, tmp_path)
    finally:
        conn.close()
    assert not list(tmp_path.glob(".*.partial"))
