"""The journal keeps exact books: nothing lost, nothing repeated silently, across crashes."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from bulkmail.books.journal import Journal, PendingRow, Recovery, RowOutcome
from bulkmail.errors import JournalError

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


@dataclass(frozen=True, slots=True)
class Recipient:
    line: int
    email: str
    key: str
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Rejected:
    line: int
    email: str
    code: str
    reason: str


def rcpt(line: int, email: str, **fields: Any) -> Recipient:
    local, _, domain = email.rpartition("@")
    return Recipient(line, email, f"{local}@{domain.lower()}", {"email": email, **fields})


def people(first_line: int, count: int, domain: str = "example.org") -> list[Recipient]:
    return [rcpt(first_line + i, f"user{first_line + i}@{domain}") for i in range(count)]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "c.journal.sqlite"


@pytest.fixture
def journal(path: Path) -> Iterator[Journal]:
    j, _ = Journal.open(path, campaign_hash="c1", list_hash="l1", clock=Clock())
    with j:
        yield j


def reopen(path: Path, **kwargs: Any) -> tuple[Journal, Recovery]:
    kwargs.setdefault("campaign_hash", "c1")
    kwargs.setdefault("list_hash", "l1")
    return Journal.open(path, **kwargs)


def results(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def run_child(
    code: str, path: Path, expect_rc: int | None = None
) -> subprocess.CompletedProcess[str]:
    prelude = textwrap.dedent(
        """
        import os, signal, sys
        from dataclasses import dataclass
        from pathlib import Path
        from bulkmail.books.journal import Journal, RowOutcome

        @dataclass(frozen=True)
        class Recipient:
            line: int
            email: str
            key: str
            fields: dict

        def people(first, count):
            return [Recipient(i, f"u{i}@x.org", f"u{i}@x.org", {"n": i})
                    for i in range(first, first + count)]

        path = Path(sys.argv[1])
        """
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    proc = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    if expect_rc is not None:
        assert proc.returncode == expect_rc, proc.stderr
    return proc


# -- new journal, resume --------------------------------------------------------------------


def test_new_journal_is_empty(path: Path) -> None:
    journal, recovery = reopen(path)
    with journal:
        assert recovery == Recovery(0, 0, 0)
        assert journal.imported_through == 0 and not journal.finished_import
        assert journal.pending() == []
        assert journal.counts() == {
            "pending": 0,
            "in_flight": 0,
            "sent": 0,
            "failed": 0,
            "skipped": 0,
            "uncertain": 0,
            "possible_duplicate": 0,
            "total": 0,
        }
    assert Path(f"{path}.lock").exists()


def test_resume_keeps_rows_fields_and_import_position(path: Path) -> None:
    journal, _ = reopen(path)
    with journal:
        new = journal.add_rows(
            [rcpt(2, "Ana@Example.org", name="Ana", tags=["a", "é"], n=1), rcpt(3, "b@x.org")],
            [],
            through_line=3,
        )
        assert [(r.id, r.line, r.email) for r in new] == [
            (2, 2, "Ana@Example.org"),
            (3, 3, "b@x.org"),
        ]
        journal.mark_in_flight([2])
        journal.record([RowOutcome(2, "sent", message_id="m-2", attempts=1)])
    journal, recovery = reopen(path)
    with journal:
        assert recovery == Recovery(0, 0, 0)
        assert journal.imported_through == 3 and not journal.finished_import
        assert journal.pending() == [PendingRow(3, 3, "b@x.org", {"email": "b@x.org"}, False, 0)]
        journal.add_rows([rcpt(4, "c@x.org")], [], through_line=5, last=True)
        assert journal.imported_through == 5 and journal.finished_import
    journal, _ = reopen(path)
    with journal:
        assert journal.finished_import
        assert journal.counts()["sent"] == 1 and journal.counts()["pending"] == 2


def test_pending_pages_by_id(journal: Journal) -> None:
    journal.add_rows(people(2, 10), [], through_line=11)
    journal.mark_in_flight([4, 5])
    first = journal.pending(limit=4)
    assert [r.id for r in first] == [2, 3, 6, 7]
    assert [r.id for r in journal.pending(after_id=first[-1].id, limit=100)] == [8, 9, 10, 11]


def test_usable_from_another_thread(journal: Journal) -> None:
    with ThreadPoolExecutor(1) as pool:
        rows = pool.submit(journal.add_rows, people(2, 3), [], through_line=4).result()
        pool.submit(journal.mark_in_flight, [r.id for r in rows]).result()
        assert pool.submit(journal.counts).result()["in_flight"] == 3


# -- duplicates, suppression, rejected rows ---------------------------------------------------


def test_duplicates_inside_one_chunk_and_across_chunks(journal: Journal) -> None:
    new = journal.add_rows(
        [
            rcpt(2, "Ana@Example.com"),
            rcpt(3, "ana@example.com"),  # another local part: not a duplicate
            rcpt(4, "Ana@EXAMPLE.COM"),  # same key as line 2
        ],
        [],
        through_line=4,
    )
    assert [r.line for r in new] == [2, 3]
    new = journal.add_rows(
        [rcpt(5, "Ana@example.COM"), rcpt(6, "d@x.org"), rcpt(7, "D@X.ORG"), rcpt(8, "d@X.org")],
        [],
        through_line=8,
    )
    assert [r.line for r in new] == [6, 7]
    skips = list(journal.skips())
    assert skips == [
        {
            "line": 4,
            "email": "Ana@EXAMPLE.COM",
            "code": "duplicate",
            "reason": "duplicate of line 2",
        },
        {
            "line": 5,
            "email": "Ana@example.COM",
            "code": "duplicate",
            "reason": "duplicate of line 2",
        },
        {"line": 8, "email": "d@X.org", "code": "duplicate", "reason": "duplicate of line 6"},
    ]
    counts = journal.counts()
    assert counts["pending"] == 4 and counts["skipped"] == 3 and counts["total"] == 7
    assert journal.problem_skip_count() == 0


def test_second_in_chunk_copy_names_the_first_line_in_an_earlier_chunk(journal: Journal) -> None:
    journal.add_rows([rcpt(2, "a@x.org")], [], through_line=2)
    assert journal.add_rows([rcpt(3, "a@x.org"), rcpt(4, "a@X.org")], [], through_line=4) == []
    assert [s["reason"] for s in journal.skips()] == ["duplicate of line 2"] * 2


def test_readding_a_chunk_changes_nothing(journal: Journal) -> None:
    chunk = [rcpt(2, "a@x.org"), rcpt(3, "a@x.org"), rcpt(4, "b@x.org")]
    bad = [Rejected(5, "nope", "invalid_address", "no @")]
    assert len(journal.add_rows(chunk, bad, through_line=5)) == 2
    before = journal.counts()
    assert journal.add_rows(chunk, bad, through_line=5) == []
    assert journal.counts() == before
    assert len(list(journal.skips())) == 2


def test_same_line_twice_beyond_imported_through_is_not_a_duplicate(journal: Journal) -> None:
    # A careless caller whose through_line lags behind the rows it passed.
    assert len(journal.add_rows([rcpt(2, "a@x.org")], [], through_line=1)) == 1
    assert journal.add_rows([rcpt(2, "a@x.org")], [], through_line=2) == []
    assert list(journal.skips()) == [] and journal.counts()["total"] == 1


def test_same_line_different_recipient_is_refused(journal: Journal) -> None:
    journal.add_rows([rcpt(2, "a@x.org")], [], through_line=1)
    with pytest.raises(JournalError, match="same list line"):
        journal.add_rows([rcpt(2, "b@x.org")], [], through_line=2)
    assert journal.imported_through == 1 and journal.counts()["total"] == 1


def test_suppressed_keys_are_skipped(journal: Journal) -> None:
    assert journal.load_suppressed(["gone@x.org", "Left@x.org", "gone@x.org"]) == 2
    new = journal.add_rows(
        [
            rcpt(2, "gone@X.ORG"),
            rcpt(3, "left@x.org"),
            rcpt(4, "Left@x.org"),
            rcpt(5, "gone@x.org"),
        ],
        [],
        through_line=5,
    )
    # Suppression ignores case in the whole address (unlike dedupe): left@ is Left@.
    assert [r.line for r in new] == []
    assert [(s["line"], s["code"]) for s in journal.skips()] == [
        (2, "suppressed"),
        (3, "suppressed"),
        (4, "suppressed"),
        (5, "suppressed"),
    ]
    assert [s["line"] for s in journal.skips(codes={"duplicate"})] == []
    assert journal.problem_skip_count() == 0


def test_suppression_loaded_late_skips_pending_rows(journal: Journal) -> None:
    journal.add_rows([rcpt(2, "a@x.org"), rcpt(3, "b@x.org")], [], through_line=3)
    journal.mark_in_flight([2])
    journal.record([RowOutcome(2, "sent", message_id="m")])
    assert journal.load_suppressed(["a@x.org", "b@x.org"]) == 2
    assert journal.pending() == []
    counts = journal.counts()
    assert counts["sent"] == 1 and counts["skipped"] == 1
    assert journal.problem_skip_count() == 0


def test_rejected_rows_appear_in_results_in_line_order(journal: Journal, tmp_path: Path) -> None:
    journal.add_rows(
        [rcpt(2, "a@x.org"), rcpt(4, "a@X.ORG"), rcpt(6, "c@x.org")],
        [
            Rejected(3, "not-an-address", "invalid_address", "no @ sign"),
            Rejected(5, "", "bad_row", "wrong number of columns"),
        ],
        through_line=7,
        last=True,
    )
    out = tmp_path / "results.jsonl"
    assert journal.export_results(out) == 5
    rows = results(out)
    assert [(r["line"], r["status"], r["error_code"]) for r in rows] == [
        (2, "pending", None),
        (3, "skipped", "invalid_address"),
        (4, "skipped", "duplicate"),
        (5, "skipped", "bad_row"),
        (6, "pending", None),
    ]
    assert rows[1]["error"] == "no @ sign" and rows[2]["error"] == "duplicate of line 2"
    assert journal.problem_skip_count() == 2
    assert [s["line"] for s in journal.skips(codes={"bad_row", "invalid_address"})] == [3, 5]


def test_export_is_the_bytes_orjson_writes_with_skips_merged_in(
    journal: Journal, tmp_path: Path
) -> None:
    # SQLite writes each line (json_object) and merges the rows and the skipped lines in
    # line order; the file must be what orjson.dumps of each line's dict would be.
    journal.add_rows(
        [rcpt(2, "a@x.org"), rcpt(5, "b@x.org"), rcpt(6, "c@x.org"), rcpt(9, "d@x.org")],
        [
            Rejected(1, "first", "bad_row", 'quote " and \\ back'),
            Rejected(3, "x\u2028y", "invalid_address", "line\nbreak \u00e9"),
            Rejected(10, "last", "bad_row", "tab\there"),
        ],
        through_line=10,
        last=True,
    )
    journal.mark_in_flight([2, 5, 9])
    journal.record(
        [
            RowOutcome(2, "sent", message_id="m-2", attempts=1),
            RowOutcome(5, "failed", error_code="X", error='ctrl \x01 "q" \u2029', attempts=2),
            RowOutcome(9, "pending", possible_duplicate=True),
        ]
    )
    out = tmp_path / "results.jsonl"
    assert journal.export_results(out) == 7
    lines = out.read_bytes().splitlines()
    assert [json.loads(line)["line"] for line in lines] == [1, 2, 3, 5, 6, 9, 10]
    assert lines == [orjson.dumps(json.loads(line)) for line in lines]
    by_line = {json.loads(line)["line"]: json.loads(line) for line in lines}
    assert by_line[3] == {
        "line": 3,
        "email": "x\u2028y",
        "status": "skipped",
        "message_id": None,
        "error_code": "invalid_address",
        "error": "line\nbreak \u00e9",
        "attempts": 0,
        "possible_duplicate": False,
        "first_attempt_at": None,
        "finished_at": None,
    }
    assert by_line[9]["possible_duplicate"] is True and by_line[9]["status"] == "pending"
    assert by_line[5]["error"] == 'ctrl \x01 "q" \u2029' and by_line[2]["message_id"] == "m-2"


# -- sending and recording --------------------------------------------------------------------


def test_record_outcomes_and_timestamps(path: Path, tmp_path: Path) -> None:
    clock = Clock()
    journal, _ = reopen(path, clock=clock)
    with journal:
        journal.add_rows(people(2, 5), [], through_line=6)
        journal.mark_in_flight([2, 3, 4, 5, 6])
        clock.now += 2.5
        journal.record(
            [
                RowOutcome(2, "sent", message_id="m-2", attempts=1),
                RowOutcome(3, "failed", error_code="MessageRejected", error="bad", attempts=3),
                RowOutcome(
                    4, "uncertain", error_code="timeout", attempts=1, possible_duplicate=True
                ),
                RowOutcome(5, "pending"),  # given back: definitely not sent
                RowOutcome(6, "skipped", error_code="render", error="missing variable"),
            ]
        )
        # A late or repeated outcome never rewrites a final row.
        journal.record([RowOutcome(2, "pending"), RowOutcome(3, "sent", message_id="x")])
        assert journal.counts() == {
            "pending": 1,
            "in_flight": 0,
            "sent": 1,
            "failed": 1,
            "skipped": 1,
            "uncertain": 1,
            "possible_duplicate": 1,
            "total": 5,
        }
        assert [r.id for r in journal._select("uncertain", 0, 100)] == [4]
        assert journal._select("uncertain", 0, 100)[0].possible_duplicate
        assert journal.problem_skip_count() == 1  # the render problem
        out = tmp_path / "r.jsonl"
        journal.export_results(out)
    by_line = {r["line"]: r for r in results(out)}
    assert by_line[2] == {
        "line": 2,
        "email": "user2@example.org",
        "status": "sent",
        "message_id": "m-2",
        "error_code": None,
        "error": None,
        "attempts": 1,
        "possible_duplicate": False,
        "first_attempt_at": "2023-11-14T22:13:20.000Z",
        "finished_at": "2023-11-14T22:13:22.500Z",
    }
    assert by_line[3]["status"] == "failed" and by_line[3]["attempts"] == 3
    assert by_line[3]["message_id"] is None and by_line[3]["error"] == "bad"
    assert by_line[4]["possible_duplicate"] is True
    assert by_line[5]["status"] == "pending" and by_line[5]["finished_at"] is None
    assert by_line[6]["error_code"] == "render"


def test_given_back_row_keeps_its_attempts_and_can_be_sent_later(journal: Journal) -> None:
    journal.add_rows(people(2, 1), [], through_line=2)
    journal.mark_in_flight([2])
    # Two attempts, each answered with a refusal that proves nothing arrived (503).
    journal.record([RowOutcome(2, "pending", attempts=2, possible_duplicate=False)])
    journal.mark_in_flight([2])
    journal.record([RowOutcome(2, "pending")])  # given back before any attempt
    (row,) = journal.pending()
    assert row.attempts == 2 and not row.possible_duplicate
    journal.mark_in_flight([2])
    journal.record([RowOutcome(2, "sent", message_id="m", attempts=3)])
    assert journal.counts()["sent"] == 1


def test_mark_in_flight_refuses_rows_that_are_not_pending(journal: Journal) -> None:
    journal.add_rows(people(2, 3), [], through_line=4)
    journal.mark_in_flight([2])
    journal.record([RowOutcome(2, "sent", message_id="m")])
    with pytest.raises(JournalError, match="1 of 3 rows"):
        journal.mark_in_flight([3, 4, 2])
    with pytest.raises(JournalError):
        journal.mark_in_flight([99])
    assert journal.counts()["in_flight"] == 0  # the whole call was rolled back
    assert [r.id for r in journal.pending()] == [3, 4]


# -- campaign changes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("campaign_hash", "list_hash", "named"),
    [("c2", "l1", "campaign content"), ("c1", "l2", "recipient list")],
)
def test_changed_campaign_is_refused_with_a_clear_message(
    path: Path, campaign_hash: str, list_hash: str, named: str
) -> None:
    journal, _ = reopen(path)
    journal.close()
    with pytest.raises(JournalError) as caught:
        reopen(path, campaign_hash=campaign_hash, list_hash=list_hash)
    message = str(caught.value)
    assert named in message and "--restart" in message and "--force" in message
    other = "recipient list" if named == "campaign content" else "campaign content"
    assert other not in message
    journal, _ = reopen(path)  # the refusal released the lock and changed nothing
    journal.close()


def test_restart_wipes_everything(path: Path) -> None:
    journal, _ = reopen(path)
    with journal:
        journal.load_suppressed(["z@x.org"])
        journal.add_rows(
            people(2, 3), [Rejected(5, "x", "bad_row", "r")], through_line=5, last=True
        )
        journal.mark_in_flight([2])
    journal, recovery = reopen(path, campaign_hash="c2", on_change="restart")
    with journal:
        assert recovery == Recovery(0, 0, 0)
        assert journal.imported_through == 0 and not journal.finished_import
        assert journal.counts()["total"] == 0
        assert journal.add_rows([rcpt(2, "z@x.org")], [], through_line=2) != []  # not suppressed
    journal, _ = reopen(path, campaign_hash="c2")  # the new hashes were stored
    journal.close()


def test_restart_only_acts_on_a_change(path: Path) -> None:
    journal, _ = reopen(path)
    with journal:
        journal.add_rows(people(2, 3), [], through_line=4)
    journal, _ = reopen(path, on_change="restart")
    with journal:
        assert journal.counts()["total"] == 3


def test_force_continues_with_the_new_content(path: Path) -> None:
    journal, _ = reopen(path)
    with journal:
        journal.add_rows(people(2, 3), [], through_line=4, last=True)
        journal.mark_in_flight([2])
        journal.record([RowOutcome(2, "sent", message_id="m")])
    journal, _ = reopen(path, campaign_hash="c2", on_change="force")
    with journal:  # content changed, list did not: the import stays finished
        assert journal.finished_import and journal.counts()["sent"] == 1
    # The list changed: rows resume by line number, so an edited list could skip people.
    # --force refuses, names the safe ways out, and changes nothing.
    with pytest.raises(JournalError, match="--restart") as info:
        reopen(path, campaign_hash="c2", list_hash="l2", on_change="force")
    assert "suppression file" in str(info.value)
    journal, _ = reopen(path, campaign_hash="c2")
    with journal:
        assert journal.finished_import and journal.counts()["sent"] == 1


def test_a_file_that_is_not_a_journal_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(JournalError, match="not a usable bulkmail journal"):
        reopen(junk)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(JournalError, match="not a bulkmail journal"):
        reopen(other)


# -- recovery after a crash -------------------------------------------------------------------


def test_in_flight_rows_are_requeued_as_possible_duplicates(path: Path) -> None:
    run_child(
        """
        j, _ = Journal.open(path, campaign_hash="c1", list_hash="l1")
        j.add_rows(people(2, 10), [], through_line=11)
        j.mark_in_flight([2, 3, 4, 5])
        j.record([RowOutcome(2, "sent", message_id="m")])
        os._exit(3)  # dies with 3, 4, 5 sent out but not answered
        """,
        path,
        expect_rc=3,
    )
    journal, recovery = reopen(path)
    with journal:
        assert recovery == Recovery(ambiguous=3, requeued=3, uncertain=0)
        rows = journal.pending()
        assert [(r.id, r.possible_duplicate) for r in rows] == [
            (3, True),
            (4, True),
            (5, True),
            (6, False),
            (7, False),
            (8, False),
            (9, False),
            (10, False),
            (11, False),
        ]
        counts = journal.counts()
        assert counts["sent"] == 1 and counts["possible_duplicate"] == 3
        assert counts["in_flight"] == 0
    journal, recovery = reopen(path)  # nothing left to recover the second time
    journal.close()
    assert recovery == Recovery(0, 0, 0)


def test_at_most_once_holds_in_flight_rows_as_uncertain(path: Path, tmp_path: Path) -> None:
    run_child(
        """
        j, _ = Journal.open(path, campaign_hash="c1", list_hash="l1", at_most_once=True)
        j.add_rows(people(2, 4), [], through_line=5)
        j.mark_in_flight([2, 3])
        os.kill(os.getpid(), signal.SIGKILL)
        """,
        path,
        expect_rc=-9,
    )
    journal, recovery = reopen(path, at_most_once=True)
    with journal:
        assert recovery == Recovery(ambiguous=2, requeued=0, uncertain=2)
        assert [r.id for r in journal._select("uncertain", 0, 100)] == [2, 3]
        assert [r.id for r in journal.pending()] == [4, 5]
    # The guarantee is the campaign's: a later run without --at-most-once is refused...
    with pytest.raises(JournalError, match="started at-most-once.*with --at-most-once"):
        reopen(path)
    journal, recovery = reopen(path, at_most_once=True)
    with journal:  # ...and the held rows are never sent again.
        assert recovery == Recovery(0, 0, 0)
        assert [r.id for r in journal.pending()] == [4, 5]
        out = tmp_path / "r.jsonl"
        journal.export_results(out)
    held = [r for r in results(out) if r["status"] == "uncertain"]
    assert [r["line"] for r in held] == [2, 3]
    assert held[0]["error_code"] == "interrupted" and held[0]["first_attempt_at"]


def test_crash_inside_add_rows_leaves_no_trace(path: Path) -> None:
    # The rejected row's reason is read after the recipients were inserted, inside the same
    # transaction; reading it kills the process.
    run_child(
        """
        class Bomb:
            line, email, code = 9, "x", "bad_row"
            @property
            def reason(self):
                os._exit(4)

        j, _ = Journal.open(path, campaign_hash="c1", list_hash="l1")
        j.add_rows(people(2, 3), [], through_line=4)
        j.add_rows(people(5, 3), [Bomb()], through_line=9)
        """,
        path,
        expect_rc=4,
    )
    journal, recovery = reopen(path)
    with journal:
        assert recovery == Recovery(0, 0, 0)
        assert journal.imported_through == 4
        assert [r.id for r in journal.pending()] == [2, 3, 4]
        # The reader resumes after line 4 and the chunk goes in whole.
        assert len(journal.add_rows(people(5, 3), [], through_line=9)) == 3


def test_crash_inside_record_keeps_rows_in_flight(path: Path) -> None:
    run_child(
        """
        j, _ = Journal.open(path, campaign_hash="c1", list_hash="l1")
        j.add_rows(people(2, 3), [], through_line=4)
        j.mark_in_flight([2, 3, 4])

        def outcomes():
            yield RowOutcome(2, "sent", message_id="m")
            os._exit(5)

        class Lazy(list):
            def __iter__(self):
                return outcomes()

        j.record(Lazy())
        """,
        path,
        expect_rc=5,
    )
    journal, recovery = reopen(path)
    with journal:
        assert recovery == Recovery(ambiguous=3, requeued=3, uncertain=0)
        assert journal.counts()["sent"] == 0


# -- the lock ---------------------------------------------------------------------------------


def test_second_opener_in_the_same_process_is_refused(path: Path) -> None:
    journal, _ = reopen(path)
    with journal:
        held = rf"in use by another bulkmail run \(pid {os.getpid()}\)"
        with pytest.raises(JournalError, match=held):
            reopen(path)
    journal, _ = reopen(path)  # released on close
    journal.close()
    journal.close()  # idempotent


def test_second_opener_in_another_process_is_refused(path: Path) -> None:
    journal, _ = reopen(path)
    with journal:
        proc = run_child(
            """
            from bulkmail.errors import JournalError
            try:
                Journal.open(path, campaign_hash="c1", list_hash="l1")
            except JournalError as exc:
                print(exc)
                sys.exit(7)
            """,
            path,
            expect_rc=7,
        )
        assert f"is in use by another bulkmail run (pid {os.getpid()})" in proc.stdout
    # A holder that was SIGKILLed releases the lock with its process.
    run_child(
        """
        Journal.open(path, campaign_hash="c1", list_hash="l1")
        os.kill(os.getpid(), signal.SIGKILL)
        """,
        path,
        expect_rc=-9,
    )
    journal, _ = reopen(path)
    journal.close()


# -- export -----------------------------------------------------------------------------------


def test_export_replaces_the_file_atomically(journal: Journal, tmp_path: Path) -> None:
    out = tmp_path / "out" / "results.jsonl"
    out.parent.mkdir()
    out.write_text("old contents\n")
    out.chmod(0o640)
    journal.add_rows(people(2, 3), [], through_line=4)
    old = out.open()  # a reader of the old file keeps seeing the old file
    assert journal.export_results(out) == 3
    assert old.read() == "old contents\n"
    old.close()
    assert [r["line"] for r in results(out)] == [2, 3, 4]
    assert out.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in out.parent.iterdir()) == ["results.jsonl"]


def test_failed_export_leaves_the_previous_file(
    journal: Journal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "results.jsonl"
    journal.add_rows(people(2, 3000), [], through_line=3001)
    assert journal.export_results(out) == 3000
    before = out.read_bytes()
    journal.mark_in_flight([2])
    journal.record([RowOutcome(2, "sent", message_id="m")])

    real_fdopen = os.fdopen

    class FillsUp:
        """The temporary file, whose disk fills after the first batch of lines."""

        def __init__(self, fd: int, *args: Any, **kwargs: Any) -> None:
            self.file = real_fdopen(fd, *args, **kwargs)
            self.writes = 0

        def write(self, data: bytes) -> int:
            self.writes += 1
            if self.writes == 2:  # after the first batch of lines went in
                raise OSError("disk full")
            return int(self.file.write(data))

        def __enter__(self) -> FillsUp:
            return self

        def __exit__(self, *exc: object) -> None:
            self.file.close()

        def __getattr__(self, name: str) -> Any:
            return getattr(self.file, name)

    monkeypatch.setattr(os, "fdopen", FillsUp)
    with pytest.raises(JournalError, match="disk full"):  # ours, naming the cause
        journal.export_results(out)
    monkeypatch.undo()
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if "results" in p.name) == ["results.jsonl"]
    journal.export_results(out)
    assert results(out)[0]["status"] == "sent"


def test_nothing_but_list_data_is_stored(journal: Journal, path: Path) -> None:
    journal.add_rows([rcpt(2, "a@x.org", name="A")], [], through_line=2)
    conn = sqlite3.connect(path)
    try:
        columns = {
            c[1]
            for table in ("meta", "rows", "skips", "suppressed")
            for c in conn.execute(f"PRAGMA table_info({table})")
        }
    finally:
        conn.close()
    assert not {c for c in columns if "secret" in c or "password" in c or "token" in c}
