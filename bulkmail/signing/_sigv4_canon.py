"""SigV4's canonical forms (steps 1 and 2) and its day key, shared by signing and checking.

Private to :mod:`bulkmail.signing.sigv4`, which exports the public names.

>>> string_to_sign("20150830T123600Z", "20150830/us-east-1/ses/aws4_request", "")[:16]
'AWS4-HMAC-SHA256'
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence
from urllib.parse import quote, unquote

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
TERMINATOR = "aws4_request"


def amz_date(now: float) -> str:
    """Epoch seconds -> the SigV4 timestamp, UTC: ``amz_date(1440938160) == '20150830T123600Z'``."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))


def hmac_sha256(key: bytes, message: str) -> bytes:
    return hmac.digest(key, message.encode("utf-8"), "sha256")


def derive_signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The day's signing key: HMAC chain over ``date`` (``YYYYMMDD``), region, service."""
    key = hmac_sha256(("AWS4" + secret).encode("utf-8"), date)
    key = hmac_sha256(key, region)
    key = hmac_sha256(key, service)
    return hmac_sha256(key, TERMINATOR)


def _uri_encode(value: str) -> str:
    # RFC 3986: only A-Z a-z 0-9 - _ . ~ stay as they are (``quote`` always keeps those).
    return quote(value, safe="")


def canonical_query(query: str) -> str:
    """A raw query string (``a=1&b=x%20y``) -> its canonical form.

    Each key and value is percent-decoded, then RFC 3986-encoded (space ``%20``, ``+`` is a
    literal plus and becomes ``%2B``); pairs are sorted by key, then value; a key without
    ``=`` gets an empty value; empty pieces (``a=1&&b=2``) are dropped.

    >>> canonical_query("b=2&a=x y&a=%7E")
    'a=x%20y&a=~&b=2'
    """
    if not query:
        return ""
    pairs = []
    for piece in query.split("&"):
        if not piece:
            continue
        key, _, value = piece.partition("=")
        pairs.append((_uri_encode(unquote(key)), _uri_encode(unquote(value))))
    pairs.sort()
    return "&".join(f"{key}={value}" for key, value in pairs)


def _remove_dot_segments(path: str) -> str:
    # RFC 3986 section 5.2.4, plus collapsing repeated slashes as the AWS test suite expects.
    segments: list[str] = []
    for segment in path.split("/"):
        if not segment or segment == ".":
            continue
        if segment == "..":
            if segments:
                segments.pop()
        else:
            segments.append(segment)
    trailing = "/" if path.endswith("/") and segments else ""
    return "/" + "/".join(segments) + trailing


def canonical_path(path: str, normalize: bool) -> str:
    if path == "/" or not path:
        return "/"
    if normalize:
        path = _remove_dot_segments(path)
    # Encoded once as given: a raw path ("/example space") is encoded the way the test suite
    # shows, a path already percent-encoded on the wire is encoded a second time, which is
    # what AWS expects for every service but S3 (botocore does the same).
    return quote(path, safe="/~")


def trim(value: str) -> str:
    # Trim and collapse inner whitespace runs (including folded header lines) to one space.
    return " ".join(value.split())


def canonical_headers(headers: Mapping[str, str], signed_headers: Sequence[str]) -> tuple[str, str]:
    """(canonical header block with its final newline, ``;``-joined signed header names)."""
    lowered: dict[str, str] = {}
    for name, value in headers.items():
        lname = name.lower()
        lowered[lname] = f"{lowered[lname]},{value}" if lname in lowered else value
    names = sorted({name.strip().lower() for name in signed_headers})
    lines = []
    for name in names:
        try:
            value = lowered[name]
        except KeyError:
            raise ValueError(f"signed header {name!r} is not among the request headers") from None
        lines.append(f"{name}:{trim(value)}\n")
    return "".join(lines), ";".join(names)


def canonical_request(
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    signed_headers: Sequence[str],
    payload_hash: str,
    *,
    normalize_path: bool = True,
) -> str:
    """The canonical request of SigV4 step 1.

    ``headers`` maps names (any case) to values; a header sent several times arrives already
    joined by ``,``. Only the names in ``signed_headers`` are used; a missing one is a
    ``ValueError``. Values are trimmed and inner whitespace runs collapsed. ``path`` has dot
    segments and repeated slashes removed unless ``normalize_path`` is false (S3 only), and is
    then URI-encoded. ``query`` is the raw query string (see :func:`canonical_query`).
    """
    block, signed = canonical_headers(headers, signed_headers)
    return (
        f"{method.upper()}\n{canonical_path(path, normalize_path)}\n{canonical_query(query)}\n"
        f"{block}\n{signed}\n{payload_hash}"
    )


def string_to_sign(amz_date: str, scope: str, canonical_request: str) -> str:
    """SigV4 step 2; ``scope`` is ``YYYYMMDD/region/service/aws4_request``."""
    digest = hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


__all__ = [
    "ALGORITHM",
    "TERMINATOR",
    "UNSIGNED_PAYLOAD",
    "amz_date",
    "canonical_headers",
    "canonical_path",
    "canonical_query",
    "canonical_request",
    "derive_signing_key",
    "hmac_sha256",
    "string_to_sign",
    "trim",
]
