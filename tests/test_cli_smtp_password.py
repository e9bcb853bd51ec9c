"""``bulkmail smtp-password`` as a user runs it: a real subprocess, the secret from the
environment or standard input, never from the command line and never echoed back."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bulkmail.signing import SES_SMTP_REGIONS

SECRET = "some+secret+key"

# Published example values (the same vectors as tests/test_smtp_password.py).
PUBLISHED = [
    (["--region", "eu-central-1"], "BMXhUYlu5Z3gSXVQORxlVa7XPaz91aGWdfHxvkOZdWZ2"),
    (["--region", "us-west-1"], "BH+jbMzper5WwlwUar9E1ySBqHa9whi0GPo+sJ0mVYJj"),
    (["--legacy"], "AnkqhOiWEcszZZzTMCQbOY1sPGoLFgMH9zhp4eNgSjo4"),
]


def smtp_password(
    args: list[str], *, secret_env: str | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m bulkmail smtp-password ARGS`` with no AWS variable but ``secret_env``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    if secret_env is not None:
        env["AWS_SECRET_ACCESS_KEY"] = secret_env
    return subprocess.run(
        [sys.executable, "-m", "bulkmail", "smtp-password", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def assert_secret_not_shown(proc: subprocess.CompletedProcess[str], secret: str) -> None:
    assert secret not in proc.stdout and secret not in proc.stderr
    assert secret[:8] not in proc.stdout + proc.stderr


@pytest.mark.parametrize(("args", "password"), PUBLISHED)
def test_published_vectors_from_the_environment(args: list[str], password: str) -> None:
    proc = smtp_password(args, secret_env=SECRET)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, password + "\n", "")
    assert_secret_not_shown(proc, SECRET)


@pytest.mark.parametrize(("args", "password"), PUBLISHED)
def test_published_vectors_from_standard_input(args: list[str], password: str) -> None:
    proc = smtp_password(args, stdin=SECRET + "\n")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, password + "\n", "")
    assert_secret_not_shown(proc, SECRET)


def test_environment_wins_over_standard_input() -> None:
    proc = smtp_password(["--legacy"], secret_env=SECRET, stdin="another+secret\n")
    assert proc.stdout == PUBLISHED[2][1] + "\n"


def test_region_without_smtp_endpoint_lists_the_valid_ones() -> None:
    proc = smtp_password(["--region", "mars-north-1"], secret_env=SECRET)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "mars-north-1" in proc.stderr
    assert all(region in proc.stderr for region in SES_SMTP_REGIONS)
    assert_secret_not_shown(proc, SECRET)


def test_bad_region_is_refused_before_asking_for_the_secret() -> None:
    proc = smtp_password(["--region", "mars-north-1"])  # no secret anywhere
    assert proc.returncode == 2
    assert "valid regions" in proc.stderr and "no secret" not in proc.stderr


@pytest.mark.parametrize("args", [["--region", "eu-west-1"], ["--legacy"]])
def test_no_secret_exits_2(args: list[str]) -> None:
    proc = smtp_password(args, stdin="")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "AWS_SECRET_ACCESS_KEY" in proc.stderr and "standard input" in proc.stderr


def test_blank_secret_counts_as_none() -> None:
    proc = smtp_password(["--legacy"], secret_env="  ", stdin="\n")
    assert proc.returncode == 2 and proc.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ["--region", "eu-west-1", SECRET],
        [SECRET, "--legacy"],
        ["--legacy", "--secret", SECRET],
        ["--legacy", f"--secret={SECRET}"],
    ],
)
def test_secret_on_the_command_line_is_refused_without_echo(args: list[str]) -> None:
    proc = smtp_password(args, secret_env="unused+secret")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "never from the command line" in proc.stderr
    assert_secret_not_shown(proc, SECRET)


def test_region_or_legacy_is_required() -> None:
    proc = smtp_password([], secret_env=SECRET)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "--region" in proc.stderr
    both = smtp_password(["--legacy", "--region", "eu-west-1"], secret_env=SECRET)
    assert both.returncode == 2 and both.stdout == ""
