"""Templates against the list: a variable no CSV column provides is a config error before
anything is sent (exit 2, naming the variable, the template and the columns found); JSONL
rows keep the per-row check; ``--quiet`` still says in one line when not everyone was sent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bulkmail import run_campaign
from bulkmail.cli import main
from bulkmail.errors import ConfigError

from .conftest import CampaignFactory


def outbox(path: Path) -> list[Path]:
    return list((path.parent / "outbox").glob("*.eml"))


def test_a_missing_column_exits_2_before_sending(
    make_campaign: CampaignFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    path = make_campaign(count=3)
    path.write_text(
        path.read_text().replace('subject: "Hi {{ first_name }}"', 'subject: "Hi {{ nickname }}"')
    )
    assert main([str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "template 'subject' uses 'nickname'" in err, err
    assert "columns found: 'email', 'first_name'" in err and "list.csv" in err
    assert "Traceback" not in err
    assert not outbox(path) and not (path.parent / "campaign.journal.sqlite").exists()
    # check / --dry-run say the same, also exit 2.
    assert main(["check", str(path)]) == 2
    assert "nickname" in capsys.readouterr().err


async def test_a_missing_column_in_a_body_file_names_that_file(
    make_campaign: CampaignFactory,
) -> None:
    path = make_campaign(count=2)
    (path.parent / "body.txt").write_text("Hello {{ first_name }}, your code is {{ code }}\n")
    with pytest.raises(ConfigError) as info:
        await run_campaign(path)
    assert info.value.file is not None and info.value.file.endswith("body.txt")
    assert "template 'text' uses 'code'" in str(info.value)
    assert not outbox(path)


async def test_every_column_present_sends(make_campaign: CampaignFactory) -> None:
    path = make_campaign(count=2)  # subject, text and html use first_name (a column) and email
    path.write_text(
        path.read_text().replace("Hi {{ first_name }}", "Hi {{ first_name }} {{ email }}")
    )
    summary = await run_campaign(path)
    assert summary.counts["sent"] == 2 and len(outbox(path)) == 2


async def test_jsonl_rows_keep_the_per_row_check(make_campaign: CampaignFactory) -> None:
    path = make_campaign(count=1)
    (path.parent / "list.jsonl").write_text(
        json.dumps({"email": "ana@example.org", "first_name": "Ana"})
        + "\n"
        + json.dumps({"email": "bo@example.org"})
        + "\n"
    )
    path.write_text(path.read_text().replace("recipients: list.csv", "recipients: list.jsonl"))
    summary = await run_campaign(path)
    assert summary.counts["sent"] == 1 and summary.counts["skipped"] == 1
    assert summary.exit_code == 1


def test_quiet_still_prints_one_line_when_not_everyone_was_sent(
    make_campaign: CampaignFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    path = make_campaign(rows=["ana@example.org,Ana", "not-an-address,Bo"])
    assert main([str(path), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert "not everyone was sent" in line and "sent 1" in line and "skipped 1" in line
    # ...and nothing at all when everyone was.
    path = make_campaign(rows=["ana@example.org,Ana"], name="ok")
    assert main([str(path), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
