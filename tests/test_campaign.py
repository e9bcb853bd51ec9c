"""campaign.yaml validation: every hostile input becomes one ConfigError naming file, key, line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from bulkmail.errors import ConfigError
from bulkmail.input.campaign import Campaign

GOOD = """\
name: spring-news
provider:
  name: ses
  region: eu-west-1
  endpoint: sandbox
rate: 14
from: "News <news@example.com>"
reply_to: [help@example.com]
subject: "Hi {{ first_name }}"
text: {file: news.txt}
html: {file: news.html}
recipients: recipients.csv
tags: {campaign: spring}
headers: {X-User-Campaign: spring}
unsubscribe: {url: "https://x.example/u?e={{ email }}", mailto: "unsub@example.com"}
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "news.txt").write_text("Hello {{ first_name }}\n", encoding="utf-8")
    (tmp_path / "news.html").write_text("<p>Hello {{ first_name }}</p>\n", encoding="utf-8")
    (tmp_path / "recipients.csv").write_text("email\na@example.com\n", encoding="utf-8")
    return tmp_path


def write(folder: Path, text: str, name: str = "campaign.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def replace_line(key: str, new: str | None) -> str:
    """GOOD with the top-level line starting ``key:`` replaced by ``new`` (or removed)."""
    out = []
    for line in GOOD.splitlines():
        if line.startswith(f"{key}:"):
            if new is not None:
                out.extend(new.splitlines())
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def line_of(text: str, needle: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in document")


def test_good_campaign_loads(folder: Path) -> None:
    c = Campaign.from_file(write(folder, GOOD))
    assert c.name == "spring-news"
    assert c.provider.name == "ses" and c.provider.region == "eu-west-1"
    assert c.provider.endpoint == "sandbox" and c.provider.api == "v2"
    assert c.rate == 14.0 and c.max_attempts == 5
    assert c.sender == "News <news@example.com>"
    assert c.reply_to == ("help@example.com",)
    assert c.text == "Hello {{ first_name }}\n"
    assert c.html == "<p>Hello {{ first_name }}</p>\n"
    assert c.recipients == folder / "recipients.csv"
    assert dict(c.tags) == {"campaign": "spring"}
    assert dict(c.headers) == {"X-User-Campaign": "spring"}
    assert c.unsubscribe_url == "https://x.example/u?e={{ email }}"
    assert c.unsubscribe_mailto == "unsub@example.com"
    assert c.template is None and c.attachments == () and dict(c.directmail) == {}


def test_relative_paths_resolve_beside_the_campaign_not_the_cwd(
    folder: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = folder / "files"
    sub.mkdir()
    (sub / "a.pdf").write_bytes(b"%PDF-1.4")
    (sub / "body.txt").write_text("body", encoding="utf-8")
    (folder / "out").mkdir()
    text = replace_line("text", "text: {file: files/body.txt}") + (
        "attachments: [files/a.pdf]\nsuppress: recipients.csv\nresults: out/r.jsonl\n"
    )
    path = write(folder, text)
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    c = Campaign.from_file(path)
    assert c.text == "body"
    assert c.attachments == (sub / "a.pdf",)
    assert c.suppress == folder / "recipients.csv"
    assert c.results == folder / "out" / "r.jsonl"


def test_sources_name_where_each_part_came_from(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(folder, replace_line("html", 'html: "<p>inline</p>"'))
    monkeypatch.chdir(folder)
    c = Campaign.from_file("campaign.yaml")
    assert dict(c.sources) == {
        "subject": "campaign.yaml",
        "text": "news.txt",
        "html": "campaign.yaml",
    }
    assert c.html == "<p>inline</p>"


def test_defaults_for_name_results_and_journal(folder: Path) -> None:
    c = Campaign.from_file(write(folder, replace_line("name", None), name="spring.yaml"))
    assert c.name == "spring"
    assert c.results == folder / "spring.results.jsonl"
    assert c.journal == folder / "spring.journal.sqlite"
    assert c.provider.region == "eu-west-1"


@pytest.mark.parametrize(
    ("provider", "expect"),
    [
        ("provider: ses", {"name": "ses", "region": "us-east-1", "api": "v2", "endpoint": None}),
        ("provider: {name: ses, api: v1}", {"api": "v1"}),
        (
            "provider: {name: directmail, version: 2017-06-22}",  # unquoted: a YAML date
            {"region": "cn-hangzhou", "version": "2017-06-22"},
        ),
        (
            "provider: {name: smtp, host: ses, region: eu-west-1}",
            {"host": "email-smtp.eu-west-1.amazonaws.com", "port": 587, "tls": "starttls"},
        ),
        (
            "provider: {name: smtp, host: directmail}",
            {"host": "smtpdm.aliyun.com", "port": 465, "tls": "implicit", "region": "cn-hangzhou"},
        ),
        (
            "provider: {name: smtp, host: mail.example.com, tls: none, username: u, "
            "password_env: SMTP_PASSWORD, pool: 2}",
            {"port": 25, "username": "u", "password_env": "SMTP_PASSWORD", "pool": 2},
        ),
    ],
)
def test_provider_settings_and_defaults(
    folder: Path, provider: str, expect: dict[str, Any]
) -> None:
    text = replace_line("provider", provider).replace("  name: ses\n  region: eu-west-1\n", "")
    text = text.replace("  endpoint: sandbox\n", "").replace("tags: {campaign: spring}\n", "")
    c = Campaign.from_file(write(folder, text))
    for key, value in expect.items():
        assert getattr(c.provider, key) == value, key


def test_directmail_section_defaults(folder: Path) -> None:
    text = replace_line("provider", "provider: directmail").replace(
        "tags: {campaign: spring}\n", ""
    )
    text = text.replace("  name: ses\n  region: eu-west-1\n  endpoint: sandbox\n", "")
    c = Campaign.from_file(write(folder, text + "directmail: {click_trace: 1, tag_name: spring}\n"))
    assert dict(c.directmail) == {
        "address_type": 1,
        "click_trace": "1",
        "tag_name": "spring",
        "mode": "single",
    }


def test_stored_template_replaces_subject_and_body(folder: Path) -> None:
    text = GOOD
    for key in ("subject", "text", "html"):
        text = "\n".join(x for x in text.splitlines() if not x.startswith(f"{key}:")) + "\n"
    c = Campaign.from_file(write(folder, text + "template: {name: MyTemplate}\n"))
    assert c.template == "MyTemplate" and c.subject == "" and c.text is None and c.html is None


def test_rate_auto_and_reply_to_string(folder: Path) -> None:
    text = replace_line("rate", "rate: auto")
    text = text.replace("reply_to: [help@example.com]", 'reply_to: "Help <help@example.com>"')
    c = Campaign.from_file(write(folder, text))
    assert c.rate is None
    assert c.reply_to == ("Help <help@example.com>",)


# ------------------------------------------------------------------------- the hostile table

# (id, document, expected key, line needle or None, fragments the message must contain)
HOSTILE: list[tuple[str, str, str | None, str | None, list[str]]] = [
    ("unknown-key", replace_line("subject", 'subjet: "Hi"'), "subjet", "subjet:",
     ["unknown key", "did you mean 'subject'"]),
    ("unknown-nested", GOOD.replace("  region:", "  regoin:"), "provider.regoin", "regoin",
     ["did you mean 'region'"]),
    ("missing-from", replace_line("from", None), "from", None, ["is required"]),
    ("missing-recipients", replace_line("recipients", None), "recipients", None, ["is required"]),
    ("missing-subject", replace_line("subject", None), "subject", None, ["is required"]),
    ("missing-provider", replace_line("provider", None).replace("  name: ses\n", "")
     .replace("  region: eu-west-1\n", "").replace("  endpoint: sandbox\n", ""),
     "provider", None, ["is required"]),
    ("no-body", replace_line("text", None).replace("html: {file: news.html}\n", ""),
     "text", None, ["text or html"]),
    ("rate-zero", replace_line("rate", "rate: 0"), "rate", "rate:", ["positive"]),
    ("rate-negative", replace_line("rate", "rate: -3"), "rate", "rate:", ["positive"]),
    ("rate-text", replace_line("rate", "rate: fast"), "rate", "rate:", ["'fast'"]),
    ("rate-inf", replace_line("rate", "rate: .inf"), "rate", "rate:", ["positive"]),
    ("rate-bool", replace_line("rate", "rate: yes"), "rate", "rate:", ["boolean"]),
    ("concurrency-float", GOOD + "concurrency: 2.5\n", "concurrency", "concurrency:",
     ["whole number"]),
    ("daily-limit-zero", GOOD + "daily_limit: 0\n", "daily_limit", "daily_limit:",
     ["at least 1"]),
    ("max-attempts-range", GOOD + "max_attempts: 1000\n", "max_attempts", "max_attempts:",
     ["between 1 and 100"]),
    ("subject-wrong-type", replace_line("subject", "subject: [a, b]"), "subject", "subject:",
     ["must be a string", "a list"]),
    ("bad-provider", GOOD.replace("  name: ses", "  name: mailgun"), "provider.name",
     "name: mailgun", ["ses, directmail, smtp", "mailgun"]),
    ("bad-api", GOOD.replace("  endpoint: sandbox", "  api: v3"), "provider.api", "api: v3",
     ["v2, v1"]),
    ("api-on-smtp", GOOD.replace("  name: ses", "  name: smtp\n  host: mail.example.com\n  api: v2")
     .replace("  region: eu-west-1\n", "").replace("  endpoint: sandbox\n", ""),
     "provider.api", "api: v2", ["only to provider ses"]),
    ("bad-region", GOOD.replace("eu-west-1", "EU West"), "provider.region", "region:",
     ["us-east-1"]),
    ("bad-endpoint", GOOD.replace("endpoint: sandbox", "endpoint: ftp://x"),
     "provider.endpoint", "endpoint:", ["http(s) URL"]),
    ("missing-text-file", replace_line("text", "text: {file: nope.txt}"), "text.file", "text:",
     ["not found", "nope.txt"]),
    ("directory-as-file", replace_line("recipients", "recipients: ."), "recipients",
     "recipients:", ["is a directory"]),
    ("text-file-typo-key", replace_line("text", "text: {fil: news.txt}"), "text.fil", "text:",
     ["did you mean 'file'"]),
    ("cr-lf-subject", replace_line("subject", 'subject: "Hi\\r\\nBcc: all@example.com"'),
     "subject", "subject:", ["CR or LF"]),
    ("cr-lf-from", replace_line("from", 'from: "news@example.com\\nBcc: x@example.com"'),
     "from", "from:", ["CR or LF"]),
    ("cr-lf-header", GOOD.replace("X-User-Campaign: spring", 'X-User-Campaign: "a\\nb"'),
     "headers.X-User-Campaign", "headers:", ["CR or LF"]),
    ("invalid-from", replace_line("from", 'from: "News <news@example>"'), "from", "from:",
     ["not a valid address"]),
    ("two-froms", replace_line("from", 'from: "a@example.com, b@example.com"'), "from",
     "from:", ["one address"]),
    ("invalid-reply-to", GOOD.replace("[help@example.com]", "[help@example.com, nope]"),
     "reply_to[1]", "reply_to:", ["'nope'"]),
    ("reserved-header", GOOD.replace("X-User-Campaign: spring", "Subject: x"), "headers.Subject",
     "headers:", ["set by bulkmail", "'subject'"]),
    ("bad-tag", GOOD.replace("campaign: spring", "campaign: spring sale"), "tags.campaign",
     "tags:", ["A-Z a-z 0-9"]),
    ("unsubscribe-not-url", GOOD.replace('url: "https://x.example/u?e={{ email }}"',
     'url: "javascript:alert(1)"'), "unsubscribe.url", "unsubscribe:", ["http(s) URL"]),
    ("template-with-subject", replace_line("text", None).replace("html: {file: news.html}\n", "")
     + "template: {name: T}\n", "subject", "subject:",
     ["stored template"]),
    ("arn-on-directmail", GOOD.replace("name: ses", "name: directmail").replace(
     "  region: eu-west-1\n", "").replace("tags: {campaign: spring}\n", "")
     + "source_arn: arn:aws:ses:us-east-1:123456789012:identity/example.com\n",
     "source_arn", "source_arn:", ["only to provider ses"]),
    ("batch-needs-template-name", GOOD.replace("name: ses", "name: directmail").replace(
     "  region: eu-west-1\n", "").replace("tags: {campaign: spring}\n", "").replace(
     "subject: \"Hi {{ first_name }}\"\ntext: {file: news.txt}\nhtml: {file: news.html}\n", "")
     + "directmail: {mode: batch, receivers_name: list1}\n",
     "directmail.template_name", "directmail:", ["is required"]),
    ("results-overwrites-recipients", GOOD + "results: recipients.csv\n", "results", "results:",
     ["overwritten"]),
    ("results-in-missing-dir", GOOD + "journal: no/such/dir/j.sqlite\n", "journal", "journal:",
     ["does not exist"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("document", "key", "needle", "fragments"),
    [pytest.param(*case[1:], id=case[0]) for case in HOSTILE],
)
def test_hostile_input_names_file_key_and_line(
    folder: Path, document: str, key: str, needle: str | None, fragments: list[str]
) -> None:
    path = write(folder, document)
    with pytest.raises(ConfigError) as info:
        Campaign.from_file(path)
    err = info.value
    message = str(err)
    assert err.file == str(path) and message.startswith(str(path))
    assert err.key == key, message
    if needle is not None:
        assert err.line == line_of(document, needle), message
        assert f"{path}:{err.line}:" in message
    for fragment in fragments:
        assert fragment in message
    assert "Traceback" not in message


@pytest.mark.parametrize(
    ("document", "line", "fragment"),
    [
        pytest.param("name: x\nprovider: [ses\nrate: 1\n", 3, "invalid YAML", id="unclosed-flow"),
        pytest.param("name: x\n  rate: 1\n", 2, "invalid YAML", id="bad-indent"),
        pytest.param('subject: "abc\n', 2, "invalid YAML", id="unterminated-quote"),
        pytest.param("a: 1\n---\nb: 2\n", 2, "single document", id="two-documents"),
        pytest.param("x: !!python/object:os.system {}\n", 1, "invalid YAML", id="python-tag"),
        pytest.param("", 1, "is empty", id="empty"),
    ],
)
def test_malformed_yaml_reports_line_and_column(
    folder: Path, document: str, line: int, fragment: str
) -> None:
    path = write(folder, document)
    with pytest.raises(ConfigError) as info:
        Campaign.from_file(path)
    assert info.value.line == line, str(info.value)
    assert fragment in str(info.value)
    assert str(info.value).startswith(f"{path}:{line}:")
    if fragment == "invalid YAML":
        assert f"line {line}, column " in str(info.value)


@pytest.mark.parametrize("document", ["- a\n- b\n", "just a string\n", "42\n"])
def test_not_a_mapping(folder: Path, document: str) -> None:
    path = write(folder, document)
    with pytest.raises(ConfigError, match="must be a mapping") as info:
        Campaign.from_file(path)
    assert info.value.file == str(path)


def test_missing_and_non_utf8_campaign_file(folder: Path) -> None:
    with pytest.raises(ConfigError, match="not found") as info:
        Campaign.from_file(folder / "nope.yaml")
    assert info.value.file == str(folder / "nope.yaml")
    bad = folder / "latin1.yaml"
    bad.write_bytes(b"name: ok\nsubject: caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8") as info:
        Campaign.from_file(bad)
    assert info.value.line == 2


def test_non_utf8_html_file_names_the_file(folder: Path) -> None:
    (folder / "news.html").write_bytes(b"<p>caf\xe9</p>")
    path = write(folder, GOOD)
    with pytest.raises(ConfigError) as info:
        Campaign.from_file(path)
    assert info.value.key == "html.file"
    assert info.value.line == line_of(GOOD, "html:")
    assert "news.html" in str(info.value) and "not UTF-8" in str(info.value)
    assert "0xe9" in str(info.value)


def test_oversized_text_file_is_refused(folder: Path) -> None:
    with (folder / "news.txt").open("wb") as f:
        f.truncate(10 * 1024 * 1024 + 1)
    with pytest.raises(ConfigError, match="larger than 10 MB") as info:
        Campaign.from_file(write(folder, GOOD))
    assert info.value.key == "text.file"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads mode-000 files")
def test_unreadable_recipients_file(folder: Path) -> None:
    target = folder / "recipients.csv"
    target.chmod(0)
    try:
        with pytest.raises(ConfigError, match="cannot be read") as info:
            Campaign.from_file(write(folder, GOOD))
    finally:
        target.chmod(0o644)
    assert info.value.key == "recipients"


@pytest.mark.parametrize(
    "key", ["aws_secret_access_key", "password", "secret", "access_key", "api-key", "token"]
)
@pytest.mark.parametrize("where", ["top", "provider"])
def test_credential_keys_are_refused_without_echoing(folder: Path, key: str, where: str) -> None:
    value = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    if where == "top":
        document, dotted = GOOD + f"{key}: {value}\n", key
    else:
        document, dotted = (
            GOOD.replace("  name: ses\n", f"  name: ses\n  {key}: {value}\n"),
            (f"provider.{key}"),
        )
    path = write(folder, document)
    with pytest.raises(ConfigError) as info:
        Campaign.from_file(path)
    message = str(info.value)
    assert value not in message and "wJalr" not in message
    assert info.value.key == dotted
    assert info.value.line == line_of(document, key)
    assert "environment" in message


def test_password_env_is_not_a_credential(folder: Path) -> None:
    text = GOOD.replace(
        "  name: ses\n  region: eu-west-1\n  endpoint: sandbox\n",
        "  name: smtp\n  host: ses\n  username: AKIAEXAMPLE\n  password_env: SMTP_PASSWORD\n",
    )
    c = Campaign.from_file(write(folder, text))
    assert c.provider.password_env == "SMTP_PASSWORD"
    assert c.provider.host == "email-smtp.us-east-1.amazonaws.com"


def test_all_problems_are_collected_in_one_error(folder: Path) -> None:
    document = GOOD.replace("rate: 14", "rate: -1").replace("subject:", "subjet:")
    document = document.replace("news.txt", "gone.txt")
    path = write(folder, document)
    with pytest.raises(ConfigError) as info:
        Campaign.from_file(path)
    message = str(info.value)
    assert info.value.file == str(path)
    assert message.startswith(f"{path}: 3 problems:")
    lines = message.splitlines()[1:]
    assert len(lines) == 3  # no "subject is required" on top of "did you mean 'subject'"
    assert all(line.strip().startswith(f"{path}:") for line in lines)
    keys = "\n".join(lines)
    for key in ("'rate'", "'subjet'", "'text.file'"):
        assert key in keys


def test_many_problems_do_not_stop_at_first(folder: Path) -> None:
    path = write(folder, "provider: {name: nope}\nrate: 0\nfrom: x\nbogus: 1\n")
    with pytest.raises(ConfigError) as info:
        Campaign.from_file(path)
    message = str(info.value)
    for key in ("provider.name", "rate", "from", "bogus", "subject", "recipients", "text"):
        assert f"key '{key}'" in message, key


def test_alias_bomb_does_not_explode(folder: Path) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(12)
    )
    with pytest.raises(ConfigError, match="unknown key"):
        Campaign.from_file(write(folder, bomb))


# -------------------------------------------------------------------------------- overrides


def test_overrides_win_over_the_file(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(folder, GOOD)
    cwd = folder / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    c = Campaign.from_file(
        path,
        overrides={
            "rate": 2.5,
            "endpoint": "http://127.0.0.1:9000",
            "results": "r.jsonl",
            "journal": "j.sqlite",
            "concurrency": 7,
        },
    )
    assert c.rate == 2.5 and c.provider.endpoint == "http://127.0.0.1:9000"
    assert c.results == cwd / "r.jsonl" and c.journal == cwd / "j.sqlite"  # flags: relative to cwd
    assert c.concurrency == 7
    assert Campaign.from_file(path, overrides={"rate": "auto"}).rate is None


def test_override_supplies_a_missing_rate(folder: Path) -> None:
    c = Campaign.from_file(write(folder, replace_line("rate", None)), overrides={"rate": 3})
    assert c.rate == 3.0


@pytest.mark.parametrize(
    ("overrides", "flag", "fragment"),
    [
        ({"rate": 0}, "--rate", "positive"),
        ({"rate": "soon"}, "--rate", "'soon'"),
        ({"endpoint": "not a url"}, "--endpoint", "http(s) URL"),
        ({"concurrency": 0}, "--concurrency", "at least 1"),
        ({"results": "/no/such/dir/r.jsonl"}, "--results", "does not exist"),
        ({"daily_limit": 5}, "--daily-limit", "can be overridden"),
    ],
)
def test_bad_overrides_name_the_flag(
    folder: Path, overrides: dict[str, Any], flag: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        Campaign.from_file(write(folder, GOOD), overrides=overrides)
    assert info.value.key == flag and info.value.line is None
    assert fragment in str(info.value)


# ----------------------------------------------------------------------------- content hash


def test_content_hash_ignores_operational_knobs(folder: Path) -> None:
    path = write(folder, GOOD)
    base = Campaign.from_file(path).content_hash()
    assert len(base) == 64
    assert Campaign.from_file(path).content_hash() == base
    assert (
        Campaign.from_file(
            path, overrides={"rate": 1, "endpoint": "https://e.example", "concurrency": 3}
        ).content_hash()
        == base
    )
    moved = GOOD.replace("rate: 14", "rate: auto\ndaily_limit: 10\nmax_attempts: 2")
    assert Campaign.from_file(write(folder, moved.replace("eu-west-1", "us-west-2"))
                              ).content_hash() == base  # fmt: skip


def test_content_hash_changes_with_what_recipients_receive(folder: Path) -> None:
    path = write(folder, GOOD)
    base = Campaign.from_file(path).content_hash()
    write(folder, GOOD.replace('"Hi {{ first_name }}"', '"Hello {{ first_name }}"'))
    assert Campaign.from_file(path).content_hash() != base
    write(folder, GOOD)
    (folder / "news.txt").write_text("Changed body\n", encoding="utf-8")
    assert Campaign.from_file(path).content_hash() != base


def test_content_hash_covers_attachment_contents(folder: Path) -> None:
    (folder / "a.pdf").write_bytes(b"one")
    path = write(folder, GOOD + "attachments: [a.pdf]\n")
    first = Campaign.from_file(path).content_hash()
    (folder / "a.pdf").write_bytes(b"two")
    assert Campaign.from_file(path).content_hash() != first


def test_example_campaign_is_valid() -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "campaign.yaml"
    c = Campaign.from_file(example)
    assert c.provider.endpoint == "sandbox" and c.text and c.html
    assert c.sources["text"].endswith("news.txt")


@pytest.mark.parametrize(
    ("region", "host"),
    [
        ("cn-hangzhou", "smtpdm.aliyun.com"),
        ("ap-southeast-1", "smtpdm-ap-southeast-1.aliyuncs.com"),
        ("eu-central-1", "smtpdm-eu-central-1.aliyuncs.com"),
    ],
)
def test_directmail_smtp_preset_uses_the_documented_host(
    folder: Path, region: str, host: str
) -> None:
    text = GOOD.replace(
        "  name: ses\n  region: eu-west-1\n  endpoint: sandbox\n",
        f"  name: smtp\n  host: directmail\n  region: {region}\n"
        "  username: news@example.com\n  password_env: DM_SMTP_PASSWORD\n",
    ).replace("tags: {campaign: spring}\n", "")
    campaign = Campaign.from_file(write(folder, text))
    assert (campaign.provider.host, campaign.provider.port, campaign.provider.tls) == (
        host,
        465,
        "implicit",
    )


def test_directmail_smtp_preset_refuses_an_unknown_region(folder: Path) -> None:
    text = GOOD.replace(
        "  name: ses\n  region: eu-west-1\n  endpoint: sandbox\n",
        "  name: smtp\n  host: directmail\n  region: mars-north-1\n",
    )
    with pytest.raises(ConfigError, match="provider.region"):
        Campaign.from_file(write(folder, text))
