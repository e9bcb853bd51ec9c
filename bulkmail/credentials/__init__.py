"""Credentials from the standard places only, never from the campaign file.

AWS, with the optional extra (``pip install bulkmail[aws]``, botocore): the whole chain AWS
users have (:mod:`bulkmail.credentials._botocore` says what and why), as an
:class:`AwsCredentialSource` that refreshes temporary credentials in the background before
they expire. Without botocore: ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` /
``AWS_SESSION_TOKEN``, else the ``AWS_PROFILE`` profile of ``~/.aws/credentials``
(:func:`aws_from_env`), as a source that never changes. Alibaba Cloud:
``ALIBABA_CLOUD_ACCESS_KEY_ID`` / ``ALIBABA_CLOUD_ACCESS_KEY_SECRET`` /
``ALIBABA_CLOUD_SECURITY_TOKEN`` (:func:`alibaba_from_env`).

Error messages say where we looked and never contain a value.

>>> source = aws_credential_source({"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s"})
>>> source.current().access_key_id
'AKID'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from bulkmail.credentials._files import alibaba_from_env, aws_from_env
from bulkmail.credentials._source import AwsCredentialSource, Loaded


def aws_credential_source(
    environ: Mapping[str, str] | None = None, *, use_botocore: bool | None = None, **kwargs: Any
) -> AwsCredentialSource:
    """Where a run's AWS credentials come from, resolved now (at start-up).

    ``use_botocore`` defaults to: botocore is installed, ``environ`` is the process
    environment (botocore reads only that) and holds no access key pair of its own.
    ``kwargs`` go to :class:`AwsCredentialSource` (``clock``, ``margin``, ``retry_after``).
    """
    from bulkmail.credentials import _botocore

    if use_botocore is None:
        env = os.environ if environ is None else environ
        # Keys in the environment come first in botocore's chain too and cannot be
        # refreshed: read them directly and skip importing botocore (~0.3 s at start-up).
        static = bool(env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"))
        use_botocore = (environ is None or environ is os.environ) and not static
        use_botocore = use_botocore and _botocore.available()
    if use_botocore:
        return _botocore.botocore_source(**kwargs)
    creds = aws_from_env(environ)
    return AwsCredentialSource(lambda: (creds, None), method="env-or-file", **kwargs)


__all__ = [
    "AwsCredentialSource",
    "Loaded",
    "alibaba_from_env",
    "aws_credential_source",
    "aws_from_env",
]
