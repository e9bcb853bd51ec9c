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


def test_long_lived_writers_see_what_the_other_appended(tmp_path: Path) -> None:
    path = tmp_path / "s.txt"
    a, b = SuppressionFile(path), SuppressionFile(path)
    assert a.add(["x@example.org"]) == ["x@example.org"]
    assert b.add(["y@example.org"]) == ["y@example.org"]  # b reads the whole file once
    assert a.add(["Y@example.org", "z@example.org"]) == ["z@example.org"]  # a reads b's tail
    with path.open("a") as f:
        f.write("# by hand\nw@example.org\npartial@exa")  # a line still being written
    assert b.add(["w@example.org", "z@example.org"]) == []
    assert path.read_text().splitlines()[-1] == "partial@exa"
    path.write_text("fresh@example.org\n")  # replaced by an editor: read again whole
    assert a.add(["x@example.org", "fresh@example.org"]) == ["x@example.org"]
