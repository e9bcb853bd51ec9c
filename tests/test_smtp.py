"""SmtpProvider against a real aiosmtpd server started on the test's own loop, port 0.

The :class:`Recorder` handler stores every envelope and message it accepts, counts
connections and RCPT commands, and injects the faults a test asks for.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import pytest
import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from bulkmail.mail.message import Message
from bulkmail.mail.mime import Attachment, MimeBuilder
from bulkmail.providers.base import Provider, Verdict
from bulkmail.providers.smtp import (
    SMTP_PRESETS,
    SmtpProvider,
    classify_smtp_reply,
    ses_smtp_credentials,
)
from bulkmail.signing.smtp_password import ses_smtp_password

SENDER = "News <news@example.com>"
USER = "news@example.com"
PASSWORD = "s3cret-Passw0rd"
UNSUBSCRIBE = (
    ("List-Unsubscribe", "<https://example.com/u?t=abc>, <mailto:unsub@example.com?subject=u>"),
    ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
)


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    connection: int


@dataclass
class Recorder:
    """aiosmtpd handler that records what it accepts and answers as the test says."""

    received: list[Received] = field(default_factory=list)
    connections: int = 0
    rcpt_commands: int = 0
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_replies: list[str] = field(default_factory=list)
    drop_in_data: bool = False
    data_delay: float = 0.0
    queue_ids: bool = True
    servers: list[SMTP] = field(default_factory=list)
    mechanisms: list[str] = field(default_factory=list)

    async def handle_RCPT(  # noqa: N802 - aiosmtpd hook name
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        self.rcpt_commands += 1
        reply = self.rcpt_replies.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        if self.drop_in_data:
            assert isinstance(server.transport, asyncio.Transport)
            server.transport.abort()
            return "250 never heard"
        if self.data_replies:
            return self.data_replies.pop(0)
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
            return "451 too late"
        content = envelope.original_content or b""
        assert isinstance(content, bytes)
        self.received.append(
            Received(
                str(envelope.mail_from),
                list(envelope.rcpt_tos),
                content,
                self.servers.index(server),
            )
        )
        if self.queue_ids:
            return f"250 Ok 0100018c-{len(self.received):06d}-000000"
        return "250 OK"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        self.mechanisms.append(mechanism)
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            USER.encode(),
            PASSWORD.encode(),
        )
        # handled=False: aiosmtpd then sends the 235 / 535 reply itself.
        return AuthResult(success=ok, handled=False)


@dataclass
class Tls:
    server: ssl.SSLContext
    client: ssl.SSLContext


@pytest.fixture(scope="module")
def tls() -> Tls:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return Tls(server, client)


StartServer = Callable[..., Coroutine[Any, Any, tuple[Recorder, int]]]


@pytest.fixture
async def smtpd() -> AsyncIterator[StartServer]:
    """Start aiosmtpd servers on 127.0.0.1:0; returns (recorder, port)."""
    servers: list[asyncio.Server] = []

    async def start(
        *,
        starttls: ssl.SSLContext | None = None,
        implicit: ssl.SSLContext | None = None,
        auth: bool = False,
        **options: Any,
    ) -> tuple[Recorder, int]:
        recorder = Recorder()
        loop = asyncio.get_running_loop()

        def factory() -> SMTP:
            recorder.connections += 1
            server = SMTP(
                recorder,
                hostname="localhost",
                loop=loop,
                tls_context=starttls,
                require_starttls=starttls is not None,
                auth_required=auth,
                authenticator=recorder.authenticate if auth else None,
                **options,
            )
            recorder.servers.append(server)
            return server

        server = await loop.create_server(factory, "127.0.0.1", 0, ssl=implicit)
        servers.append(server)
        port: int = server.sockets[0].getsockname()[1]
        return recorder, port

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def message(to: str, **kwargs: Any) -> Message:
    fields: dict[str, Any] = {
        "sender": SENDER,
        "subject": f"Hello {to}",
        "text": f"Hi {to}",
        "headers": UNSUBSCRIBE,
    }
    fields.update(kwargs)
    return Message(to=to, **fields)


def parse(content: bytes) -> email.message.EmailMessage:
    parsed = email.message_from_bytes(content, policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


def assert_one_recipient(received: Received, to: str) -> None:
    assert received.rcpt_tos == [to]
    assert received.mail_from == "news@example.com"
    parsed = parse(received.content)
    assert parsed.get_all("To") == [to]
    # to_mime() may fold the value onto a continuation line: compare unfolded.
    assert parsed["List-Unsubscribe"].strip() == UNSUBSCRIBE[0][1]
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert b"\r\n" in received.content and b"\n" not in received.content.replace(b"\r\n", b"")


async def test_plain_send_records_one_recipient(smtpd: StartServer) -> None:
    recorder, port = await smtpd()
    async with SmtpProvider(host="127.0.0.1", port=port, tls="none") as provider:
        assert isinstance(provider, Provider)
        outcome = await provider.send(message("ana@example.org"))
    assert outcome.verdict is Verdict.SENT, outcome
    assert outcome.message_id == "0100018c-000001-000000"  # the server's queue id
    assert recorder.rcpt_commands == 1
    [received] = recorder.received
    assert_one_recipient(received, "ana@example.org")
    assert parse(received.content).get_content().strip() == "Hi ana@example.org"


async def test_message_id_header_when_reply_has_no_queue_id(smtpd: StartServer) -> None:
    recorder, port = await smtpd()
    recorder.queue_ids = False
    async with SmtpProvider(host="127.0.0.1", port=port, tls="none") as provider:
        outcome = await provider.send(message("ana@example.org"))
    assert outcome.verdict is Verdict.SENT
    assert outcome.message_id == parse(recorder.received[0].content)["Message-ID"]
    assert outcome.message_id is not None and outcome.message_id.startswith("<")


async def test_starttls_with_trusted_ca(smtpd: StartServer, tls: Tls) -> None:
    recorder, port = await smtpd(starttls=tls.server)
    async with SmtpProvider(
        host="127.0.0.1", port=port, tls="starttls", tls_context=tls.client
    ) as provider:
        outcome = await provider.send(message("ana@example.org"))
    assert outcome.verdict is Verdict.SENT, outcome
    assert recorder.servers[0].session is not None
    assert recorder.servers[0].session.ssl is not None  # the server saw TLS
    assert_one_recipient(recorder.received[0], "ana@example.org")


async def test_starttls_untrusted_certificate_is_fatal(smtpd: StartServer, tls: Tls) -> None:
    recorder, port = await smtpd(starttls=tls.server)
    async with SmtpProvider(host="127.0.0.1", port=port, tls="starttls") as provider:
        outcome = await provider.send(message("ana@example.org"))
    assert outcome.verdict is Verdict.FATAL
    assert outcome.error_code == "CertificateVerifyFailed"
    assert outcome.error is not None and "SSL_CERT_FILE" in outcome.error
    assert f"127.0.0.1:{port}" in outcome.error
    assert recorder.received == []


async def test_starttls_required_but_not_offered_is_fatal(smtpd: StartServer) -> None:
    _, port = await smtpd()
    async with SmtpProvider(host="127.0.0.1", port=port, tls="starttls") as provider:
        outcome = await provider.send(message("ana@example.org"))
    assert outcome.verdict is Verdict.FATAL
    assert outcome.error and "STARTTLS" in outcome.error


async def test_implicit_tls(smtpd: StartServer, tls: Tls) -> None:
    recorder, port = await smtpd(implicit=tls.server)
    async with SmtpProvider(
        host="127.0.0.1", port=port, tls="implicit", tls_context=tls.client
    ) as provider:
        outcome = await provider.send(message("ana@example.org"))
    assert outcome.verdict is Verdict.SENT, outcome
    server = recorder.servers[0]
    assert server.transport is not None
    assert_one_recipient(recorder.received[0], "ana@example.org")


@pytest.mark.parametrize("mechanism", ["LOGIN", "PLAIN"])
async def test_auth_right_password_sends(smtpd: StartServer, tls: Tls, mechanism: str) -> None:
    other = "PLAIN" if mechanism == "LOGIN" else "LOGIN"
    recorder, port = await smtpd(starttls=tls.server, auth=True, auth_exclude_mechanism=[other])
    async with SmtpProvider(
        host="127.0.0.1",
        port=port,
        username=USER,
        password=PASSWORD,
        tls_context=tls.client,
    ) as provider:
        outcome = await provider.send(message("ana@example.org"))
    assert outcome.verdict is Verdict.SENT, outcome
    assert recorder.mechanisms == [mechanism]
    assert len(recorder.received) == 1


async def test_auth_wrong_password_is_fatal_and_scrubbed(smtpd: StartServer, tls: Tls) -> None:
    recorder, port = await smtpd(starttls=tls.server, auth=True)
    wrong = "wrong-" + PASSWORD
    async with SmtpProvider(
        host="127.0.0.1", port=port, username=USER, password=wrong, tls_context=tls.client
    ) as provider:
        outcome = await provider.send(message("ana@example.org"))
    assert outcome.verdict is Verdict.FATAL
    assert outcome.error_code == "SMTP535"
    assert outcome.error is not None
    assert wrong not in outcome.error and PASSWORD not in outcome.error
    assert wrong not in repr(outcome)
    assert recorder.mechanisms == ["PLAIN"]  # one attempt, not one per mechanism
    assert recorder.received == []


async def test_many_messages_reuse_few_sessions(smtpd: StartServer) -> None:
    recorder, port = await smtpd()
    recipients = [f"user{i}@example.org" for i in range(50)]
    async with SmtpProvider(host="127.0.0.1", port=port, tls="none", pool_size=2) as provider:
        outcomes = await asyncio.gather(*(provider.send(message(to)) for to in recipients))
        assert provider.sessions_opened <= 2
    assert all(o.verdict is Verdict.SENT for o in outcomes)
    assert len({o.message_id for o in outcomes}) == 50
    assert recorder.connections <= 2
    assert recorder.rcpt_commands == 50
    assert sorted(r.rcpt_tos[0] for r in recorder.received) == sorted(recipients)
    for received in recorder.received:
        assert_one_recipient(received, received.rcpt_tos[0])


async def test_session_replaced_after_messages_per_session(smtpd: StartServer) -> None:
    recorder, port = await smtpd()
    async with SmtpProvider(
        host="127.0.0.1", port=port, tls="none", pool_size=1, messages_per_session=10
    ) as provider:
        for i in range(25):
            assert (await provider.send(message(f"u{i}@example.org"))).ok
    assert recorder.connections == 3
    assert [r.connection for r in recorder.received] == [0] * 10 + [1] * 10 + [2] * 5


async def test_stale_pooled_session_is_replaced_transparently(smtpd: StartServer) -> None:
    recorder, port = await smtpd()
    async with SmtpProvider(host="127.0.0.1", port=port, tls="none", pool_size=1) as provider:
        assert (await provider.send(message("a@example.org"))).ok
        transport = recorder.servers[0].transport
        assert transport is not None
        transport.close()  # the server drops the idle session
        await asyncio.sleep(0.05)
        outcome = await provider.send(message("b@example.org"))
    assert outcome.verdict is Verdict.SENT, outcome
    assert recorder.connections == 2
    assert [r.rcpt_tos for r in recorder.received] == [["a@example.org"], ["b@example.org"]]


async def test_throttling_reply_is_throttled(smtpd: StartServer) -> None:
    recorder, port = await smtpd()
    recorder.data_replies = ["454 Throttling failure: Maximum sending rate exceeded."]
    async with SmtpProvider(host="127.0.0.1", port=port, tls="none", pool_size=1) as provider:
        first = await provider.send(message("a@example.org"))
        second = await provider.send(message("b@example.org"))
    assert first.verdict is Verdict.THROTTLED
    assert first.error_code == "SMTP454"
    assert second.verdict is Verdict.SENT
    assert recorder.connections == 1


async def test_daily_quota_reply_is_quota(smtpd: StartServer) -> None:
    recorder, port = await smtpd()
    recorder.data_replies = ["454 Throttling failure: Daily message quota exceeded."]
    async with SmtpProvider(host="127.0.0.1", port=port, tls="none") as provider:
        outcome = await provider.send(message("a@example.org"))
    assert outcome.verdict is Verdict.QUOTA


async def test_rejected_recipient_then_next_message_on_same_session(smtpd: StartServer) -> None:
    recorder, port = await smtpd()
    recorder.rcpt_replies["bad@example.org"] = "550 5.1.1 No such user"
    async with SmtpProvider(host="127.0.0.1", port=port, tls="none", pool_size=1) as provider:
        bad = await provider.send(message("bad@example.org"))
        good = await provider.send(message("good@example.org"))
    assert bad.verdict is Verdict.REJECTED
    assert bad.error_code == "SMTP550"
    assert bad.error is not None and "No such user" in bad.error
    assert good.verdict is Verdict.SENT
    assert recorder.connections == 1
    [received] = recorder.received
    assert_one_recipient(received, "good@example.org")


async def test_message_rejected_at_data_is_rejected(smtpd: StartServer) -> None:
    recorder, port = await smtpd()
    recorder.data_replies = ["554 Message rejected: content not allowed", "451 try later"]
    async with SmtpProvider(host="127.0.0.1", port=port, tls="none", pool_size=1) as provider:
        rejected = await provider.send(message("a@example.org"))
        retry = await provider.send(message("b@example.org"))
        sent = await provider.send(message("c@example.org"))
    assert (rejected.verdict, retry.verdict, sent.verdict) == (
        Verdict.REJECTED,
        Verdict.RETRY,
        Verdict.SENT,
    )
    assert recorder.connections == 1


async def test_dropped_connection_mid_data_is_ambiguous(smtpd: StartServer) -> None:
    recorder, port = await smtpd()
    recorder.drop_in_data = True
    async with SmtpProvider(host="127.0.0.1", port=port, tls="none", pool_size=1) as provider:
        dropped = await provider.send(message("a@example.org"))
        recorder.drop_in_data = False
        after = await provider.send(message("b@example.org"))
    assert dropped.verdict is Verdict.AMBIGUOUS, dropped
    assert after.verdict is Verdict.SENT  # the broken session was replaced
    assert recorder.connections == 2


async def test_no_answer_after_data_is_ambiguous(smtpd: StartServer) -> None:
    recorder, port = await smtpd()
    recorder.data_delay = 0.5
    async with SmtpProvider(host="127.0.0.1", port=port, tls="none", timeout=0.2) as provider:
        outcome = await provider.send(message("a@example.org"))
    assert outcome.verdict is Verdict.AMBIGUOUS
    assert outcome.error_code == "Timeout"
    await asyncio.sleep(0.4)  # let the server's late answer hit the closed socket


async def test_connection_refused_is_retry() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    async with SmtpProvider(host="127.0.0.1", port=port, tls="none", timeout=2) as provider:
        outcome = await provider.send(message("a@example.org"))
    assert outcome.verdict is Verdict.RETRY
    assert outcome.error_code == "ConnectError"


async def test_mime_builder_attachments_reach_the_server(smtpd: StartServer) -> None:
    recorder, port = await smtpd()
    builder = MimeBuilder(attachments=[Attachment("terms.pdf", "application/pdf", b"%PDF-1.7")])
    async with SmtpProvider(host="127.0.0.1", port=port, tls="none", mime=builder) as provider:
        outcome = await provider.send(message("a@example.org", html="<p>Hi</p>"))
    assert outcome.ok
    parsed = parse(recorder.received[0].content)
    [attachment] = parsed.iter_attachments()
    assert attachment.get_filename() == "terms.pdf"
    assert attachment.get_content() == b"%PDF-1.7"
    assert_one_recipient(recorder.received[0], "a@example.org")


async def test_return_path_is_the_envelope_sender(smtpd: StartServer) -> None:
    recorder, port = await smtpd()
    async with SmtpProvider(
        host="127.0.0.1", port=port, tls="none", return_path="bounces@example.com"
    ) as provider:
        assert (await provider.send(message("a@example.org"))).ok
    assert recorder.received[0].mail_from == "bounces@example.com"
    assert parse(recorder.received[0].content)["From"] == SENDER


async def test_bad_recipient_is_rejected_without_a_connection(smtpd: StartServer) -> None:
    recorder, port = await smtpd()
    async with SmtpProvider(host="127.0.0.1", port=port, tls="none") as provider:
        outcome = await provider.send(message("not an address"))
    assert outcome.verdict is Verdict.REJECTED
    assert recorder.connections == 0


def test_classify_smtp_reply() -> None:
    assert classify_smtp_reply(421, "closing", "rcpt") is Verdict.RETRY
    assert classify_smtp_reply(450, "mailbox busy", "rcpt") is Verdict.RETRY
    assert classify_smtp_reply(452, "too many recipients", "rcpt") is Verdict.THROTTLED
    assert classify_smtp_reply(553, "bad mailbox", "rcpt") is Verdict.REJECTED
    assert classify_smtp_reply(554, "Message rejected", "data") is Verdict.REJECTED
    assert classify_smtp_reply(530, "Authentication required", "mail") is Verdict.FATAL
    assert classify_smtp_reply(534, "Authentication mechanism too weak", "auth") is Verdict.FATAL
    assert classify_smtp_reply(550, "sender refused", "mail") is Verdict.FATAL
    assert classify_smtp_reply(552, "too big", "mail") is Verdict.REJECTED
    text = "Message rejected: Email address is not verified. The following identities failed"
    assert (
        classify_smtp_reply(
            554,
            text + " the check in region EU-WEST-1: news@example.com",
            "data",
            "news@example.com",
        )
        is Verdict.FATAL
    )
    assert (
        classify_smtp_reply(
            554,
            text + " the check in region EU-WEST-1: ana@example.org",
            "data",
            "news@example.com",
        )
        is Verdict.REJECTED
    )


def test_presets() -> None:
    assert SMTP_PRESETS["ses"]("eu-west-1") == (
        "email-smtp.eu-west-1.amazonaws.com",
        587,
        "starttls",
    )
    assert SMTP_PRESETS["directmail"](None) == ("smtpdm.aliyun.com", 465, "implicit")
    assert SMTP_PRESETS["directmail"]("ap-southeast-1") == (
        "smtpdm-ap-southeast-1.aliyuncs.com",
        465,
        "implicit",
    )
    with pytest.raises(ValueError, match="region"):
        SMTP_PRESETS["ses"](None)
    with pytest.raises(ValueError, match="known"):
        SMTP_PRESETS["directmail"]("mars-north-1")


def test_ses_smtp_credentials() -> None:
    user, password = ses_smtp_credentials("AKIAEXAMPLE", "some+secret+key", "eu-central-1")
    assert user == "AKIAEXAMPLE"
    assert password == ses_smtp_password("some+secret+key", "eu-central-1")


def test_constructor_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="tls"):
        SmtpProvider(host="h", port=1, tls="ssl")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pool_size"):
        SmtpProvider(host="h", port=1, pool_size=0)
    with pytest.raises(ValueError, match="username and password"):
        SmtpProvider(host="h", port=1, username="u")
