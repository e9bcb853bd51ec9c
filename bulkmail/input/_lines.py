"""The physical lines of a list or suppression file, read one at a time.

Each line is capped at :data:`MAX_LINE_BYTES` (the rest of a longer one is skipped without
being held in memory), a leading BOM is dropped, and a shared :class:`LineState` tells the
row parser the line number and the first bad line (too long, a NUL byte, not UTF-8) of the
row it is reading. Also the header and column lookups the CSV readers share.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from io import BufferedReader
from pathlib import Path

from bulkmail.errors import ConfigError

#: A physical line longer than this (in bytes) rejects its row; the rest of the line is
#: skipped without being held in memory.
MAX_LINE_BYTES = 1024 * 1024

_BOM = b"\xef\xbb\xbf"


def open_list(path: Path) -> BufferedReader:
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(path)) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a file", file=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", file=str(path)) from exc


class LineState:
    """What the line source tells the row parser about the lines of the current row."""

    __slots__ = ("line", "problem")

    def __init__(self) -> None:
        self.line = 0  # physical lines handed out so far
        self.problem: tuple[str, str] | None = None  # (code, reason) of the first bad line


def raw_lines(stream: BufferedReader) -> Iterator[tuple[bytes, bool]]:
    """Physical lines as bytes (BOM removed), each with "was longer than the cap"."""
    readline = stream.readline
    first = True
    while raw := readline(MAX_LINE_BYTES):
        too_long = len(raw) == MAX_LINE_BYTES and raw[-1:] != b"\n"
        if too_long:
            # Skip the rest of the physical line without holding it.
            while (more := readline(MAX_LINE_BYTES)) and more[-1:] != b"\n":
                pass
            raw = b"\n"
        if first:
            first = False
            if raw.startswith(_BOM):
                raw = raw[3:]
        yield raw, too_long


def physical_lines(stream: BufferedReader) -> tuple[LineState, Iterator[str]]:
    """Decoded lines for :mod:`csv`, recording line numbers and bad bytes in a shared state."""
    state = LineState()

    def gen() -> Iterator[str]:
        for raw, too_long in raw_lines(stream):
            state.line += 1
            if too_long:
                state.problem = state.problem or (
                    "line_too_long",
                    f"line {state.line} is longer than {MAX_LINE_BYTES // 1024} KiB",
                )
            if b"\0" in raw:
                state.problem = state.problem or ("nul_byte", f"line {state.line} has a NUL byte")
                raw = raw.replace(b"\0", b"")
            try:
                yield raw.decode()
            except UnicodeDecodeError:
                state.problem = state.problem or (
                    "bad_encoding",
                    f"line {state.line} is not valid UTF-8",
                )
                yield raw.decode("utf-8", "replace")

    return state, gen()


def find_column(path: Path, header: list[str], wanted: str, line: int) -> int:
    if wanted in header:
        return header.index(wanted)
    folded = [i for i, name in enumerate(header) if name.casefold() == wanted.casefold()]
    if len(folded) == 1:
        return folded[0]
    found = ", ".join(repr(name) for name in header) or "none"
    raise ConfigError(f"no {wanted!r} column (columns found: {found})", file=str(path), line=line)


def read_header(path: Path, state: LineState, reader: Iterator[list[str]]) -> list[str] | None:
    """The stripped column names, or ``None`` for a file with no header at all."""
    try:
        while True:
            header = next(reader)
            if header:
                break
    except StopIteration:
        return None
    except csv.Error as exc:
        raise ConfigError(
            f"header is not valid CSV: {exc}", file=str(path), line=state.line
        ) from None
    if state.problem is not None:
        raise ConfigError(f"header: {state.problem[1]}", file=str(path), line=state.line)
    return [name.strip() for name in header]


__all__ = [
    "MAX_LINE_BYTES",
    "LineState",
    "find_column",
    "open_list",
    "physical_lines",
    "raw_lines",
    "read_header",
]
