"""Suppression files: plain text (one address a line) or CSV with an email column.

>>> sorted(read_suppressed(Path("suppress.txt")))                  # doctest: +SKIP
['gone@example.com']
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from io import BufferedReader
from pathlib import Path

from bulkmail.input._lines import LineState, find_column, open_list, physical_lines, read_header
from bulkmail.input.addresses import address_key, check_address


def read_suppressed(path: Path) -> Iterator[str]:
    """Yield the :func:`address_key` of every valid address in a suppression file.

    The file is either a CSV with an email column (``.csv``, or any file whose first
    meaningful line is not an address but contains a comma) or plain text: one address a
    line, blank lines and lines starting with ``#`` ignored. Invalid lines are ignored.
    """
    path = Path(path)
    stream = open_list(path)
    lines = physical_lines(stream)
    if path.suffix.lower() == ".csv":
        return _suppressed_csv(path, stream, lines, None)
    return _suppressed_text(path, stream, lines)


def _suppressed_text(
    path: Path, stream: BufferedReader, lines: tuple[LineState, Iterator[str]]
) -> Iterator[str]:
    with stream:
        state, source = lines
        first = True
        for text in source:
            value = text.strip()
            if not value or value.startswith("#"):
                continue
            if first:
                first = False
                if "," in value and check_address(value) is not None:
                    yield from _suppressed_csv(path, stream, lines, value)
                    return
            if state.problem is None and check_address(value) is None:
                yield address_key(value)
            state.problem = None


def _suppressed_csv(
    path: Path,
    stream: BufferedReader,
    lines: tuple[LineState, Iterator[str]],
    header_text: str | None,
) -> Iterator[str]:
    # Lenient on purpose: a ragged or odd row still suppresses its address.
    with stream:
        state, source = lines
        if header_text is None:
            reader = csv.reader(source)
            found = read_header(path, state, reader)
            if found is None:
                return  # an empty suppression file suppresses nothing
            header = found
        else:
            header = [name.strip() for name in next(csv.reader([header_text]))]
            reader = csv.reader(source)
        at = find_column(path, header, "email", state.line)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error:
                continue
            if len(row) > at:
                email = row[at].strip()
                if check_address(email) is None:
                    yield address_key(email)


__all__ = ["read_suppressed"]
