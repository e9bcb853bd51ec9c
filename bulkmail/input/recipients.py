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

Addresses: plain ASCII addresses go through a strict precompiled regex; anything it does not
accept (rare in real lists) is judged by email-validator, which also writes the reason.
Internationalised *domains* are accepted as written (a provider that needs 7-bit addresses
must send the Punycode form); non-ASCII *local parts* are rejected because they need SMTPUTF8,
which Amazon SES and Alibaba DirectMail do not offer.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from io import BufferedReader
from pathlib import Path
from typing import Any

import orjson

from bulkmail._frozen import fast_init
from bulkmail.errors import ConfigError

#: A field longer than this (in characters) rejects its row.
MAX_FIELD_CHARS = 64 * 1024
#: A physical line longer than this (in bytes) rejects its row; the rest of the line is
#: skipped without being held in memory.
MAX_LINE_BYTES = 1024 * 1024

#: Rejected rows keep at most this much of the email value (it may be a megabyte of junk).
_SHOWN = 320
_BOM = b"\xef\xbb\xbf"
_JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson"})

# Strict fast path for plain ASCII addresses. It only ever *accepts*: everything it does not
# match is handed to email-validator, so its accepted set must stay a subset of
# email-validator's (dot-atom local part; LDH labels without "ab--" (so no Punycode); at least
# one dot; an alphabetic TLD; special-use TLDs and length limits are checked after the match).
# A test compares the two on a table of awkward addresses.
# Measured on this machine (Python 3.11, email-validator 2.4): validate_email(...,
# check_deliverability=False) 22 us per address; this fast path 0.5 us. At 10,000 sends/s
# email-validator alone would take a fifth of a core.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LABEL = r"(?!..--)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_FAST_ADDRESS = re.compile(
    rf"{_ATEXT}+(?:\.{_ATEXT}+)*@(?:{_LABEL}\.)+([A-Za-z]{{2,63}})"
).fullmatch
_SPECIAL_TLDS = frozenset({"arpa", "invalid", "local", "localhost", "onion", "test"})


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


def address_key(email: str) -> str:
    """The dedupe / suppression key: local part as written, domain lower-cased.

    >>> address_key("Ana.Maria@Example.COM")
    'Ana.Maria@example.com'
    """
    local, at, domain = email.strip().rpartition("@")
    if not at:
        return domain
    return f"{local}@{domain.lower()}"


def check_address(email: str) -> str | None:
    """``None`` if ``email`` is acceptable, else a short human reason.

    >>> check_address("ana@example.com") is None
    True
    >>> check_address("ana@example")
    'The part after the @-sign is not valid. It should have a period.'
    """
    if plain_address(email):
        return None
    if not email:
        return "the email address is empty"
    # Imported here: a list of plain addresses (and a plain From:) never needs it, and its
    # import took 30-40 ms of every run.
    from email_validator import EmailNotValidError, validate_email

    try:
        validate_email(email, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        return str(exc)
    return None


def plain_address(email: str) -> bool:
    """True for an ASCII address that email-validator accepts too, known without it (the
    fast path of :func:`check_address`; ``False`` means "ask email-validator")."""
    match = _FAST_ADDRESS(email)
    return (
        match is not None
        and len(email) <= 254
        and email.index("@") <= 64
        and match[1].lower() not in _SPECIAL_TLDS
    )


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
    stream = _open(path)
    if path.suffix.lower() in _JSONL_SUFFIXES:
        return _read_jsonl(path, stream, email_column, start_after_line)
    return _read_csv(path, stream, email_column, start_after_line)


def list_columns(path: Path) -> list[str] | None:
    """The column names of a CSV list's header (``None`` for JSONL, whose rows each have
    their own keys). Raises :class:`ConfigError` like :func:`read_recipients`."""
    path = Path(path)
    if path.suffix.lower() in _JSONL_SUFFIXES:
        return None
    with _open(path) as stream:
        state, lines = _lines(stream)
        header = _read_header(path, state, csv.reader(lines))
    if header is None:
        raise ConfigError("the file is empty (no header line)", file=str(path))
    return header


def read_suppressed(path: Path) -> Iterator[str]:
    """Yield the :func:`address_key` of every valid address in a suppression file.

    The file is either a CSV with an email column (``.csv``, or any file whose first
    meaningful line is not an address but contains a comma) or plain text: one address a
    line, blank lines and lines starting with ``#`` ignored. Invalid lines are ignored.
    """
    path = Path(path)
    stream = _open(path)
    lines = _lines(stream)
    if path.suffix.lower() == ".csv":
        return _suppressed_csv(path, stream, lines, None)
    return _suppressed_text(path, stream, lines)


def list_fingerprint(path: Path) -> str:
    """SHA-256 (hex) of the file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    block = bytearray(1024 * 1024)
    view = memoryview(block)
    with _open(Path(path)) as stream:
        while n := stream.readinto(view):
            digest.update(view[:n])
    return digest.hexdigest()


# -- plumbing ------------------------------------------------------------------------------


def _open(path: Path) -> BufferedReader:
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(path)) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a file", file=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", file=str(path)) from exc


class _LineState:
    """What the line source tells the row parser about the lines of the current row."""

    __slots__ = ("line", "problem")

    def __init__(self) -> None:
        self.line = 0  # physical lines handed out so far
        self.problem: tuple[str, str] | None = None  # (code, reason) of the first bad line


def _raw_lines(stream: BufferedReader) -> Iterator[tuple[bytes, bool]]:
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


def _lines(stream: BufferedReader) -> tuple[_LineState, Iterator[str]]:
    """Decoded lines for :mod:`csv`, recording line numbers and bad bytes in a shared state."""
    state = _LineState()

    def gen() -> Iterator[str]:
        for raw, too_long in _raw_lines(stream):
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


def _find_column(path: Path, header: list[str], wanted: str, line: int) -> int:
    if wanted in header:
        return header.index(wanted)
    folded = [i for i, name in enumerate(header) if name.casefold() == wanted.casefold()]
    if len(folded) == 1:
        return folded[0]
    found = ", ".join(repr(name) for name in header) or "none"
    raise ConfigError(f"no {wanted!r} column (columns found: {found})", file=str(path), line=line)


def _read_header(path: Path, state: _LineState, reader: Iterator[list[str]]) -> list[str] | None:
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


def _read_csv(
    path: Path, stream: BufferedReader, email_column: str, after: int
) -> Iterator[Recipient | Rejected]:
    with stream:
        state, lines = _lines(stream)
        reader = csv.reader(lines)
        header = _read_header(path, state, reader)
        if header is None:
            raise ConfigError("the file is empty (no header line)", file=str(path))
        header_line = state.line
        if len(set(header)) != len(header):
            dupes = sorted({name for name in header if header.count(name) > 1})
            raise ConfigError(f"duplicate column names: {dupes}", file=str(path), line=header_line)
        at = _find_column(path, header, email_column, header_line)
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
        for raw, too_long in _raw_lines(stream):
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


def _suppressed_text(
    path: Path, stream: BufferedReader, lines: tuple[_LineState, Iterator[str]]
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
    lines: tuple[_LineState, Iterator[str]],
    header_text: str | None,
) -> Iterator[str]:
    # Lenient on purpose: a ragged or odd row still suppresses its address.
    with stream:
        state, source = lines
        if header_text is None:
            reader = csv.reader(source)
            found = _read_header(path, state, reader)
            if found is None:
                return  # an empty suppression file suppresses nothing
            header = found
        else:
            header = [name.strip() for name in next(csv.reader([header_text]))]
            reader = csv.reader(source)
        at = _find_column(path, header, "email", state.line)
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
