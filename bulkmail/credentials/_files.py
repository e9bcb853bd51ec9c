"""Credentials read without botocore: the environment and the shared credentials file.

AWS: ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, else the
profile named by ``AWS_PROFILE`` (default ``default``) in ``~/.aws/credentials`` (or
``AWS_SHARED_CREDENTIALS_FILE``). Alibaba Cloud: ``ALIBABA_CLOUD_ACCESS_KEY_ID`` /
``ALIBABA_CLOUD_ACCESS_KEY_SECRET`` / ``ALIBABA_CLOUD_SECURITY_TOKEN``.

Error messages say where we looked and never contain a value.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from pathlib import Path

from bulkmail.errors import CredentialsError
from bulkmail.signing import AlibabaCredentials, AwsCredentials


def aws_from_env(environ: Mapping[str, str] | None = None) -> AwsCredentials:
    """AWS credentials from the environment or the shared credentials file.

    >>> aws_from_env({"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s"}).access_key_id
    'AKID'
    """
    env = os.environ if environ is None else environ
    key_id = env.get("AWS_ACCESS_KEY_ID", "").strip()
    secret = env.get("AWS_SECRET_ACCESS_KEY", "").strip()
    token = env.get("AWS_SESSION_TOKEN", "").strip() or None
    if key_id and secret:
        return AwsCredentials(key_id, secret, token)
    if key_id or secret:
        missing = "AWS_SECRET_ACCESS_KEY" if key_id else "AWS_ACCESS_KEY_ID"
        raise CredentialsError(f"AWS credentials are incomplete: {missing} is not set")
    profile = env.get("AWS_PROFILE", "").strip() or "default"
    default_file = Path(env.get("HOME", str(Path.home()))) / ".aws" / "credentials"
    path = Path(env.get("AWS_SHARED_CREDENTIALS_FILE", "") or default_file).expanduser()
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with path.open(encoding="utf-8") as fh:
            parser.read_file(fh)
    except FileNotFoundError:
        raise CredentialsError(
            "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            f"(and AWS_SESSION_TOKEN for temporary keys), or AWS_PROFILE with {path}"
        ) from None
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        raise CredentialsError(
            f"{path}: cannot read AWS credentials file ({type(exc).__name__})"
        ) from None
    if not parser.has_section(profile):
        raise CredentialsError(f"{path}: no profile [{profile}] (from AWS_PROFILE)")
    section = parser[profile]
    key_id = section.get("aws_access_key_id", "").strip()
    secret = section.get("aws_secret_access_key", "").strip()
    token = section.get("aws_session_token", "").strip() or None
    if not (key_id and secret):
        raise CredentialsError(
            f"{path}: profile [{profile}] lacks aws_access_key_id or aws_secret_access_key"
        )
    return AwsCredentials(key_id, secret, token)


def alibaba_from_env(environ: Mapping[str, str] | None = None) -> AlibabaCredentials:
    """Alibaba Cloud credentials from the environment.

    >>> alibaba_from_env({"ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI",
    ...                   "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "s"}).access_key_id
    'LTAI'
    """
    env = os.environ if environ is None else environ
    key_id = env.get("ALIBABA_CLOUD_ACCESS_KEY_ID", "").strip()
    secret = env.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "").strip()
    token = env.get("ALIBABA_CLOUD_SECURITY_TOKEN", "").strip() or None
    if not (key_id and secret):
        raise CredentialsError(
            "no Alibaba Cloud credentials found: set ALIBABA_CLOUD_ACCESS_KEY_ID and "
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET (and ALIBABA_CLOUD_SECURITY_TOKEN for STS)"
        )
    return AlibabaCredentials(key_id, secret, token)


__all__ = ["alibaba_from_env", "aws_from_env"]
