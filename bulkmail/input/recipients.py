"""Streaming recipient readers: CSV and JSONL in, one :class:`Recipient` or :class:`Rejected` out.

Nothing here loads a whole list: files are read one physical line at a time (each line capped
at :data:`MAX_LINE_BYTES`), so memory stays flat for a ten-million-row list.

A problem with the *whole file* (missing, unreadable, empty, no email column, a ``.jsonl``
file whose first line is not JSON) raises :class:`~bulkmail.errors.ConfigError` naming the
file. A problem with *one row* is a value, :class:`Rejected`, carrying the line and a reason;
the reader then goes on with the next row::

    >>> for item in read_recipients(Path("list.csv")):          # doctest: +SKIP
    ...     if isinstance(item, Rejected):
    ...         print(f"line {item.line}: {item.reason}")

Which addresses are acceptable is :mod:`bulkmail.input.addresses`; the line reading under
both formats is ``_lines``; suppression files are ``_suppressed``. The address functions,
:func:`read_suppressed` and :data:`MAX_LINE_BYTES` are importable from here as well.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from io import BufferedReader
from pathlib import Path
from typing import Any

import orjson

from bulkmail._frozen import fast_init
from bulkmail.errors import ConfigError
from bulkmail.input._lines import (
    MAX_LINE_BYTES,
    find_column,
    open_list,
    physical_lines,
    raw_lines,
    read_header,
)
from bulkmail.input._suppressed import read_suppressed
from bulkmail.input.addresses import address_key, check_address, plain_address

#: A field longer than this (in characters) rejects its row.
MAX_FIELD_CHARS = 64 * 1024
#: Rejected rows keep at most this much of the email value (it may be a megabyte of junk).
_SHOWN = 320
_JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson"})


@fast_init
@dataclass(frozen=True, slots=True)
class Recipient:
    """One acceptable row: ``fields`` holds every column (or JSON key), ``email`` included."""

    line: int
    email: str
    key: str
    fields: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Rejected:
    """One row that cannot be sent to, with the physical line where it starts and why."""

    line: int
    email: str
    code: str
    reason: str


def read_recipients(
    path: Path, *, email_column: str = "email", start_after_line: int = 0
) -> Iterator[Recipient | Rejected]:
    """Stream the rows of a CSV (with a header) or JSONL list.

    ``.jsonl`` / ``.ndjson`` files hold one JSON object per line; anything else is CSV.
    ``line`` is the 1-based physical line where a row starts (the CSV header is line 1).
    Rows starting at or before ``start_after_line`` are skipped without being checked.
    The email column is found by exact name, else by a unique case-insensitive match.
    """
    path = Path(path)
    stream = open_list(path)
    if path.suffix.lower() in _JSONL_SUFFIXES:
        return _read_jsonl(path, stream, email_column, start_after_line)
    return _read_csv(path, stream, email_column, start_after_line)


def list_columns(path: Path) -> list[str] | None:
    """The column names of a CSV list's header (``None`` for JSONL, whose rows each have
    their own keys). Raises :class:`ConfigError` like :func:`read_recipients`."""
    path = Path(path)
    if path.suffix.lower() in _JSONL_SUFFIXES:
        return None
    with open_list(path) as stream:
        state, lines = physical_lines(stream)
        header = read_header(path, state, csv.reader(lines))
    if header is None:
        raise ConfigError("the file is empty (no header line)", file=str(path))
    return header


def list_fingerprint(path: Path) -> str:
    """SHA-256 (hex) of the file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    block = bytearray(1024 * 1024)
    view = memoryview(block)
    with open_list(Path(path)) as stream:
        while n := stream.readinto(view):
            digest.update(view[:n])
    return digest.hexdigest()


# -- plumbing ------------------------------------------------------------------------------


