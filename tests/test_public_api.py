"""The public surface changes only on purpose."""

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
        "FatalProviderError",
        "JournalError",
        "Message",
        "Outcome",
        "Provider",
        "Quota",
        "QuotaExhausted",
        "RetryPolicy",
        "Sender",
        "SesProvider",
        "Status",
        "Summary",
        "Verdict",
        "check_campaign",
        "load_campaign",
        "run_campaign",
    ]
    for name in bulkmail.__all__:
        assert getattr(bulkmail, name) is not None


def test_signing_imports_nothing_else_from_bulkmail() -> None:
    import ast
    from pathlib import Path

    for path in Path(bulkmail.__file__).parent.joinpath("signing").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("bulkmail") or node.module.startswith(
                    "bulkmail.signing"
                ), f"{path.name} imports {node.module}"
