"""SMTP submission on aiosmtplib, with a bounded pool of reused sessions.

One :meth:`SmtpProvider.send` is one SMTP transaction for one recipient (``MAIL FROM``,
exactly one ``RCPT TO``, ``DATA``) on a session taken from the pool. Sessions are opened
lazily, up to ``pool_size``, carry up to ``messages_per_session`` messages each, and are
closed and replaced when anything goes wrong on them. Every server answer becomes an
:class:`~bulkmail.providers.base.Outcome` (this module keeps the pool;
:mod:`bulkmail.providers._smtp_session` opens a session, runs the transaction and reads the
answers):

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
import socket
import ssl
from email.utils import parseaddr
from types import TracebackType

import aiosmtplib

from bulkmail.mail.message import Message
from bulkmail.mail.mime import MessageTooLarge, MimeBuilder, to_mime
from bulkmail.providers._smtp_replies import (
    SMTP_PRESETS,
    TlsMode,
    classify_smtp_reply,
    ses_smtp_credentials,
)
from bulkmail.providers._smtp_session import (
    Session,
    SessionFailed,
    open_session,
    transaction,
)
from bulkmail.providers.base import Outcome, Quota, Verdict
from bulkmail.providers.config import ProviderSetup
from bulkmail.providers.errors import scrub


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
    sent are ``message.raw`` if set, else ``mime.build(message)``, else ``mime.to_mime(message)``.
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
        self._idle: list[Session] = []
        self._open: set[Session] = set()
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
        return to_mime(message)

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
                except SessionFailed as failed:
                    return failed.outcome
                outcome, keep, stale = await transaction(
                    session,
                    sender,
                    recipient,
                    data,
                    messages_per_session=self._messages_per_session,
                    scrub=self._scrub,
                )
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

    async def _checkout(self) -> tuple[Session, bool]:
        while self._idle:
            session = self._idle.pop()
            if session.client.is_connected:
                return session, True
            self._close(session)
        return await self._connect(), False

    async def _connect(self) -> Session:
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            timeout=self._timeout,
            use_tls=self.tls == "implicit",
            start_tls=False,
            tls_context=self._tls_context,
            local_hostname=self._local_hostname,
        )
        await open_session(
            client,
            tls=self.tls,
            username=self._username,
            password=self._password,
            where=f"{self.host}:{self.port}",
            scrub=self._scrub,
        )
        session = Session(client)
        self._open.add(session)
        self.sessions_opened += 1
        return session

    async def _quit(self, session: Session) -> None:
        try:
            if session.client.is_connected:
                await session.client.quit(timeout=min(self._timeout, 5.0))
        except (aiosmtplib.SMTPException, ConnectionError, OSError, TimeoutError):
            pass
        finally:
            self._close(session)

    def _close(self, session: Session) -> None:
        session.client.close()
        self._open.discard(session)

    def _scrub(self, text: str) -> str | None:
        return scrub(text, [self._password])


def from_config(setup: ProviderSetup, *, credentials: object = None) -> SmtpProvider:
    """Build the SMTP provider from its config block.

    The password comes from the variable ``provider.password_env`` names; for SES's SMTP
    hosts with no username, the SMTP password is derived from the AWS access key pair.
    """
    import os

    from bulkmail.credentials import aws_credential_source
    from bulkmail.errors import ConfigError, CredentialsError

    config = setup.config
    assert config.host is not None and config.port is not None
    env = os.environ if setup.environ is None else setup.environ
    username, password = config.username, None
    if config.password_env:
        password = env.get(config.password_env)
        if not password:
            raise CredentialsError(
                f"the SMTP password variable {config.password_env} (provider.password_env) "
                "is not set"
            )
    elif username is not None:
        raise ConfigError(
            "provider.username needs provider.password_env: the name of the environment "
            "variable that holds the SMTP password",
            key="provider.password_env",
        )
    elif config.host.lower().startswith("email-smtp."):
        # SES SMTP with only an access key pair: derive the SMTP password ourselves.
        creds = aws_credential_source(setup.environ).current()
        if creds.session_token:
            # The SMTP password carries no session token, so SES refuses one derived from
            # temporary (STS, SSO, instance role) keys; it needs an IAM user's own key.
            raise CredentialsError(
                "SES SMTP needs an IAM user's long-term access key, not temporary credentials "
                "(these came with a session token); or set provider.username and "
                "provider.password_env from 'bulkmail smtp-password'"
            )
        region = config.region or config.host.split(".")[1].lower()
        username, password = ses_smtp_credentials(
            creds.access_key_id, creds.secret_access_key, region
        )
    return SmtpProvider(
        host=config.host,
        port=config.port,
        tls=config.tls,  # type: ignore[arg-type]
        username=username,
        password=password,
        pool_size=config.pool,
        return_path=setup.identity.return_path,
    )


__all__ = [
    "SMTP_PRESETS",
    "SmtpProvider",
    "classify_smtp_reply",
    "ses_smtp_credentials",
    "from_config",
]
