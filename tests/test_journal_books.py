"""The journal's books across runs: the stored delivery guarantee, ``retry_failed``, what a
give-back keeps, power-loss settings, a failed COMMIT, and upgrading a format-1 journal."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bulkmail.books.journal import Journal, JournalFull, RowOutcome
from bulkmail.errors import JournalError

from .test_journal import people, reopen


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "c.journal.sqlite"


def states(journal: Journal) -> dict[int, tuple[str, bool, int]]:
    rows = journal._conn.execute("SELECT id, state, possible_duplicate, attempts FROM rows")
    return {i: (state, bool(dup), attempts) for i, state, dup, attempts in rows}


def test_wal_with_synchronous_full_by_default(path: Path) -> None:
    journal, _ = reopen(path)
    with journal:
        assert journal._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert journal._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    journal, _ = reopen(path, synchronous="NORMAL")
    with journal:
        assert journal._conn.execute("PRAGMA synchronous").fetchone()[0] == 1


@pytest.mark.parametrize("first", [False, True])
def test_the_delivery_guarantee_is_fixed_at_the_first_run(path: Path, first: bool) -> None:
    reopen(path, at_most_once=first)[0].close()
    flag = "with" if first else "without"
    with pytest.raises(JournalError, match=f"run again {flag} --at-most-once") as info:
        reopen(path, at_most_once=not first)
    assert "--journal" in str(info.value)
    reopen(path, at_most_once=first)[0].close()  # the same setting continues
    # --restart of a changed campaign starts over: the new run sets the guarantee again.
    reopen(path, at_most_once=not first, campaign_hash="c2", on_change="restart")[0].close()
    reopen(path, at_most_once=not first, campaign_hash="c2")[0].close()


def test_retry_failed_puts_back_retryable_rows_then_all(path: Path) -> None:
    journal, _ = reopen(path)
    with journal:
        journal.add_rows(people(2, 4), [], through_line=5)
        journal.mark_in_flight([2, 3, 4, 5])
        journal.record(
            [
                RowOutcome(2, "failed", error_code="HTTP500", attempts=1, retryable=True),
                RowOutcome(3, "failed", error_code="MessageRejected", attempts=1, retryable=False),
                RowOutcome(4, "failed", error_code="Throttling", attempts=30, retryable=True),
                RowOutcome(5, "sent", message_id="m", attempts=1),
            ]
        )
    journal, recovery = reopen(path)  # a plain rerun: failed rows are final
    with journal:
        assert recovery.retried == 0 and journal.pending() == []
    journal, recovery = reopen(path, retry_failed="retryable")
    with journal:
        assert recovery.retried == 2
        assert [(r.id, r.attempts) for r in journal.pending()] == [(2, 1), (4, 30)]
        journal.mark_in_flight([2, 4])
        journal.record(
            [
                RowOutcome(2, "sent", message_id="m2", attempts=2),
                RowOutcome(4, "sent", message_id="m4", attempts=31),
            ]
        )
    journal, recovery = reopen(path, retry_failed="all")
    with journal:
        assert recovery.retried == 1
        assert [r.id for r in journal.pending()] == [3]
        assert states(journal)[2] == ("sent", False, 2)


def test_a_row_given_back_after_an_attempt_is_flagged(path: Path) -> None:
    journal, _ = reopen(path)
    with journal:
        journal.add_rows(people(2, 3), [], through_line=4)
        journal.mark_in_flight([2, 3, 4])
        journal.record(
            [
                RowOutcome(2, "pending"),  # never attempted: definitely not sent
                RowOutcome(3, "pending", attempts=1),  # attempted, answer not known to refuse
                RowOutcome(4, "pending", attempts=1, possible_duplicate=False),  # proven refused
            ]
        )
        assert states(journal) == {
            2: ("pending", False, 0),
            3: ("pending", True, 1),
            4: ("pending", False, 1),
        }
        # The flag is never cleared by a later outcome.
        journal.mark_in_flight([3])
        journal.record(
            [RowOutcome(3, "sent", message_id="m", attempts=2, possible_duplicate=False)]
        )
        assert states(journal)[3] == ("sent", True, 2)


def test_at_most_once_holds_rows_flagged_by_an_earlier_run(path: Path) -> None:
    """A format-1 journal (no stored guarantee) with possible duplicates pending, opened at
    most once: they are held uncertain, not sent."""
    journal, _ = reopen(path)
    with journal:
        journal.add_rows(people(2, 2), [], through_line=3)
        journal.mark_in_flight([2])
    reopen(path)[0].close()  # the in-flight row is now a pending possible duplicate
    downgrade_to_format_1(path)
    journal, recovery = reopen(path, at_most_once=True)
    with journal:
        assert recovery.held == 1
        assert states(journal) == {2: ("uncertain", True, 0), 3: ("pending", False, 0)}
    with pytest.raises(JournalError, match="at-most-once"):  # stored at this first v2 run
        reopen(path)


def downgrade_to_format_1(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE meta DROP COLUMN guarantee")
    conn.execute("ALTER TABLE rows DROP COLUMN retryable")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()


class _FailingCommit:
    """The journal's connection, with COMMIT failing as on a full disk (armed by the test)."""

    def __init__(self, conn: sqlite3.Connection, error: str = "database or disk is full") -> None:
        self._conn = conn
        self._error = error
        self.fail = 0

    def execute(self, sql: str, *args: Any) -> Any:
        if sql == "COMMIT" and self.fail:
            self.fail -= 1
            raise sqlite3.OperationalError(self._error)
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def test_a_failed_commit_is_rolled_back(path: Path) -> None:
    journal, _ = reopen(path, reserve=0)
    with journal:
        journal.add_rows(people(2, 2), [], through_line=3)
        failing = _FailingCommit(journal._conn, "disk I/O error")
        journal._conn = failing  # type: ignore[assignment]
        failing.fail = 1
        with pytest.raises(JournalError, match="cannot be written: disk I/O error"):
            journal.mark_in_flight([2, 3])
        assert not failing.in_transaction
        # Nothing of the failed transaction stays, and the journal goes on working.
        assert states(journal) == {2: ("pending", False, 0), 3: ("pending", False, 0)}
        journal.mark_in_flight([2])
        assert states(journal)[2][0] == "in_flight"


def test_record_on_a_full_disk_spends_the_reserve_once(path: Path) -> None:
    journal, _ = reopen(path, reserve=1 << 16)
    reserve = Path(f"{path}.reserve")
    with journal:
        assert reserve.stat().st_size == 1 << 16
        journal.add_rows(people(2, 2), [], through_line=3)
        journal.mark_in_flight([2, 3])
        failing = _FailingCommit(journal._conn)
        journal._conn = failing  # type: ignore[assignment]
        failing.fail = 1
        journal.record([RowOutcome(2, "sent", message_id="m", attempts=1)])
        assert not reserve.exists()  # given back, and the outcome recorded on the retry
        assert states(journal)[2] == ("sent", False, 1)
        with pytest.raises(JournalFull):  # once the disk filled, nothing new is sent
            journal.mark_in_flight([])
        failing.fail = 2
        with pytest.raises(JournalFull):  # no reserve left: the caller must stop
            journal.record([RowOutcome(3, "sent", message_id="m", attempts=1)])
    reopen(path, reserve=1 << 16)[0].close()
    assert reserve.exists()  # set aside again on the next run
