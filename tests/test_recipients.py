"""The streaming readers: hostile input, line numbers, resume, memory, keys, suppression."""

from __future__ import annotations

import hashlib
import tracemalloc
from pathlib import Path

import pytest
from email_validator import EmailNotValidError, validate_email

from bulkmail.errors import ConfigError
from bulkmail.input.recipients import (
    MAX_LINE_BYTES,
    Recipient,
    Rejected,
    address_key,
    check_address,
    list_fingerprint,
    read_recipients,
    read_suppressed,
)

H = b"email,name\n"


def outcomes(path: Path) -> list[tuple[str, int, str]]:
    """Each item as ("ok", line, email) or ("rejected", line, code)."""
    out = []
    for item in read_recipients(path):
        if isinstance(item, Recipient):
            out.append(("ok", item.line, item.email))
        else:
            assert item.reason, item
            out.append(("rejected", item.line, item.code))
    return out


# (name, file suffix, file bytes, expected outcomes). Decisions worth knowing:
# * an internationalised domain is accepted as written; a non-ASCII local part is rejected
#   (SMTPUTF8, which SES and DirectMail do not offer);
# * a bad row never stops the reader: the next row is always read.
HOSTILE = [
    ("utf8 BOM", ".csv", b"\xef\xbb\xbf" + H + b"a@example.com,A\n", [("ok", 2, "a@example.com")]),
    ("CRLF line ends", ".csv", b"email,name\r\na@example.com,A\r\n", [("ok", 2, "a@example.com")]),
    (
        "non-UTF-8 row",
        ".csv",
        H + b"b\xff@example.com,B\nc@example.com,C\n",
        [("rejected", 2, "bad_encoding"), ("ok", 3, "c@example.com")],
    ),
    (
        "non-UTF-8 in another column",
        ".csv",
        H + b"b@example.com,Andr\xe9\nc@example.com,C\n",
        [("rejected", 2, "bad_encoding"), ("ok", 3, "c@example.com")],
    ),
    (
        "ragged rows",
        ".csv",
        H + b"a@example.com,A,extra\nb@example.com\nc@example.com,C\n",
        [("rejected", 2, "ragged_row"), ("rejected", 3, "ragged_row"), ("ok", 4, "c@example.com")],
    ),
    (
        "1 MB field",
        ".csv",
        H + b"a@example.com," + b"x" * 1_000_000 + b"\nb@example.com,B\n",
        [("rejected", 2, "field_too_long"), ("ok", 3, "b@example.com")],
    ),
    (
        "100 KB field (under the csv module's own limit)",
        ".csv",
        H + b"a@example.com," + b"x" * 100_000 + b"\nb@example.com,B\n",
        [("rejected", 2, "field_too_long"), ("ok", 3, "b@example.com")],
    ),
    (
        "quoted 1 MB field",
        ".csv",
        H + b'a@example.com,"' + b"x" * 1_000_000 + b'"\nb@example.com,B\n',
        [("rejected", 2, "field_too_long"), ("ok", 3, "b@example.com")],
    ),
    (
        "line over the line cap",
        ".csv",
        H + b"a@example.com," + b"x," * MAX_LINE_BYTES + b"\nb@example.com,B\n",
        [("rejected", 2, "line_too_long"), ("ok", 3, "b@example.com")],
    ),
    (
        "NUL byte",
        ".csv",
        H + b"a@exa\x00mple.com,A\nb@example.com,B\x00\nc@example.com,C\n",
        [("rejected", 2, "nul_byte"), ("rejected", 3, "nul_byte"), ("ok", 4, "c@example.com")],
    ),
    (
        "CR inside a quoted email",
        ".csv",
        H + b'"a@example.com\rBcc: x@example.com",A\nb@example.com,B\n',
        [("rejected", 2, "invalid_address"), ("ok", 3, "b@example.com")],
    ),
    (
        "LF inside a quoted email",
        ".csv",
        H + b'"a@example.com\nBcc: x@example.com",A\nb@example.com,B\n',
        [("rejected", 2, "invalid_address"), ("ok", 4, "b@example.com")],
    ),
    (
        "bare CR in an unquoted field",
        ".csv",
        H + b"a@example.com\rjunk,A\nb@example.com,B\n",
        [("rejected", 2, "bad_csv"), ("ok", 3, "b@example.com")],
    ),
    (
        "invalid addresses",
        ".csv",
        H + b"not-an-address,A\nana@example,A\nana@@example.com,A\nana@x.test,A\n"
        b" a@example.com ,A\n",
        [
            ("rejected", 2, "invalid_address"),
            ("rejected", 3, "invalid_address"),
            ("rejected", 4, "invalid_address"),
            ("rejected", 5, "invalid_address"),
            ("ok", 6, "a@example.com"),
        ],
    ),
    (
        "empty email",
        ".csv",
        H + b",A\n  ,B\nb@example.com,B\n",
        [
            ("rejected", 2, "empty_email"),
            ("rejected", 3, "empty_email"),
            ("ok", 4, "b@example.com"),
        ],
    ),
    (
        "IDN domain accepted, unicode local part rejected",
        ".csv",
        H + "ana@bücher.de,A\nü@example.com,B\nb@xn--bcher-kva.de,C\n".encode(),
        [
            ("ok", 2, "ana@bücher.de"),
            ("rejected", 3, "invalid_address"),
            ("ok", 4, "b@xn--bcher-kva.de"),
        ],
    ),
    (
        "blank lines are skipped",
        ".csv",
        H + b"\na@example.com,A\n\n",
        [("ok", 3, "a@example.com")],
    ),
    ("header only", ".csv", H, []),
    (
        "JSONL junk lines",
        ".jsonl",
        b'{"email": "a@example.com"}\nnot json\n[1, 2]\n{"name": "x"}\n{"email": 5}\n\n'
        b'{"email": "b@example.com", "n": {"k": [1]}}\n',
        [
            ("ok", 1, "a@example.com"),
            ("rejected", 2, "bad_json"),
            ("rejected", 3, "not_object"),
            ("rejected", 4, "no_email"),
            ("rejected", 5, "invalid_address"),
            ("ok", 7, "b@example.com"),
        ],
    ),
    (
        "JSONL BOM, non-UTF-8, NUL, line break in email",
        ".ndjson",
        b'\xef\xbb\xbf{"email": "a@example.com"}\n{"email": "\xff@example.com"}\n'
        b'{"email": "b@exa\x00mple.com"}\n{"email": "c@example.com\\r\\nBcc: d@example.com"}\n'
        b'{"email": "e@example.com"}\n',
        [
            ("ok", 1, "a@example.com"),
            ("rejected", 2, "bad_encoding"),
            ("rejected", 3, "nul_byte"),
            ("rejected", 4, "invalid_address"),
            ("ok", 5, "e@example.com"),
        ],
    ),
    (
        "JSONL 1 MB value",
        ".jsonl",
        b'{"email": "a@example.com", "x": "'
        + b"x" * 1_000_000
        + b'"}\n{"email": "b@example.com"}\n',
        [("rejected", 1, "field_too_long"), ("ok", 2, "b@example.com")],
    ),
]


