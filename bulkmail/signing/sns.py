"""Amazon SNS message signatures: the string to sign, verifying (and, for tests, signing).

As "Verifying the signatures of Amazon SNS messages" (docs.aws.amazon.com/sns/latest/dg/
sns-verify-signature-of-message.html) documents it: the string to sign is ``Key\\nValue\\n``
for each of these fields, in this order, taken from the JSON document as decoded (escapes
such as ``\\n`` in ``Message`` turned back into the characters they stand for):

- ``Notification``: Message, MessageId, Subject (only if present), Timestamp, TopicArn, Type;
- ``SubscriptionConfirmation`` / ``UnsubscribeConfirmation``: Message, MessageId,
  SubscribeURL, Timestamp, Token, TopicArn, Type.

``Signature`` is base64 of an RSA PKCS#1 v1.5 signature of that string with the key of the
certificate at ``SigningCertURL``: SHA1withRSA for ``SignatureVersion`` 1, SHA256withRSA for
2. Where the certificate may come from is :func:`cert_url_allowed`; fetching it is the
caller's (this module does no I/O and imports nothing else of bulkmail).

>>> string_to_sign({"Type": "Notification", "Message": "hi", "MessageId": "m1",
...                 "Timestamp": "2024-01-01T00:00:00.000Z", "TopicArn": "arn:t"})
b'Message\\nhi\\nMessageId\\nm1\\nTimestamp\\n2024-01-01T00:00:00.000Z\\nTopicArn\\narn:t\\nType\\nNotification\\n'
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import fnmatch
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_FIELDS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
MESSAGE_TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
DEFAULT_CERT_HOSTS = ("sns.*.amazonaws.com",)
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}


class SnsSignatureError(ValueError):
    """The message is not what SNS signed (or not an SNS message at all); the text says why."""


def string_to_sign(message: Mapping[str, Any]) -> bytes:
    """The bytes SNS signed for ``message`` (the decoded JSON body); ``SnsSignatureError`` if
    the type is unknown or a required field is missing or not a string."""
    kind = message.get("Type")
    if kind == "Notification":
        fields: Sequence[str] = NOTIFICATION_FIELDS
    elif kind in MESSAGE_TYPES:
        fields = CONFIRMATION_FIELDS
    else:
        raise SnsSignatureError(f"unknown SNS message Type {kind!r}")
    parts: list[str] = []
    for name in fields:
        if name not in message and name == "Subject":
            continue  # the only optional field, and only in a Notification
        value = message.get(name)
        if not isinstance(value, str):
            raise SnsSignatureError(f"field {name!r} is missing or not a string")
        parts.append(f"{name}\n{value}\n")
    return "".join(parts).encode("utf-8")


def cert_url_allowed(
    url: object, hosts: Sequence[str] = DEFAULT_CERT_HOSTS, *, pem: bool = True
) -> bool:
    """True if ``url`` is ``https://HOST/...`` with HOST matching one of ``hosts`` (fnmatch,
    case-insensitive), no user info, and (if ``pem``) a ``.pem`` path. A port other than 443
    is allowed only by a pattern with a port in it (``127.0.0.1:*``, for tests). The same
    rule, with ``pem=False``, decides which ``SubscribeURL`` may be fetched.

    >>> cert_url_allowed("https://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem")
    True
    >>> cert_url_allowed("https://sns.us-east-1.amazonaws.com@evil.example/x.pem")
    False
    """
    if not isinstance(url, str) or any(c in url for c in "\\\r\n\t "):
        return False
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    host = (parts.hostname or "").lower()
    if parts.scheme.lower() != "https" or not host or "@" in parts.netloc:
        return False
    if port not in (None, 443) and not any(":" in h for h in hosts):
        return False
    if pem and not parts.path.lower().endswith(".pem"):
        return False
    where = f"{host}:{port}" if port not in (None, 443) else host
    return any(fnmatch.fnmatchcase(where, pattern.lower()) for pattern in hosts)


def load_certificate(pem: bytes, now: float) -> x509.Certificate:
    """Parse a PEM certificate holding an RSA key and valid at ``now`` (epoch seconds)."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise SnsSignatureError(f"the signing certificate cannot be read: {exc}") from None
    when = _dt.datetime.fromtimestamp(now, _dt.UTC)
    if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
        raise SnsSignatureError("the signing certificate is not valid now")
    if not isinstance(cert.public_key(), rsa.RSAPublicKey):
        raise SnsSignatureError("the signing certificate does not hold an RSA key")
    return cert


def verify(message: Mapping[str, Any], cert: x509.Certificate) -> None:
    """Raise :class:`SnsSignatureError` unless ``cert`` signed ``message`` as SNS does."""
    version = message.get("SignatureVersion")
    algorithm = _HASHES.get(version) if isinstance(version, str) else None
    if algorithm is None:
        raise SnsSignatureError(f"unsupported SignatureVersion {version!r}")
    signature = message.get("Signature")
    if not isinstance(signature, str):
        raise SnsSignatureError("Signature is missing")
    try:
        raw = base64.b64decode(signature, validate=True)
    except binascii.Error:
        raise SnsSignatureError("Signature is not base64") from None
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise SnsSignatureError("the signing certificate does not hold an RSA key")
    try:
        key.verify(raw, string_to_sign(message), padding.PKCS1v15(), algorithm())
    except InvalidSignature:
        raise SnsSignatureError("the signature does not match the message") from None


def sign(message: Mapping[str, Any], key: rsa.RSAPrivateKey, version: str = "2") -> str:
    """The base64 ``Signature`` SNS would put on ``message`` (tests and the sandbox use it)."""
    algorithm = _HASHES.get(version)
    if algorithm is None:
        raise ValueError(f"SignatureVersion must be '1' or '2', got {version!r}")
    raw = key.sign(string_to_sign(message), padding.PKCS1v15(), algorithm())
    return base64.b64encode(raw).decode("ascii")


__all__ = [
    "CONFIRMATION_FIELDS",
    "DEFAULT_CERT_HOSTS",
    "MESSAGE_TYPES",
    "NOTIFICATION_FIELDS",
    "SnsSignatureError",
    "cert_url_allowed",
    "load_certificate",
    "sign",
    "string_to_sign",
    "verify",
]
