"""Amazon SES SMTP password derived from an IAM secret access key (no I/O).

Version 4 (current, one password per region)::

    key = HMAC-SHA256 chain from "AWS4" + secret over
          "11111111", region, "ses", "aws4_request", "SendRawEmail"
    password = base64(b"\\x04" + key)

Version 2 (legacy, region-free): ``base64(b"\\x02" + HMAC-SHA256(secret, "SendRawEmail"))``.
The SMTP user name is the access key id itself.

>>> ses_smtp_password("some+secret+key", "eu-central-1")
'BMXhUYlu5Z3gSXVQORxlVa7XPaz91aGWdfHxvkOZdWZ2'
"""

from __future__ import annotations

import base64
import hmac

from bulkmail.signing.sigv4 import derive_signing_key

# Regions with an SES SMTP endpoint (email-smtp.<region>.amazonaws.com), from the SES
# endpoint table of the AWS General Reference and AWS's own SMTP credential example.
# Newer SES regions (ap-south-2, ap-southeast-3, me-central-1, ...) are left out until
# their SMTP endpoint is confirmed: the API endpoint exists there, SMTP may not.
SES_SMTP_REGIONS: tuple[str, ...] = (
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "ca-central-1",
    "eu-central-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-north-1",
    "eu-south-1",
    "ap-south-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-southeast-1",
    "ap-southeast-2",
    "sa-east-1",
    "me-south-1",
    "af-south-1",
    "il-central-1",
    "us-gov-west-1",
    "us-gov-east-1",
)

_DATE = "11111111"
_SERVICE = "ses"
_TERMINAL = "aws4_request"
_MESSAGE = "SendRawEmail"


def _sign(key: bytes, message: str) -> bytes:
    return hmac.digest(key, message.encode("utf-8"), "sha256")


def ses_smtp_password(
    secret_access_key: str, region: str | None = None, *, version: int = 4
) -> str:
    """The SES SMTP password for ``secret_access_key``.

    ``version=4`` needs ``region`` (one of :data:`SES_SMTP_REGIONS`); ``version=2`` is the
    legacy region-free form and ignores ``region``. Errors never contain the secret.

    >>> ses_smtp_password("some+secret+key", version=2)
    'AnkqhOiWEcszZZzTMCQbOY1sPGoLFgMH9zhp4eNgSjo4'
    """
    if version == 2:
        key = _sign(secret_access_key.encode("utf-8"), _MESSAGE)
        return base64.b64encode(b"\x02" + key).decode("ascii")
    if version != 4:
        raise ValueError(f"SES SMTP password version must be 4 or 2, not {version!r}")
    if region not in SES_SMTP_REGIONS:
        raise ValueError(
            f"no SES SMTP endpoint in region {region!r}; valid regions: "
            + ", ".join(SES_SMTP_REGIONS)
        )
    # The SigV4 signing key for date 11111111 and service ses, then "SendRawEmail".
    key = _sign(derive_signing_key(secret_access_key, _DATE, region, _SERVICE), _MESSAGE)
    return base64.b64encode(b"\x04" + key).decode("ascii")


__all__ = ["SES_SMTP_REGIONS", "ses_smtp_password"]
