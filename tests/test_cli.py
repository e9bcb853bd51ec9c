"""The CLI on good and hostile input: clear messages naming file/key/line, never a traceback,
and a config error never sends anything."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from bulkmail.cli import main

from .conftest import CampaignFactory

SECRET = "s3cr3t/ValueThatMustNeverAppear"
TOKEN = "SessionTokenThatMustNeverAppear"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def outbox_count(path: Path) -> int:
    outbox = path.parent / "outbox"
    return len(list(outbox.glob("*.eml"))) if outbox.exists() else 0


Edit = Callable[[Path], None]


def _replace(old: str, new: str) -> Edit:
    def edit(path: Path) -> None:
        path.write_text(path.read_text().replace(old, new))

    return edit


def _append(text: str) -> Edit:
    def edit(path: Path) -> None:
        path.write_text(path.read_text() + text)

    return edit


def _write(name: str, data: bytes) -> Edit:
    def edit(path: Path) -> None:
        (path.parent / name).write_bytes(data)

    return edit


def _remove(name: str) -> Edit:
    def edit(path: Path) -> None:
        (path.parent / name).unlink()

    return edit


CONFIG_ERRORS: dict[str, tuple[Edit, list[str]]] = {
    "malformed yaml": (_append("subject: [unclosed\n"), ["campaign.yaml", "line"]),
    "not a mapping": (lambda p: p.write_text("- just\n- a list\n"), ["campaign.yaml"]),
    "unknown key": (_append("subjet: typo\n"), ["subjet", "subject"]),
    "missing recipients file": (_remove("list.csv"), ["list.csv"]),
    "missing text file": (_remove("body.txt"), ["body.txt"]),
    "non-utf8 text file": (_write("body.txt", b"caf\xe9 {{ first_name }}"), ["body.txt"]),
    "negative rate": (_replace("rate: 1000", "rate: -3"), ["rate"]),
    "crlf in subject": (_replace('subject: "Hi', 'subject: "Bcc: x@evil.org\\r\\nHi'), ["subject"]),
    "from not an address": (_replace('from: "News <news@example.com>"', "from: nobody"), ["from"]),
    "credential in file": (
        _append(f"aws_secret_access_key: {SECRET}\n"),
        ["aws_secret_access_key"],
    ),
    "missing email column": (
        _write("list.csv", b"mail,first_name\na@example.org,A\n"),
        ["list.csv", "email"],
    ),
    "template syntax error": (_write("body.txt", b"Hello {{ first_name \n"), ["body.txt"]),
}


@pytest.mark.parametrize("case", sorted(CONFIG_ERRORS))
def test_config_errors_exit_2_name_the_place_and_send_nothing(
    case: str, make_campaign: CampaignFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    edit, fragments = CONFIG_ERRORS[case]
    path = make_campaign(count=5)
    edit(path)
    code, out, err = run([str(path)], capsys)
    assert code == 2, (out, err)
    assert "Traceback" not in err + out
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"
    assert SECRET not in err + out
    assert outbox_count(path) == 0


def test_bad_rate_flag(make_campaign: CampaignFactory, capsys: pytest.CaptureFixture[str]) -> None:
    path = make_campaign(count=2)
    code, _, err = run([str(path), "--rate", "fast"], capsys)
    assert code == 2 and "--rate" in err


def test_missing_credentials_for_a_real_endpoint(
    make_campaign: CampaignFactory,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "nope"))
    path = make_campaign(count=2, provider="name: ses\n  endpoint: http://127.0.0.1:9")
    code, _, err = run([str(path)], capsys)
    assert code == 2 and "AWS_ACCESS_KEY_ID" in err


ROW_CASES: dict[str, tuple[bytes, dict[str, int]]] = {
    "bom": (b"\xef\xbb\xbfemail,first_name\na@example.org,A\nb@example.org,B\n", {"sent": 2}),
    "invalid address": (
        b"email,first_name\nnot-an-address,A\nb@example.org,B\n",
        {"sent": 1, "skipped": 1},
    ),
    "non-utf8 row": (
        b"email,first_name\na@example.org,Andr\xe9\nb@example.org,B\n",
        {"sent": 1, "skipped": 1},
    ),
    "ragged row": (
        b"email,first_name\na@example.org,A,extra\nb@example.org,B\n",
        {"sent": 1, "skipped": 1},
    ),
    "megabyte field": (
        b"email,first_name\na@example.org," + b"x" * 1_100_000 + b"\nb@example.org,B\n",
        {"sent": 1, "skipped": 1},
    ),
    "header injection in a field": (
        b'email,first_name\na@example.org,"A\r\nBcc: victim@example.org"\nb@example.org,B\n',
        {"sent": 1, "skipped": 1},
    ),
    "empty list": (b"email,first_name\n", {}),
}


@pytest.mark.parametrize("case", sorted(ROW_CASES))
def test_bad_rows_are_skipped_with_their_line(
    case: str, make_campaign: CampaignFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    data, expected = ROW_CASES[case]
    path = make_campaign(count=1)
    (path.parent / "list.csv").write_bytes(data)
    code, out, err = run([str(path), "--json"], capsys)
    assert "Traceback" not in err + out
    summary = json.loads(out.strip().splitlines()[-1])
    counts = summary["counts"]
    for status in ("sent", "skipped", "failed"):
        assert counts.get(status, 0) == expected.get(status, 0), (case, counts)
    assert code == (1 if expected.get("skipped") else 0)
    rows = [json.loads(x) for x in Path(summary["results"]).read_text().splitlines()]
    for row in rows:
        if row["status"] == "skipped":
            assert row["line"] >= 2 and row["error"], row
    assert outbox_count(path) == expected.get("sent", 0)


def test_check_reports_problems_and_sends_nothing(
    make_campaign: CampaignFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    path = make_campaign(rows=["a@example.org,A", "bad,B", "a@EXAMPLE.ORG,dup", "c@example.org,C"])
    code, out, _ = run(["check", str(path)], capsys)
    assert code == 1
    assert "ready to send 2" in out and "line 3" in out and "invalid_address" in out
    assert outbox_count(path) == 0
    assert not (path.parent / "campaign.journal.sqlite").exists()


def test_changed_campaign_is_refused_then_restart_or_force(
    make_campaign: CampaignFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    path = make_campaign(count=3)
    assert run([str(path)], capsys)[0] == 0
    path.write_text(path.read_text().replace('subject: "Hi', 'subject: "Hello'))
    code, _, err = run([str(path)], capsys)
    assert code == 2 and "--restart" in err and "--force" in err
    assert outbox_count(path) == 3
    assert run([str(path), "--force"], capsys)[0] == 0
    assert outbox_count(path) == 3  # force continues: everyone was already sent
    assert run([str(path), "--restart"], capsys)[0] == 0
    assert outbox_count(path) == 3  # nothing changed since --force: a stray flag resends nobody
    path.write_text(path.read_text().replace('subject: "Hello', 'subject: "Hey'))
    assert run([str(path), "--restart"], capsys)[0] == 0
    assert outbox_count(path) == 6  # changed, and restart starts over on purpose


def test_secrets_never_appear_in_output_results_or_journal(
    make_campaign: CampaignFactory,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # A real-looking endpoint that answers SignatureDoesNotMatch (the sandbox does: its
    # credentials differ), echoing what it can; nothing secret may leak anywhere.
    import asyncio

    from bulkmail.servers.sandbox import Sandbox

    async def scenario() -> tuple[int, str, str, Path]:
        async with Sandbox() as sandbox:
            path = make_campaign(count=5, provider=f"name: ses\n  endpoint: {sandbox.url}")
            env = dict(
                os.environ,
                AWS_ACCESS_KEY_ID="AKIAEXAMPLEEXAMPLE",
                AWS_SECRET_ACCESS_KEY=SECRET,
                AWS_SESSION_TOKEN=TOKEN,
            )
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bulkmail",
                str(path),
                "--json",
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
            )
            out, err = await proc.communicate()
            assert proc.returncode is not None
            return proc.returncode, out.decode(), err.decode(), path

    code, out, err, path = asyncio.run(scenario())
    assert code != 0 and "Traceback" not in err
    everything = out + err
    for file in path.parent.iterdir():
        if file.is_file():
            everything += file.read_bytes().decode("latin-1")
    assert SECRET not in everything and TOKEN not in everything


def test_a_send_puts_the_garbage_collector_back_as_it_found_it(
    make_campaign: CampaignFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """The send command tunes the cyclic collector for its run (a test process that calls
    main() must not keep the tuning, nor objects frozen out of every collection)."""
    path = make_campaign(count=3)
    gc.set_threshold(700, 10, 10)
    before = gc.get_threshold()
    code, out, err = run([str(path), "--json"], capsys)
    assert code == 0, err
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    assert outbox_count(path) == 3
