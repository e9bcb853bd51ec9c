"""The suppression file: appended atomically, never twice, read back by a campaign."""

from __future__ import annotations

import threading
from pathlib import Path

from bulkmail.deliverability.suppression import SuppressionFile
from bulkmail.input.recipients import read_suppressed


def test_dedupes_ignoring_case_and_keeps_what_is_there(tmp_path: Path) -> None:
    path = tmp_path / "s.txt"
    path.write_text("# hand-kept\nAna@Example.org")  # no final newline
    file = SuppressionFile(path)
    assert file.add(["ana@example.org", "bob@x.org", "BOB@X.ORG", "not an address"]) == [
        "bob@x.org"
    ]
    assert path.read_text() == "# hand-kept\nAna@Example.org\nbob@x.org\n"
    assert sorted(read_suppressed(path)) == ["Ana@example.org", "bob@x.org"]
    assert file.addresses() == {"ana@example.org": "Ana@example.org", "bob@x.org": "bob@x.org"}


def test_concurrent_writers_never_duplicate(tmp_path: Path) -> None:
    path = tmp_path / "s.txt"
    emails = [f"u{i}@example.org" for i in range(200)]

    def writer() -> None:
        for start in range(0, 200, 20):
            SuppressionFile(path).add(emails[start : start + 20])

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = path.read_text().splitlines()
    assert sorted(lines) == sorted(emails)