def _read_csv(
    path: Path, stream: BufferedReader, email_column: str, after: int
) -> Iterator[Recipient | Rejected]:
    with stream:
        state, lines = physical_lines(stream)
        reader = csv.reader(lines)
        header = read_header(path, state, reader)
        if header is None:
            raise ConfigError("the file is empty (no header line)", file=str(path))
        header_line = state.line
        if len(set(header)) != len(header):
            dupes = sorted({name for name in header if header.count(name) > 1})
            raise ConfigError(f"duplicate column names: {dupes}", file=str(path), line=header_line)
        at = find_column(path, header, email_column, header_line)
        width = len(header)
        while True:
            start = state.line + 1
            state.problem = None
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                # Either a field above csv.field_size_limit() (the rest of that physical line
                # is dropped by the csv module) or a stray CR in an unquoted field.
                if start > after:
                    if "field limit" in str(exc):
                        yield Rejected(start, "", "field_too_long", _too_long_reason())
                    else:
                        yield Rejected(start, "", "bad_csv", f"not valid CSV: {exc}")
                continue
            if start <= after:
                continue
            problem = state.problem
            if not row and problem is None:
                continue  # blank line
            email = row[at].strip() if len(row) > at else ""
            if problem is not None:
                yield Rejected(start, email[:_SHOWN], *problem)
            elif len(row) != width:
                yield Rejected(
                    start,
                    email[:_SHOWN],
                    "ragged_row",
                    f"row has {len(row)} fields but the header has {width}",
                )
            elif state.line - start > 0 or len(max(row, key=len)) > MAX_FIELD_CHARS:
                # Slow path only for long or multi-line rows.
                yield _check_csv_row(start, email, header, row)
            else:
                reason = check_address(email)
                if reason is None:
                    yield Recipient(
                        start, email, address_key(email), dict(zip(header, row, strict=True))
                    )
                else:
                    yield _rejected(start, email, reason)


def _check_csv_row(
    line: int, email: str, header: list[str], row: list[str]
) -> Recipient | Rejected:
    if any(len(value) > MAX_FIELD_CHARS for value in row):
        return Rejected(line, email[:_SHOWN], "field_too_long", _too_long_reason())
    reason = check_address(email)
    if reason is not None:
        return _rejected(line, email, reason)
    return Recipient(line, email, address_key(email), dict(zip(header, row, strict=True)))


def _rejected(line: int, email: str, reason: str) -> Rejected:
    """An address that failed :func:`check_address`, with a clearer reason for line breaks."""
    if "\r" in email or "\n" in email:
        reason = "the email address contains a line break"
    return Rejected(line, email[:_SHOWN], _address_code(email), reason)


def _too_long_reason() -> str:
    return f"a field is longer than {MAX_FIELD_CHARS // 1024} KiB"


def _address_code(email: str) -> str:
    return "empty_email" if not email else "invalid_address"


def _read_jsonl(
    path: Path, stream: BufferedReader, email_column: str, after: int
) -> Iterator[Recipient | Rejected]:
    with stream:
        line = 0
        seen_first = False
        for raw, too_long in raw_lines(stream):
            line += 1
            if too_long:
                if line > after:
                    yield Rejected(
                        line,
                        "",
                        "line_too_long",
                        f"line is longer than {MAX_LINE_BYTES // 1024} KiB",
                    )
                continue
            if not seen_first:
                if not raw.strip():
                    continue
                seen_first = True
                try:
                    orjson.loads(raw)
                except orjson.JSONDecodeError as exc:
                    raise ConfigError(
                        f"first line is not JSON ({exc}); a .jsonl list holds one JSON object"
                        " a line",
                        file=str(path),
                        line=line,
                    ) from None
            if line <= after:
                continue
            item = _jsonl_row(line, raw, email_column)
            if item is not None:
                yield item


def _jsonl_row(line: int, raw: bytes, email_column: str) -> Recipient | Rejected | None:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if not raw.strip():
            return None
        if b"\0" in raw:
            return Rejected(line, "", "nul_byte", "line has a NUL byte")
        try:
            raw.decode()
        except UnicodeDecodeError:
            return Rejected(line, "", "bad_encoding", "line is not valid UTF-8")
        return Rejected(line, "", "bad_json", f"not JSON: {exc}")
    if not isinstance(obj, dict):
        return Rejected(line, "", "not_object", f"not a JSON object but {type(obj).__name__}")
    value = obj.get(email_column)
    if value is None:
        return Rejected(line, "", "no_email", f"the object has no {email_column!r} key")
    if not isinstance(value, str):
        return Rejected(line, "", "invalid_address", "the email is not a string")
    email = value.strip()
    if len(raw) > MAX_FIELD_CHARS and any(
        isinstance(v, str) and len(v) > MAX_FIELD_CHARS for v in obj.values()
    ):
        return Rejected(line, email[:_SHOWN], "field_too_long", _too_long_reason())
    reason = check_address(email)
    if reason is not None:
        return _rejected(line, email, reason)
    return Recipient(line, email, address_key(email), obj)


__all__ = [
    "MAX_FIELD_CHARS",
    "MAX_LINE_BYTES",
    "Recipient",
    "Rejected",
    "address_key",
    "check_address",
    "list_columns",
    "list_fingerprint",
    "plain_address",
    "read_recipients",
    "read_suppressed",
]
