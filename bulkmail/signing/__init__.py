"""Request signing: pure functions and small classes, no I/O, nothing else from bulkmail.

- :mod:`~bulkmail.signing.sigv4`: AWS Signature Version 4 (SES), signing and verifying;
- :mod:`~bulkmail.signing.aliyun`: Alibaba Cloud RPC signature 1.0 (DirectMail);
- :mod:`~bulkmail.signing.smtp_password`: SES SMTP password from a secret access key.

Both schemes have a ``string_to_sign``; those two stay in their modules
(``sigv4.string_to_sign``, ``aliyun.string_to_sign``) so neither shadows the other here.
"""

from bulkmail.signing.aliyun import (
    AlibabaCredentials,
    percent_encode,
    rpc_signature,
    rpc_timestamp,
    sign_params,
)
from bulkmail.signing.sigv4 import (
    AwsCredentials,
    ParsedAuthorization,
    SigV4Signer,
    amz_date,
    canonical_query,
    canonical_request,
    derive_signing_key,
    parse_authorization,
    sign_headers,
    verify_request,
)
from bulkmail.signing.smtp_password import SES_SMTP_REGIONS, ses_smtp_password

__all__ = [
    "SES_SMTP_REGIONS",
    "AlibabaCredentials",
    "AwsCredentials",
    "ParsedAuthorization",
    "SigV4Signer",
    "amz_date",
    "canonical_query",
    "canonical_request",
    "derive_signing_key",
    "parse_authorization",
    "percent_encode",
    "rpc_signature",
    "rpc_timestamp",
    "ses_smtp_password",
    "sign_headers",
    "sign_params",
    "verify_request",
]
