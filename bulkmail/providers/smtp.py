"""SMTP submission on aiosmtplib, with a bounded pool of reused sessions.

One :meth:`SmtpProvider.send` is one SMTP transaction for one recipient (``MAIL FROM``,
exactly one ``RCPT TO``, ``DATA``) on a session taken from the pool. Sessions are opened
lazily, up to ``pool_size``, carry up to ``messages_per_session`` messages each, and are
closed and replaced when anything goes wrong on them. Every server answer becomes an
:class:`~bulkmail.providers.base.Outcome`:

====================================================  ==========================
answer                                                verdict
====================================================  ==========================
250 after DATA                                        SENT (queue id, else Message-ID)
454 / "Throttling failure" (any 4xx saying throttl…)  THROTTLED
"Daily message quota exceeded"                        QUOTA
421, 450, 451, 452 and other 4xx                      RETRY
5xx on RCPT or DATA (550, 552, 553, 554)               REJECTED
5xx on MAIL FROM (the campaign's sender), 552 aside   FATAL
530, 534, 535, 538 (authentication), any stage        FATAL
554 "not verified" naming the sender (SES)            FATAL
connection refused / dropped before DATA              RETRY (nothing was accepted)
dropped or timed out once DATA started                AMBIGUOUS
bad TLS certificate, no STARTTLS, no AUTH offered     FATAL
====================================================  ==========================
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parseaddr
from types import TracebackType
from typing import Literal

import aiosmtplib

from bulkmail.message import Message
from bulkmail.mime import MessageTooLarge, MimeBuilder
from bulkmail.providers.base import Outcome, Quota, Verdict
from bulkmail.providers.errors import scrub
from bulkmail.signing.smtp_password import ses_smtp_password

TlsMode = Literal["starttls", "implicit", "none"]
Stage = Literal["connect", "starttls", "auth", "mail", "rcpt", "data"]

_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d+")


def _ses_preset(region: str | None) -> tuple[str, int, TlsMode]:
    # Amazon SES SMTP interface: email-smtp.<region>.amazonaws.com; STARTTLS on 25, 587 or
    # 2587, TLS Wrapper on 465 or 2465 (https://docs.aws.amazon.com/ses/latest/dg/
    # smtp-connect.html). 587 because EC2 throttles port 25.
    if not region or not _REGION.fullmatch(region):
        raise ValueError(f"SES SMTP needs an AWS region such as 'eu-west-1', got {region!r}")
    return f"email-smtp.{region}.amazonaws.com", 587, "starttls"


# Alibaba Cloud DirectMail SMTP endpoints, from "Direct Mail: SMTP service endpoints"
# (https://www.alibabacloud.com/help/pt-br/direct-mail/smtp-endpoints) and "Send emails using
# SMTP" (https://help.aliyun.com/en/direct-mail/user-guide/send-emails-using-smtp): ports 25
# and 80 (plain, STARTTLS possible) and 465 (SSL); port 25 is blocked on Alibaba ECS. Pick the
# endpoint of the region the sender address was set up in; the .aliyun.com names for
# Singapore and Sydney are documented as legacy.
_DIRECTMAIL_HOSTS: dict[str, str] = {
    "cn-hangzhou": "smtpdm.aliyun.com",
    "ap-southeast-1": "smtpdm-ap-southeast-1.aliyuncs.com",
    "us-east-1": "smtpdm-us-east-1.aliyuncs.com",
    "eu-central-1": "smtpdm-eu-central-1.aliyuncs.com",
    "ap-southeast-2": "smtpdm-ap-southeast-2.aliyun.com",  # legacy, Sydney
}


def _directmail_preset(region: str | None) -> tuple[str, int, TlsMode]:
    host = _DIRECTMAIL_HOSTS.get(region or "cn-hangzhou")
    if host is None:
        known = ", ".join(sorted(_DIRECTMAIL_HOSTS))
        raise ValueError(f"no DirectMail SMTP endpoint known for {region!r}; known: {known}")
    return host, 465, "implicit"


#: ``name -> (region -> (host, port, tls))`` for the providers bulkmail knows.
SMTP_PRESETS: dict[str, Callable[[str | None], tuple[str, int, TlsMode]]] = {
    "ses": _ses_preset,
    "directmail": _directmail_preset,
}


def ses_smtp_credentials(access_key_id: str, secret: str, region: str) -> tuple[str, str]:
    """SMTP user name and password for SES from an IAM access key pair.

    The user name is the access key id; the password is derived from the secret for
    ``region`` (SigV4 flavour), so it only works against that region's endpoint.
    """
    return access_key_id, ses_smtp_password(secret, region)


_THROTTLE_TEXT = re.compile(r"throttl|rate exceeded|too many", re.IGNORECASE)
_QUOTA_TEXT = re.compile(r"daily (message |sending )?quota", re.IGNORECASE)
_AUTH_CODES = frozenset({530, 534, 535, 538})
_ENHANCED = re.compile(r"^\d\.\d{1,3}\.\d{1,3}\s+")
_QUEUED_AS = re.compile(r"queued as\s+<?([^\s<>]+)>?", re.IGNORECASE)
_ENVID = re.compile(r"envid=<?([^\s<>]+)>?", re.IGNORECASE)
_OK_ID = re.compile(r"ok[:\s]+<?([^\s<>]+)>?", re.IGNORECASE)  # SES: "250 Ok <id>"
_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)


def classify_smtp_reply(code: int, text: str, stage: Stage, sender: str = "") -> Verdict:
    """Which verdict an SMTP error reply at ``stage`` earns.

    >>> classify_smtp_reply(454, "Throttling failure: Maximum sending rate exceeded.", "data")
    <Verdict.THROTTLED: 'throttled'>
    >>> classify_smtp_reply(550, "No such user", "rcpt")
    <Verdict.REJECTED: 'rejected'>
    """
    if _QUOTA_TEXT.search(text):
        return Verdict.QUOTA
    if 400 <= code < 500:
        if code == 454 and stage == "auth" and not _THROTTLE_TEXT.search(text):
            return Verdict.RETRY  # "Temporary authentication failure"
        if code == 454 or _THROTTLE_TEXT.search(text):
            return Verdict.THROTTLED
        return Verdict.RETRY
    if code < 400:  # a success code where the protocol expected another: do not guess
        return Verdict.AMBIGUOUS if stage == "data" else Verdict.RETRY
    if code in _AUTH_CODES or stage in ("connect", "starttls", "auth"):
        return Verdict.FATAL
    if stage == "mail":
        # The envelope sender is the campaign's: if it is refused, nothing will go. 552 is
        # "message size exceeds the limit" (RFC 1870 SIZE) and concerns this message only.
        return Verdict.REJECTED if code == 552 else Verdict.FATAL
    if stage == "data" and "not verified" in text.lower() and sender:
        # SES names the identities that failed; when ours is one, nothing can be sent.
        domain = sender.rpartition("@")[2].lower()
        lowered = text.lower()
        if sender.lower() in lowered or f": {domain}" in lowered or f" {domain}," in lowered:
            return Verdict.FATAL
    return Verdict.REJECTED


def _queue_id(reply: str) -> str | None:
    """The server's id for an accepted message, when its 250 reply carries one."""
    text = _ENHANCED.sub("", reply.strip())
    for pattern in (_QUEUED_AS, _ENVID):
        match = pattern.search(text)
        if match:
            return match.group(1)
    match = _OK_ID.fullmatch(text)
    return match.group(1) if match else None


