"""One SMTP session on aiosmtplib, and what each of its answers means for the message.

:class:`~bulkmail.providers.smtp.SmtpProvider` keeps the pool (how many sessions, which one a
send takes, when one is retired or replaced); this module opens a session (connect, STARTTLS,
one AUTH attempt, EHLO) and runs one ``MAIL``/``RCPT``/``DATA`` transaction on it, turning
every reply and failure into an :class:`~bulkmail.providers.base.Outcome` (the table in the
provider module's docstring). ``where`` is ``host:port`` for messages; ``scrub`` takes the
SMTP password out of any text that reaches one.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass

import aiosmtplib

from bulkmail.providers._smtp_replies import (
    Stage,
    TlsMode,
    classify_smtp_reply,
    message_id_of,
    queue_id_of,
)
from bulkmail.providers.base import Outcome, Verdict
from bulkmail.providers.errors import certificate_outcome

Scrub = Callable[[str], str | None]


def _ssl_error(exc: BaseException) -> ssl.SSLError | None:
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


@dataclass(slots=True, eq=False)
class Session:
    """A pooled connection and how many messages it has carried."""

    client: aiosmtplib.SMTP
    sent: int = 0


class SessionFailed(Exception):
    """A session could not be opened; carries the outcome for the message that wanted it."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.error)
        self.outcome = outcome


async def open_session(
    client: aiosmtplib.SMTP,
    *,
    tls: TlsMode,
    username: str | None,
    password: str | None,
    where: str,
    scrub: Scrub,
) -> None:
    """Connect ``client``, upgrade it and log in; raises :class:`SessionFailed` with the outcome."""
    stage: Stage = "connect"
    try:
        await client.connect()
        if tls == "starttls":
            stage = "starttls"
            await client.starttls()
        if username is not None and password is not None:
            stage = "auth"
            await login(client, username, password)
        else:
            # Learn the extensions (SIZE, 8BITMIME, SMTPUTF8) before the first MAIL:
            # connect() does no EHLO and STARTTLS forgets what was advertised.
            await client.ehlo()
    except BaseException as exc:
        client.close()
        if isinstance(exc, Exception):
            raise SessionFailed(connect_outcome(exc, stage, where, scrub)) from None
        raise


async def login(client: aiosmtplib.SMTP, username: str, password: str) -> None:
    """One AUTH attempt: PLAIN, else LOGIN, else whatever aiosmtplib supports.

    ``client.login()`` would try every mechanism after a 535, turning one wrong password
    into several failed logins (and account lockouts on some servers).
    """
    await client.ehlo()
    methods = client.server_auth_methods
    if "plain" in methods:
        await client.auth_plain(username, password)
    elif "login" in methods:
        await client.auth_login(username, password)
    else:
        await client.login(username, password)


def connect_outcome(exc: Exception, stage: Stage, where: str, scrub: Scrub) -> Outcome:
    """What a failure to open a session at ``stage`` means for the message that wanted it."""
    tls_error = _ssl_error(exc)
    if isinstance(tls_error, ssl.SSLCertVerificationError):
        return certificate_outcome(where, tls_error)
    if tls_error is not None:
        return Outcome(
            Verdict.FATAL,
            error_code="TlsError",
            error=scrub(f"TLS with {where} failed: {tls_error}"),
        )
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        verdict = classify_smtp_reply(exc.code, exc.message, stage)
        if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
            verdict = classify_smtp_reply(exc.code, exc.message, "auth")
        return Outcome(
            verdict,
            error_code=f"SMTP{exc.code}",
            error=scrub(f"{stage} refused by {where}: {exc.code} {exc.message}"),
        )
    if isinstance(exc, aiosmtplib.SMTPConnectError | aiosmtplib.SMTPTimeoutError):
        # Refused, unreachable, or no greeting in time: nothing was sent.
        return Outcome(Verdict.RETRY, error_code="ConnectError", error=scrub(f"{where}: {exc}"))
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected | OSError):
        return Outcome(Verdict.RETRY, error_code="Disconnected", error=scrub(f"{where}: {exc}"))
    if isinstance(exc, aiosmtplib.SMTPException):
        # STARTTLS or AUTH not offered: a configuration problem, the same for every message.
        return Outcome(Verdict.FATAL, error_code="Unsupported", error=scrub(f"{where}: {exc}"))
    raise exc


async def transaction(
    session: Session,
    sender: str,
    recipient: str,
    data: bytes,
    *,
    messages_per_session: int,
    scrub: Scrub,
) -> tuple[Outcome, bool, bool]:
    """One MAIL/RCPT/DATA; returns (outcome, keep the session, session was stale)."""
    client = session.client
    stage: Stage = "mail"
    options: list[str] = []
    encoding = "ascii"
    try:
        if not (sender.isascii() and recipient.isascii()):
            if not client.supports_extension("smtputf8"):
                return (
                    Outcome(
                        Verdict.REJECTED,
                        error_code="SMTPUTF8",
                        error="a non-ASCII address needs SMTPUTF8, which the server lacks",
                    ),
                    True,
                    False,
                )
            options.append("SMTPUTF8")
            encoding = "utf-8"
        if client.supports_extension("size"):
            options.append(f"SIZE={len(data)}")
        if not data.isascii() and client.supports_extension("8bitmime"):
            options.append("BODY=8BITMIME")
        await client.mail(sender, options=options, encoding=encoding)
        stage = "rcpt"
        await client.rcpt(recipient, encoding=encoding)
        stage = "data"
        response = await client.data(data)
    except aiosmtplib.SMTPResponseException as exc:
        verdict = classify_smtp_reply(exc.code, exc.message, stage, sender)
        outcome = Outcome(
            verdict,
            error_code=f"SMTP{exc.code}",
            error=scrub(f"{stage.upper()}: {exc.code} {exc.message}"),
        )
        keep = exc.code != 421 and await reset(client)
        # 421 to MAIL on a pooled session is usually an idle timeout, not an answer.
        return outcome, keep, exc.code == 421 and stage == "mail"
    except (aiosmtplib.SMTPException, ConnectionError, OSError, TimeoutError) as exc:
        # A reply that never came: before DATA nothing was accepted; once DATA started
        # the server may have queued the message.
        if stage == "data":
            verdict, code = Verdict.AMBIGUOUS, "Disconnected"
            if isinstance(exc, TimeoutError):
                code = "Timeout"
        else:
            verdict, code = Verdict.RETRY, "Disconnected"
        text = scrub(f"{stage.upper()}: {exc}") or type(exc).__name__
        stale = stage == "mail" and not isinstance(exc, TimeoutError)
        return Outcome(verdict, error_code=code, error=text), False, stale
    except ValueError as exc:  # an address aiosmtplib will not put on the wire
        outcome = Outcome(Verdict.REJECTED, error_code="BadAddress", error=str(exc))
        return outcome, await reset(client), False
    session.sent += 1
    message_id = queue_id_of(response.message) or message_id_of(data) or response.message
    keep = session.sent < messages_per_session
    return Outcome(Verdict.SENT, message_id=message_id), keep, False


async def reset(client: aiosmtplib.SMTP) -> bool:
    """RSET after a refused command; False when the session is no longer usable."""
    if not client.is_connected:
        return False
    try:
        await client.rset()
    except (aiosmtplib.SMTPException, ConnectionError, OSError, TimeoutError):
        return False
    return True


__all__ = [
    "Scrub",
    "Session",
    "SessionFailed",
    "connect_outcome",
    "login",
    "open_session",
    "reset",
    "transaction",
]
