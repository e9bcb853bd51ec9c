"""Alibaba Cloud RPC signature, ``SignatureVersion=1.0`` with HMAC-SHA1 (DirectMail's API).

Pure functions; no I/O and no clock (callers pass the nonce and the timestamp)::

    StringToSign = METHOD + "&" + percent_encode("/") + "&" + percent_encode(canonical query)
    Signature    = base64(HMAC-SHA1(AccessKeySecret + "&", StringToSign))

where the canonical query is ``percent_encode(key)=percent_encode(value)`` for every
parameter except ``Signature``, sorted by key and joined by ``&``.

>>> creds = AlibabaCredentials("testid", "testsecret")
>>> params = sign_params({"Action": "SingleSendMail"}, creds,
...                      nonce="n-1", timestamp=rpc_timestamp(1456231584))
>>> params["Timestamp"], params["SignatureMethod"], "Signature" in params
('2016-02-23T12:46:24Z', 'HMAC-SHA1', True)
"""

from __future__ import annotations

import base64
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote


@dataclass(frozen=True, slots=True)
class AlibabaCredentials:
    """An AccessKey pair, optionally an STS one (with a security token).

    >>> AlibabaCredentials("LTAI", "secret", "token")
    AlibabaCredentials(access_key_id='LTAI')
    """

    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)


def percent_encode(value: str) -> str:
    """RFC 3986 over UTF-8: only ``A-Z a-z 0-9 - _ . ~`` are kept.

    >>> percent_encode("a b*c~d+e/ü")
    'a%20b%2Ac~d%2Be%2F%C3%BC'
    """
    return quote(value, safe="~")


def rpc_timestamp(now: float) -> str:
    """Epoch seconds -> ISO 8601 UTC as the RPC API wants it: ``2016-02-23T12:46:24Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))


def string_to_sign(method: str, params: Mapping[str, str]) -> str:
    """``METHOD&%2F&`` + the percent-encoded canonical query (``Signature`` left out)."""
    canonical = "&".join(
        f"{percent_encode(key)}={percent_encode(value)}"
        for key, value in sorted(params.items())
        if key != "Signature"
    )
    return f"{method.upper()}&%2F&{percent_encode(canonical)}"


def rpc_signature(method: str, params: Mapping[str, str], secret: str) -> str:
    """``base64(HMAC-SHA1(secret + "&", string_to_sign(method, params)))``."""
    digest = hmac.digest(
        (secret + "&").encode("utf-8"), string_to_sign(method, params).encode("utf-8"), "sha1"
    )
    return base64.b64encode(digest).decode("ascii")


def sign_params(
    params: Mapping[str, str],
    credentials: AlibabaCredentials,
    *,
    method: str = "POST",
    nonce: str,
    timestamp: str,
) -> dict[str, str]:
    """A new dict: ``params`` plus the common parameters and ``Signature``.

    Adds ``AccessKeyId``, ``SignatureMethod=HMAC-SHA1``, ``SignatureVersion=1.0``,
    ``SignatureNonce``, ``Timestamp``, ``Format=JSON`` (unless ``params`` has a ``Format``)
    and ``SecurityToken`` for STS credentials. The nonce must be unique per request (a
    retry needs a new one too: the API rejects a nonce it has seen in the last 15 minutes).
    """
    signed = {key: value for key, value in params.items() if key != "Signature"}
    signed.setdefault("Format", "JSON")
    signed["AccessKeyId"] = credentials.access_key_id
    signed["SignatureMethod"] = "HMAC-SHA1"
    signed["SignatureVersion"] = "1.0"
    signed["SignatureNonce"] = nonce
    signed["Timestamp"] = timestamp
    if credentials.security_token is not None:
        signed["SecurityToken"] = credentials.security_token
    signed["Signature"] = rpc_signature(method, signed, credentials.access_key_secret)
    return signed


__all__ = [
    "AlibabaCredentials",
    "percent_encode",
    "rpc_signature",
    "rpc_timestamp",
    "sign_params",
    "string_to_sign",
]