def _message_id(data: bytes) -> str | None:
    header_end = data.find(b"\r\n\r\n")
    match = _MESSAGE_ID.search(data, 0, header_end if header_end >= 0 else len(data))
    return match.group(1).decode("ascii", "replace") if match else None


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
class _Session:
    client: aiosmtplib.SMTP
    sent: int = 0


class _Failed(Exception):
    """A session could not be opened; carries the outcome for the message that wanted it."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.error)
        self.outcome = outcome


class SmtpProvider:
    """SMTP submission with a bounded pool of reused sessions.

    >>> async def main() -> None:                                     # doctest: +SKIP
    ...     host, port, tls = SMTP_PRESETS["ses"]("eu-west-1")
    ...     user, password = ses_smtp_credentials("AKID", "secret", "eu-west-1")
    ...     async with SmtpProvider(host=host, port=port, tls=tls, username=user,
    ...                             password=password, pool_size=4) as smtp:
    ...         outcome = await smtp.send(Message(to="a@example.com", sender="n@example.com",
    ...                                           subject="Hi", text="Hello"))

    ``tls="starttls"`` requires the server to offer STARTTLS (no silent downgrade);
    ``"implicit"`` speaks TLS from the first byte (port 465); ``"none"`` sends everything,
    credentials included, in the clear and is meant for a local relay or test server.
    ``tls_context`` replaces the default verifying context (for a private CA).

    The envelope sender is ``return_path`` when given, else the address of
    ``Message.sender``; the one envelope recipient is the address of ``Message.to``. The bytes
    sent are ``message.raw`` if set, else ``mime.build(message)``, else ``message.to_mime()``.
    """

    name = "smtp"

    def __init__(
        self,
        *,
        host: str,
        port: int,
        tls: TlsMode = "starttls",
        username: str | None = None,
        password: str | None = None,
        pool_size: int = 4,
        timeout: float = 30.0,
        tls_context: ssl.SSLContext | None = None,
        mime: MimeBuilder | None = None,
        messages_per_session: int = 1000,
        return_path: str | None = None,
        local_hostname: str | None = None,
    ) -> None:
        if tls not in ("starttls", "implicit", "none"):
            raise ValueError(f"tls must be 'starttls', 'implicit' or 'none', got {tls!r}")
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        if messages_per_session < 1:
            raise ValueError("messages_per_session must be at least 1")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if (username is None) != (password is None):
            raise ValueError("give both username and password, or neither")
        if return_path is not None and "@" not in return_path:
            raise ValueError(f"return_path must be an address, got {return_path!r}")
        self.host = host
        self.port = port
        self.tls: TlsMode = tls
        self._username = username
        self._password = password
        self._pool_size = pool_size
        self._timeout = timeout
        self._tls_context = tls_context
        self._mime = mime
        self._messages_per_session = messages_per_session
        self._return_path = return_path
        self._local_hostname = local_hostname
        self._slots: asyncio.Semaphore | None = None
        self._idle: list[_Session] = []
        self._open: set[_Session] = set()
        #: Sessions opened so far (each one connected, upgraded and logged in).
        self.sessions_opened = 0

    async def __aenter__(self) -> SmtpProvider:
        self._slots = asyncio.Semaphore(self._pool_size)
        if self._local_hostname is None:
            # aiosmtplib would ask for the FQDN on every connect; once is enough.
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        idle, self._idle = self._idle, []
        await asyncio.gather(*(self._quit(session) for session in idle))
        for session in list(self._open):  # still checked out: a send was cancelled
            self._close(session)
        self._slots = None

    async def get_quota(self) -> Quota | None:
        """SMTP has no way to ask for a quota."""
        return None

    def _bytes(self, message: Message) -> bytes:
        if message.raw is not None:
            return message.raw
        if self._mime is not None:
            return self._mime.build(message)
        return message.to_mime()

    async def send(self, message: Message) -> Outcome:
        """Send one attempt of ``message``; every answer becomes an :class:`Outcome`."""
        if self._slots is None:
            raise RuntimeError("use 'async with SmtpProvider(...)' before sending")
        try:
            data = self._bytes(message)
        except MessageTooLarge as exc:
            return Outcome(Verdict.REJECTED, error_code="MessageTooLarge", error=str(exc))
        except ValueError as exc:
            return Outcome(Verdict.REJECTED, error_code="BadMessage", error=str(exc))
        sender = self._return_path or parseaddr(message.sender)[1]
        recipient = parseaddr(message.to)[1]
        if "@" not in recipient:
            return Outcome(
                Verdict.REJECTED, error_code="BadAddress", error=f"not an address: {message.to!r}"
            )
        if "@" not in sender:
            return Outcome(
                Verdict.FATAL, error_code="BadSender", error=f"not an address: {message.sender!r}"
            )
        async with self._slots:
            for _ in range(2):
                try:
                    session, reused = await self._checkout()
                except _Failed as failed:
                    return failed.outcome
                outcome, keep, stale = await self._transaction(session, sender, recipient, data)
                if keep:
                    self._idle.append(session)
                elif session.sent >= self._messages_per_session:
                    await self._quit(session)
                else:
                    self._close(session)
                # A pooled session the server had already dropped carried nothing of this
                # message: open a fresh one and try once more. Any other answer is final.
                if not (stale and reused):
                    return outcome
            return outcome

    async def _checkout(self) -> tuple[_Session, bool]:
        while self._idle:
            session = self._idle.pop()
            if session.client.is_connected:
                return session, True
            self._close(session)
        return await self._connect(), False

    async def _connect(self) -> _Session:
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            timeout=self._timeout,
            use_tls=self.tls == "implicit",
            start_tls=False,
            tls_context=self._tls_context,
            local_hostname=self._local_hostname,
        )
        stage: Stage = "connect"
        try:
            await client.connect()
            if self.tls == "starttls":
                stage = "starttls"
                await client.starttls()
            if self._username is not None and self._password is not None:
                stage = "auth"
                await self._login(client, self._username, self._password)
        except BaseException as exc:
            client.close()
            if isinstance(exc, Exception):
                raise _Failed(self._connect_outcome(exc, stage)) from None
            raise
        session = _Session(client)
        self._open.add(session)
        self.sessions_opened += 1
        return session

    @staticmethod
    async def _login(client: aiosmtplib.SMTP, username: str, password: str) -> None:
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

    def _connect_outcome(self, exc: Exception, stage: Stage) -> Outcome:
        where = f"{self.host}:{self.port}"
        tls_error = _ssl_error(exc)
        if tls_error is not None:
            return Outcome(
                Verdict.FATAL,
                error_code="TlsError",
                error=self._scrub(f"TLS with {where} failed: {tls_error}"),
            )
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            verdict = classify_smtp_reply(exc.code, exc.message, stage)
            if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
                verdict = classify_smtp_reply(exc.code, exc.message, "auth")
            return Outcome(
                verdict,
                error_code=f"SMTP{exc.code}",
                error=self._scrub(f"{stage} refused by {where}: {exc.code} {exc.message}"),
            )
        if isinstance(exc, aiosmtplib.SMTPConnectError | aiosmtplib.SMTPTimeoutError):
            # Refused, unreachable, or no greeting in time: nothing was sent.
            return Outcome(
                Verdict.RETRY, error_code="ConnectError", error=self._scrub(f"{where}: {exc}")
            )
        if isinstance(exc, aiosmtplib.SMTPServerDisconnected | OSError):
            return Outcome(
                Verdict.RETRY, error_code="Disconnected", error=self._scrub(f"{where}: {exc}")
            )
        if isinstance(exc, aiosmtplib.SMTPException):
            # STARTTLS or AUTH not offered: a configuration problem, the same for every message.
            return Outcome(
                Verdict.FATAL, error_code="Unsupported", error=self._scrub(f"{where}: {exc}")
            )
        raise exc

    async def _transaction(
        self, session: _Session, sender: str, recipient: str, data: bytes
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
                error=self._scrub(f"{stage.upper()}: {exc.code} {exc.message}"),
            )
            keep = exc.code != 421 and await self._reset(client)
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
            text = self._scrub(f"{stage.upper()}: {exc}") or type(exc).__name__
            stale = stage == "mail" and not isinstance(exc, TimeoutError)
            return Outcome(verdict, error_code=code, error=text), False, stale
        except ValueError as exc:  # an address aiosmtplib will not put on the wire
            outcome = Outcome(Verdict.REJECTED, error_code="BadAddress", error=str(exc))
            return outcome, await self._reset(client), False
        session.sent += 1
        message_id = _queue_id(response.message) or _message_id(data) or response.message
        keep = session.sent < self._messages_per_session
        return Outcome(Verdict.SENT, message_id=message_id), keep, False

    async def _reset(self, client: aiosmtplib.SMTP) -> bool:
        """RSET after a refused command; False when the session is no longer usable."""
        if not client.is_connected:
            return False
        try:
            await client.rset()
        except (aiosmtplib.SMTPException, ConnectionError, OSError, TimeoutError):
            return False
        return True

    async def _quit(self, session: _Session) -> None:
        try:
            if session.client.is_connected:
                await session.client.quit(timeout=min(self._timeout, 5.0))
        except (aiosmtplib.SMTPException, ConnectionError, OSError, TimeoutError):
            pass
        finally:
            self._close(session)

    def _close(self, session: _Session) -> None:
        session.client.close()
        self._open.discard(session)

    def _scrub(self, text: str) -> str | None:
        return scrub(text, [self._password])


__all__ = [
    "SMTP_PRESETS",
    "SmtpProvider",
    "classify_smtp_reply",
    "ses_smtp_credentials",
]
