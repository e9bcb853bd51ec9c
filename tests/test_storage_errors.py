"""A full disk during a run stops the campaign with a clear message, nothing unrecorded is
sent, and a rerun after freeing space completes exactly once.

Two ways to fill the disk: a real, small tmpfs holding the journal (in a user and mount
namespace, so no privilege is needed; `make install-test` installs `unshare`), and, everywhere,
a journal connection whose COMMIT fails with SQLite's own "database or disk is full" until the
journal gives back its reserve (what deleting a file does on a real disk).
"""

from __future__ import annotations

import collections
import email
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bulkmail import run_campaign
from bulkmail.books import _journal_store as store
from bulkmail.books.journal import Journal
from bulkmail.errors import JournalError

from .conftest import CampaignFactory

ROOT = Path(__file__).resolve().parents[1]
COUNT = 1500


def outbox_to(folder: Path) -> collections.Counter[str]:
    found: collections.Counter[str] = collections.Counter()
    for path in (folder / "outbox").glob("*.eml"):
        found[str(email.message_from_bytes(path.read_bytes())["To"])] += 1
    return found


def journal_rows(path: Path) -> dict[str, tuple[str, int]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT email, state, possible_duplicate FROM rows").fetchall()
    finally:
        conn.close()
    return {e: (state, dup) for e, state, dup in rows}


def results(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def require_tmpfs_namespace() -> None:
    """Fail (never skip) with the reason when a tmpfs cannot be mounted in a namespace."""
    assert shutil.which("unshare"), "unshare is missing: run make install-test (util-linux)"
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
         "mount -t tmpfs -o size=64k tmpfs /mnt"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert probe.returncode == 0, f"cannot mount a tmpfs in a user namespace: {probe.stderr}"


SCRIPT = r"""
set -u
cd "$FOLDER"
mkdir -p disk
mount -t tmpfs -o size=5120k tmpfs disk    # the 4 MiB reserve and about 1 MiB for the journal
"$PY" -m bulkmail campaign.yaml --journal disk/c.journal.sqlite --quiet 2> run1.err
echo $? > run1.rc
cp disk/c.journal.sqlite run1.sqlite
ls outbox | wc -l > run1.sent
mount -o remount,size=64m disk             # free space
"$PY" -m bulkmail campaign.yaml --journal disk/c.journal.sqlite --quiet 2> run2.err
echo $? > run2.rc
"""


@pytest.mark.slow
def test_a_real_full_disk_stops_then_the_rerun_sends_everyone_exactly_once(
    make_campaign: CampaignFactory,
) -> None:
    require_tmpfs_namespace()
    path = make_campaign(count=COUNT, domain="full.example.org", rate=800)
    folder = path.parent
    env = {
        **os.environ,
        "FOLDER": str(folder),
        "PY": sys.executable,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "AWS_ACCESS_KEY_ID": "unused",
        "AWS_SECRET_ACCESS_KEY": "unused",
    }
    subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "bash", "-c", SCRIPT],
        env=env,
        check=True,
        timeout=240,
    )
    err1 = (folder / "run1.err").read_text()
    assert (folder / "run1.rc").read_text().strip() == "2", err1
    assert "the disk holding the journal is full" in err1 and "Traceback" not in err1
    # Nothing unrecorded was sent: every message in the outbox is a row recorded sent.
    rows = journal_rows(folder / "run1.sqlite")
    sent_first = int((folder / "run1.sent").read_text())
    states = collections.Counter(state for state, _ in rows.values())
    assert 0 < sent_first < COUNT, "the disk must fill mid-run"
    assert states["sent"] == sent_first and states["in_flight"] == 0, states

    err2 = (folder / "run2.err").read_text()
    assert (folder / "run2.rc").read_text().strip() == "0", err2
    got = outbox_to(folder)
    assert len(got) == COUNT and set(got.values()) == {1}  # exactly once, nobody flagged
    final = results(folder / "campaign.results.jsonl")
    assert all(r["status"] == "sent" and not r["possible_duplicate"] for r in final)


class _Disk:
    """The journal's connection on a disk that fills after ``room`` commits; deleting the
    reserve file frees enough for the rest of the run (as it would on a real disk)."""

    def __init__(self, conn: sqlite3.Connection, reserve: Path, room: int) -> None:
        self._conn = conn
        self._reserve = reserve
        self._room = room

    def execute(self, sql: str, *args: Any) -> Any:
        if sql == "COMMIT":
            self._room -= 1
            if self._room < 0 and self._reserve.exists():
                raise sqlite3.OperationalError("database or disk is full")
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


async def test_an_injected_full_disk_stops_then_the_rerun_sends_everyone_exactly_once(
    make_campaign: CampaignFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make_campaign(count=600, domain="inject.example.org", rate=2000)
    journal = path.parent / "campaign.journal.sqlite"
    original = Journal.__init__

    def on_a_small_disk(self: Journal, conn: Any, *args: Any) -> None:
        original(self, _Disk(conn, Path(f"{journal}.reserve"), room=6), *args)

    with monkeypatch.context() as patch:
        patch.setattr(Journal, "__init__", on_a_small_disk)
        with pytest.raises(JournalError, match="disk holding the journal is full"):
            await run_campaign(path)
    rows = journal_rows(journal)
    sent_first = outbox_to(path.parent)
    states = collections.Counter(state for state, _ in rows.values())
    assert 0 < sum(sent_first.values()) < 600
    # Every accepted message is recorded sent; nothing is left in flight.
    assert {e for e, (s, _) in rows.items() if s == "sent"} == set(sent_first)
    assert states["in_flight"] == 0

    summary = await run_campaign(path)
    assert summary.exit_code == 0 and summary.recovery.ambiguous == 0
    got = outbox_to(path.parent)
    assert len(got) == 600 and set(got.values()) == {1}


class _FlakyRecord:
    """The journal's connection, failing the COMMIT of the ``nth`` outcome record once with
    an I/O error (the disk came back: the next write works)."""

    def __init__(self, conn: sqlite3.Connection, nth: int) -> None:
        self._conn = conn
        self._nth = nth
        self._recording = False

    def execute(self, sql: str, *args: Any) -> Any:
        if sql == store.RECORD:
            self._recording = True
        elif sql == "COMMIT" and self._recording:
            self._recording = False
            self._nth -= 1
            if self._nth == 0:
                raise sqlite3.OperationalError("disk I/O error")
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


async def test_a_failed_record_keeps_its_batch_and_stops_the_run(
    make_campaign: CampaignFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make_campaign(count=400, domain="flaky.example.org", rate=1000)
    original = Journal.__init__

    def flaky(self: Journal, conn: Any, *args: Any) -> None:
        original(self, _FlakyRecord(conn, nth=2), *args)

    with monkeypatch.context() as patch:
        patch.setattr(Journal, "__init__", flaky)
        with pytest.raises(JournalError, match="disk I/O error"):
            await run_campaign(path)
    rows = journal_rows(path.parent / "campaign.journal.sqlite")
    sent_first = outbox_to(path.parent)
    states = collections.Counter(state for state, _ in rows.values())
    # The batch whose record failed was kept and recorded at the end; sending stopped.
    assert states["in_flight"] == 0, states
    assert {e for e, (s, _) in rows.items() if s == "sent"} == set(sent_first)
    assert 0 < len(sent_first) < 400
    summary = await run_campaign(path)
    got = outbox_to(path.parent)
    assert summary.exit_code == 0 and len(got) == 400 and set(got.values()) == {1}