@pytest.mark.parametrize(
    ("suffix", "data", "expected"), [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE]
)
def test_hostile_input(
    tmp_path: Path, suffix: str, data: bytes, expected: list[tuple[str, int, str]]
) -> None:
    path = tmp_path / f"list{suffix}"
    path.write_bytes(data)
    assert outcomes(path) == expected


def test_rejected_reasons_are_readable(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_bytes(
        H + b'"a@example.com\nBcc: x@example.com",A\nb@example.com,B,C\n' + b"x" * 200_000 + b",A\n"
    )
    items = list(read_recipients(path))
    assert all(isinstance(item, Rejected) for item in items)
    reasons = [item.reason for item in items if isinstance(item, Rejected)]
    assert reasons[0] == "the email address contains a line break"
    assert reasons[1] == "row has 3 fields but the header has 2"
    assert "64 KiB" in reasons[2]
    assert all(len(item.email) <= 320 for item in items)  # junk is not carried around whole


CONFIG_ERRORS = [
    ("empty file", "list.csv", b"", "empty"),
    ("only blank lines", "list.csv", b"\n\n", "empty"),
    (
        "no email column",
        "list.csv",
        b"mail,name\nx@example.com,X\n",
        "columns found: 'mail', 'name'",
    ),
    ("header not UTF-8", "list.csv", b"em\xffail,name\n", "not valid UTF-8"),
    ("duplicate columns", "list.csv", b"email,name,name\n", "duplicate"),
    ("JSONL header not JSON", "list.jsonl", b"email,name\na@example.com,A\n", "not JSON"),
]


@pytest.mark.parametrize(
    ("name", "data", "needle"), [c[1:] for c in CONFIG_ERRORS], ids=[c[0] for c in CONFIG_ERRORS]
)
def test_whole_file_problems_raise_config_error(
    tmp_path: Path, name: str, data: bytes, needle: str
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ConfigError) as info:
        list(read_recipients(path))
    assert str(path) in str(info.value)
    assert needle in str(info.value)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found") as info:
        read_recipients(tmp_path / "nope.csv")
    assert info.value.file == str(tmp_path / "nope.csv")
    with pytest.raises(ConfigError, match="directory"):
        read_recipients(tmp_path)


def test_email_column_and_fields(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text("Name, E-Mail \nAna,Ana@Example.COM\n")
    (item,) = read_recipients(path, email_column="e-mail")
    assert item == Recipient(
        line=2,
        email="Ana@Example.COM",
        key="Ana@example.com",
        fields={"Name": "Ana", "E-Mail": "Ana@Example.COM"},
    )


def test_jsonl_values_are_kept_as_they_are(tmp_path: Path) -> None:
    path = tmp_path / "list.jsonl"
    path.write_text('{"email": " a@example.com ", "n": 41, "tags": ["x"], "who": {"k": null}}\n')
    (item,) = read_recipients(path)
    assert isinstance(item, Recipient)
    assert item.email == "a@example.com"
    assert item.fields == {"email": " a@example.com ", "n": 41, "tags": ["x"], "who": {"k": None}}


MULTILINE = b'email,note\na@example.com,"line one\nline two"\nbad,x\nb@example.com,x\n'


def test_line_numbers_count_physical_lines(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_bytes(MULTILINE)
    items = list(read_recipients(path))
    assert [item.line for item in items] == [2, 4, 5]
    first = items[0]
    assert isinstance(first, Recipient)
    assert first.fields["note"] == "line one\nline two"


@pytest.mark.parametrize(
    ("after", "lines"),
    [(0, [2, 4, 5]), (1, [2, 4, 5]), (2, [4, 5]), (3, [4, 5]), (4, [5]), (5, [])],
)
def test_start_after_line(tmp_path: Path, after: int, lines: list[int]) -> None:
    path = tmp_path / "list.csv"
    path.write_bytes(MULTILINE)
    assert [item.line for item in read_recipients(path, start_after_line=after)] == lines


def test_start_after_line_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "list.jsonl"
    path.write_text('{"email": "a@example.com"}\n\n{"email": "b@example.com"}\n')
    assert [item.line for item in read_recipients(path, start_after_line=1)] == [3]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_reading_streams_in_constant_memory(tmp_path: Path, suffix: str) -> None:
    rows = 200_000
    path = tmp_path / f"big{suffix}"
    with path.open("w") as f:
        if suffix == ".csv":
            f.write("email,first_name,city\n")
            f.writelines(f"user{i}@example.com,Name{i},City{i % 50}\n" for i in range(rows))
        else:
            f.writelines(
                f'{{"email": "user{i}@example.com", "first_name": "Name{i}", "n": {i}}}\n'
                for i in range(rows)
            )
    assert path.stat().st_size > 5_000_000
    count = 0
    tracemalloc.start()
    try:
        for item in read_recipients(path):
            assert isinstance(item, Recipient)
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == rows
    assert peak < 2_000_000, f"peak {peak} bytes: the reader holds on to rows"


# A table of awkward addresses: check_address must agree with email-validator on every one
# (its fast path may only ever accept what email-validator accepts).
AWKWARD = [
    "ana@example.com",
    "Ana.Maria+news@Mail.Example.ORG",
    "a_b-c@x-y.example.co.uk",
    "o'neil@example.ie",
    "x!#$%&'*+/=?^`{|}~-@example.com",
    "a@b.co",
    "a" * 64 + "@example.com",
    "a" * 65 + "@example.com",
    "a@" + "b" * 63 + ".com",
    "a@" + "b" * 64 + ".com",
    "a@" + ".".join(["b" * 60] * 4) + ".com",
    "a@example",
    "a@example.c0m",
    "a@example.123",
    "a@1.2.3.4",
    "a@[1.2.3.4]",
    "a..b@example.com",
    ".a@example.com",
    "a.@example.com",
    "a@-example.com",
    "a@example-.com",
    "a@ex_ample.com",
    "a@example..com",
    "a@.example.com",
    "ab--c@ab--cd.com",
    "a@xn--bcher-kva.de",
    "a@xn--zz.de",
    "a@bücher.de",
    "ü@example.com",
    "a@example.test",
    "a@foo.localhost",
    "a@x.onion",
    "a@home.arpa",
    "a@x.invalid",
    '"quoted"@example.com',
    "a b@example.com",
    "a@exam ple.com",
    "a@example.com\n",
    "a\r@example.com",
    "a\x00@example.com",
    "Ana <a@example.com>",
    "@example.com",
    "a@",
    "",
    "a@example.com.",
    "a@EXAMPLE.COM",
    "a@example.museum",
    "a@example.x",
]


@pytest.mark.parametrize("address", AWKWARD)
def test_check_address_agrees_with_email_validator(address: str) -> None:
    try:
        validate_email(address, check_deliverability=False, allow_smtputf8=False)
        expected = True
    except EmailNotValidError:
        expected = False
    reason = check_address(address)
    assert (reason is None) == expected, reason
    if reason is not None:
        assert reason  # a human reason, never empty


@pytest.mark.parametrize(
    ("email", "key"),
    [
        ("Ana@Example.COM", "Ana@example.com"),
        ("  ana@example.com ", "ana@example.com"),
        ("ANA@EXAMPLE.COM", "ANA@example.com"),
        ("ana@Bücher.DE", "ana@bücher.de"),
        ('"a@b"@Example.com', '"a@b"@example.com'),
    ],
)
def test_address_key(email: str, key: str) -> None:
    assert address_key(email) == key


def test_address_key_dedupes_domain_case_only() -> None:
    assert address_key("ana@EXAMPLE.com") == address_key("ana@example.com")
    assert address_key("Ana@example.com") != address_key("ana@example.com")


def test_read_suppressed_plain_text(tmp_path: Path) -> None:
    path = tmp_path / "suppress.txt"
    path.write_bytes(
        b"# unsubscribed\n\nAna@Example.COM\n  bo@example.com  \nnot an address\n"
        b"c\xff@example.com\n#d@example.com\ne#tag@example.com\n"
    )
    assert list(read_suppressed(path)) == ["Ana@example.com", "bo@example.com", "e#tag@example.com"]


def test_read_suppressed_csv(tmp_path: Path) -> None:
    path = tmp_path / "suppress.csv"
    path.write_text("reason,Email\nbounce,a@Example.com\ncomplaint,b@example.com,extra\nx,bad\n")
    assert list(read_suppressed(path)) == ["a@example.com", "b@example.com"]


def test_read_suppressed_sniffs_csv_header(tmp_path: Path) -> None:
    path = tmp_path / "suppress.txt"
    path.write_text("# exported\nemail,reason\na@example.com,bounce\n")
    assert list(read_suppressed(path)) == ["a@example.com"]


def test_read_suppressed_empty_and_missing(tmp_path: Path) -> None:
    for name in ("empty.txt", "empty.csv"):
        (tmp_path / name).write_bytes(b"")
        assert list(read_suppressed(tmp_path / name)) == []
    with pytest.raises(ConfigError, match="not found"):
        read_suppressed(tmp_path / "nope.txt")
    path = tmp_path / "bad.csv"
    path.write_text("address\na@example.com\n")
    with pytest.raises(ConfigError, match="no 'email' column"):
        list(read_suppressed(path))


def test_list_fingerprint(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    data = bytes(range(256)) * 10_000  # 2.5 MiB: several blocks
    path.write_bytes(data)
    assert list_fingerprint(path) == hashlib.sha256(data).hexdigest()
    path.write_bytes(data + b"\n")
    assert list_fingerprint(path) != hashlib.sha256(data).hexdigest()
    with pytest.raises(ConfigError, match="not found"):
        list_fingerprint(tmp_path / "nope.csv")
