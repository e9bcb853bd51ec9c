"""SES SMTP password derivation against the published example values."""

from __future__ import annotations

import base64

import pytest

from bulkmail.signing import SES_SMTP_REGIONS, ses_smtp_password

SECRET = "some+secret+key"

# Published example values for deriving an SES SMTP password from a secret access key
# (version 4 per region, and the legacy region-free version 2).
PUBLISHED = [
    (SECRET, "eu-central-1", 4, "BMXhUYlu5Z3gSXVQORxlVa7XPaz91aGWdfHxvkOZdWZ2"),
    (SECRET, "us-west-1", 4, "BH+jbMzper5WwlwUar9E1ySBqHa9whi0GPo+sJ0mVYJj"),
    (SECRET, None, 2, "AnkqhOiWEcszZZzTMCQbOY1sPGoLFgMH9zhp4eNgSjo4"),
]


@pytest.mark.parametrize(("secret", "region", "version", "password"), PUBLISHED)
def test_published_vectors(secret: str, region: str | None, version: int, password: str) -> None:
    assert ses_smtp_password(secret, region, version=version) == password


def test_version_4_is_the_default() -> None:
    assert ses_smtp_password(SECRET, "eu-central-1") == PUBLISHED[0][3]


def test_version_2_ignores_region() -> None:
    assert ses_smtp_password(SECRET, "eu-central-1", version=2) == PUBLISHED[2][3]


def test_required_regions_are_listed() -> None:
    required = """us-east-1 us-east-2 us-west-1 us-west-2 ca-central-1 eu-central-1 eu-west-1
        eu-west-2 eu-west-3 eu-north-1 eu-south-1 ap-south-1 ap-northeast-1 ap-northeast-2
        ap-northeast-3 ap-southeast-1 ap-southeast-2 sa-east-1 me-south-1 af-south-1
        il-central-1 us-gov-west-1""".split()
    assert set(required) <= set(SES_SMTP_REGIONS)
    assert len(set(SES_SMTP_REGIONS)) == len(SES_SMTP_REGIONS)


@pytest.mark.parametrize("region", SES_SMTP_REGIONS)
def test_every_region_gives_a_distinct_version_4_password(region: str) -> None:
    raw = base64.b64decode(ses_smtp_password(SECRET, region), validate=True)
    assert raw[0] == 4 and len(raw) == 33
    others = {ses_smtp_password(SECRET, r) for r in SES_SMTP_REGIONS if r != region}
    assert ses_smtp_password(SECRET, region) not in others


@pytest.mark.parametrize("region", ["mars-north-1", "", "US-EAST-1", None])
def test_unknown_region_names_the_valid_ones_and_not_the_secret(region: str | None) -> None:
    secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    with pytest.raises(ValueError) as info:
        ses_smtp_password(secret, region)
    message = str(info.value)
    assert all(r in message for r in SES_SMTP_REGIONS)
    assert secret not in message and "wJalr" not in message


def test_unknown_version_is_rejected_without_the_secret() -> None:
    with pytest.raises(ValueError, match="4 or 2") as info:
        ses_smtp_password(SECRET, "us-east-1", version=3)
    assert SECRET not in str(info.value)
