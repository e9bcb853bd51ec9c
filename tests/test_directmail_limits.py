"""DirectMail's limits on what every message shares are config errors before the first send:
exit 2, the key and its line named, nothing sent (before, every recipient was refused and
marked failed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulkmail.cli import main
from bulkmail.servers.sandbox import SANDBOX_ALIBABA


def write(folder: Path, sender: str, subject: str, extra: str = "") -> Path:
    (folder / "list.csv").write_text("email\nana@example.org\nbo@example.org\n", encoding="utf-8")
    path = folder / "dm.yaml"
    path.write_text(
        "name: dm\n"
        "provider:\n  name: directmail\n  endpoint: sandbox\n"
        "rate: 50\n"
        f"from: {sender!r}\n"
        f"subject: {subject!r}\n"
        "text: Hello\n"
        "recipients: list.csv\n" + extra,
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    ("sender", "subject", "extra", "key", "line", "words"),
    [
        ("Our Very Long Newsletter <news@example.com>", "Hi", "", "from", 6, ["24 characters"]),
        ("News <news@example.com>", "S" * 101, "", "subject", 7, ["101 characters", "100"]),
        (
            "News <news@example.com>",
            "Hi",
            "headers: {X-Campaign: spring}\n",
            "headers",
            10,
            ["X-Campaign", "X-User-*"],
        ),
    ],
    ids=["alias", "subject", "header"],
)
def test_directmail_limits_exit_2_before_anything_is_sent(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    sender: str,
    subject: str,
    extra: str,
    key: str,
    line: int,
    words: list[str],
) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", SANDBOX_ALIBABA.access_key_id)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SANDBOX_ALIBABA.access_key_secret)
    path = write(tmp_path, sender, subject, extra)
    assert main([str(path)]) == 2
    err = capsys.readouterr().err
    assert f"dm.yaml:{line}: key {key!r}" in err, err
    for word in words:
        assert word in err
    assert "Traceback" not in err
    assert not (tmp_path / "outbox").exists() and not (tmp_path / "dm.journal.sqlite").exists()


def test_a_templated_subject_is_checked_per_message(tmp_path: Path) -> None:
    """Only a fixed subject is refused up front; a template may render short enough."""
    from bulkmail.api import load_campaign

    path = write(tmp_path, "News <news@example.com>", "{{ email }}" + "x" * 95)
    assert load_campaign(path).subject.startswith("{{ email }}")
