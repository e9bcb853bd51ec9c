"""The full AWS credential chain, from botocore (the optional ``bulkmail[aws]`` extra).

Why botocore's resolver and not our own: the chain AWS users rely on is long and keeps
growing (environment; shared ``credentials`` and ``config`` files with profiles;
``role_arn``/``source_profile`` and ``credential_source`` assume-role chains with MFA caching;
``credential_process``; IAM Identity Center (SSO) token caches; web identity tokens for EKS
IRSA; ECS and EKS Pod Identity container endpoints with their token files; EC2 instance
metadata with IMDSv2 tokens and its fallbacks). botocore implements all of it, is what the
AWS CLI and boto3 use, and is maintained by AWS; writing it again would be a long-lived source
of subtle differences. Its cost (~1.3 ms of CPU per signed call) is why bulkmail does not send
through it: here it is used only to *obtain* credentials, at start-up and on refresh, in a
worker thread (see :class:`~bulkmail.credentials.AwsCredentialSource`); requests are signed
by :mod:`bulkmail.signing.sigv4`.

botocore reads the process environment (``os.environ``), not a mapping passed in.
"""

from __future__ import annotations

from typing import Any

from bulkmail.credentials._source import AwsCredentialSource, Loaded
from bulkmail.errors import CredentialsError
from bulkmail.signing import AwsCredentials

_WHERE = (
    "environment, ~/.aws/credentials and ~/.aws/config (AWS_PROFILE), SSO, credential_process, "
    "web identity, container (ECS/EKS) and instance metadata (IMDSv2)"
)


def available() -> bool:
    """Whether botocore is installed (``pip install bulkmail[aws]``)."""
    import importlib.util

    return importlib.util.find_spec("botocore") is not None


def botocore_source(**kwargs: Any) -> AwsCredentialSource:
    """An :class:`AwsCredentialSource` over botocore's default credential chain.

    Raises :class:`~bulkmail.errors.CredentialsError` naming where it looked (never a value).
    """
    import botocore.exceptions
    import botocore.session

    # ClientError: STS, SSO or another service refused (for example an AssumeRole denied).
    errors = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)
    try:
        found = botocore.session.Session().get_credentials()
        if found is not None:
            # Deferred sources (assume-role, SSO, process) fetch on first use: do it now, so a
            # denied role is a start-up error and not the first recipient's.
            found.get_frozen_credentials()
    except errors as exc:
        raise CredentialsError(f"AWS credentials: {exc}") from None
    if found is None:
        raise CredentialsError(
            "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            f"(and AWS_SESSION_TOKEN for temporary keys), or AWS_PROFILE (looked in: {_WHERE})"
        )

    def load() -> Loaded:
        try:
            # Refreshable credentials refresh themselves here when close to expiry (this
            # runs in a worker thread, never on the send path).
            frozen = found.get_frozen_credentials()
        except errors as exc:
            raise CredentialsError(f"AWS credentials ({found.method}): {exc}") from None
        expiry = getattr(found, "_expiry_time", None)  # RefreshableCredentials only
        creds = AwsCredentials(frozen.access_key, frozen.secret_key, frozen.token or None)
        return creds, (expiry.timestamp() if expiry is not None else None)

    return AwsCredentialSource(load, method=str(found.method), **kwargs)


__all__ = ["available", "botocore_source"]
