"""The public surface changes only on purpose, and importing it stays cheap."""

from __future__ import annotations

import subprocess
import sys

import bulkmail


def test_public_names_are_pinned() -> None:
    assert sorted(bulkmail.__all__) == [
        "AlibabaCredentials",
        "AwsCredentials",
        "BulkmailError",
        "Campaign",
        "CampaignStopped",
        "CheckReport",
        "ConfigError",
        "CredentialsError",
        "Delivery",
        "DirectMailProvider",
        "FatalProviderError",
        "JournalError",
        "Message",
        "Outcome",
        "Progress",
        "Provider",
        "Quota",
        "QuotaExhausted",
        "RateLimiter",
        "RetryPolicy",
        "Sender",
        "SesProvider",
        "SmtpProvider",
        "Status",
        "Summary",
        "Verdict",
        "check_campaign",
        "load_campaign",
        "run_campaign",
    ]
    for name in bulkmail.__all__:
        assert getattr(bulkmail, name) is not None


def test_unknown_names_are_an_attribute_error() -> None:
    try:
        bulkmail.no_such_name  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_import_bulkmail_loads_no_heavy_dependency() -> None:
    heavy = ["jinja2", "yaml", "aiosmtplib", "rich", "email_validator"]
    code = f"import sys, bulkmail; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import bulkmail loaded {out.stdout.strip()}"


def test_every_public_module_declares_all() -> None:
    from pathlib import Path

    package = Path(bulkmail.__file__).parent
    missing = [
        str(p.relative_to(package))
        for p in package.rglob("*.py")
        if not p.name.startswith("_") and "__all__" not in p.read_text()
    ]
    assert not missing, missing
