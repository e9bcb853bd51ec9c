"""Mapping provider answers and transport failures to :class:`~bulkmail.providers.base.Verdict`.

This is the one boundary where a library's error (the HTTP pool) or a provider's error code becomes
ours. Every provider uses :func:`scrub` on any text a server sent back before it is logged or
stored: AWS's ``SignatureDoesNotMatch`` echoes the canonical request (which carries the
session token), and DirectMail's echoes its string to sign.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterable

from bulkmail.providers.base import Outcome, Verdict
from bulkmail.providers.http import CertificateInvalid, ConnectFailed, ResponseLost

_MAX_ERROR_CHARS = 300
# Everything from these phrases on is the server echoing our request back: drop it.
_ECHO_MARKERS = re.compile(
    r"(the canonical string|the string-to-sign|string to sign|stringtosign|"
    r"server string to sign|canonical request)",
    re.IGNORECASE,
)
_SPACES = re.compile(r"\s+")


def scrub(text: str | None, secrets: Iterable[str | None] = ()) -> str | None:
    """Make a server's error text safe to log and store.

    Cuts anything from the point where the server starts echoing the signed request,
    replaces any secret that still appears, collapses whitespace and caps the length.

    >>> scrub("Bad sig. The Canonical String for this request should have been 'POST...'")
    'Bad sig.'
    """
    if text is None:
        return None
    match = _ECHO_MARKERS.search(text)
    if match:
        text = text[: match.start()]
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    text = _SPACES.sub(" ", text).strip().rstrip(",;:")
    if len(text) > _MAX_ERROR_CHARS:
        text = text[: _MAX_ERROR_CHARS - 1] + "…"
    return text


#: Server errors that do not prove the request was refused: a 500 may come after the message
#: was queued, and 502/504 come from a proxy that may have handed the request on. A retry
#: after one of these is flagged ``possible_duplicate``. A 503 (and any other 5xx) says the
#: service did not take the request: safe to retry.
UNPROVEN_STATUSES = frozenset({500, 502, 504})

#: Outcome codes of attempts that certainly never reached the provider (nothing was written):
#: these feed the circuit breaker, and a recipient is not charged for them while it is open.
UNREACHABLE_CODES = frozenset({"ConnectError"})

#: Fatal outcomes of attempts that never carried the request (the TLS handshake refused the
#: server's certificate): the recipient is not charged an attempt.
UNWRITTEN_FATAL_CODES = frozenset({"CertificateVerifyFailed"})

_TRUST_HINT = (
    "if it uses a private CA, set SSL_CERT_FILE to that CA's certificate bundle (PEM) and run again"
)


def certificate_outcome(host: str, exc: ssl.SSLCertVerificationError) -> Outcome:
    """The campaign-wide stop for a certificate or host name that does not verify.

    >>> err = ssl.SSLCertVerificationError(1, "x")
    >>> err.verify_message = "self-signed certificate"
    >>> certificate_outcome("mail.internal:443", err).error[:40]
    'cannot verify the TLS certificate of mai'
    """
    reason = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or str(exc)
    return Outcome(
        Verdict.FATAL,
        error_code="CertificateVerifyFailed",
        error=f"cannot verify the TLS certificate of {host} ({reason}); {_TRUST_HINT}",
    )


def server_error_verdict(status: int) -> Verdict:
    """The verdict for a 5xx answer that no more specific code classified.

    >>> server_error_verdict(503), server_error_verdict(502)
    (<Verdict.RETRY: 'retry'>, <Verdict.AMBIGUOUS: 'ambiguous'>)
    """
    return Verdict.AMBIGUOUS if status in UNPROVEN_STATUSES else Verdict.RETRY


def transport_outcome(exc: BaseException) -> Outcome:
    """Classify an exception raised while one request was under way.

    A connection that could not be made never carried the request: safe to retry. Anything
    after the request may have been written (timeout, reset, disconnect) is ambiguous: the
    provider may have accepted the message.
    """
    name = type(exc).__name__
    if isinstance(exc, CertificateInvalid):
        return certificate_outcome(exc.host, exc.error)
    if isinstance(exc, ConnectFailed):
        return Outcome(Verdict.RETRY, error_code="ConnectError", error=f"cannot connect: {exc}")
    if isinstance(exc, ResponseLost):
        return Outcome(Verdict.AMBIGUOUS, error_code="ResponseLost", error=str(exc) or name)
    if isinstance(exc, TimeoutError):
        return Outcome(Verdict.AMBIGUOUS, error_code="Timeout", error="no answer in time")
    if isinstance(exc, OSError):  # anything else from the socket once a request was under way
        return Outcome(Verdict.AMBIGUOUS, error_code=name, error=scrub(str(exc)) or name)
    raise exc


__all__ = [
    "UNPROVEN_STATUSES",
    "UNREACHABLE_CODES",
    "UNWRITTEN_FATAL_CODES",
    "certificate_outcome",
    "scrub",
    "server_error_verdict",
    "transport_outcome",
]
