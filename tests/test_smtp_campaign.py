"""Whole campaigns over SMTP: ``run_campaign`` (and once ``bulkmail`` itself) against a real
aiosmtpd server on 127.0.0.1, port 0.

The server runs on its own event loop in a thread, so the same fixture serves async tests
(``run_campaign`` on the test's loop) and the synchronous CLI (which runs its own loop). Its
:class:`Recorder` handler keeps every envelope it accepts, requires AUTH when asked (530 to
``MAIL`` before login, the way a submission server does), and answers the faults a test
chooses: a reply per recipient at ``RCPT``, or a queue of replies per recipient at ``DATA``.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import os
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

import bulkmail
from bulkmail.api import load_campaign, make_provider
from bulkmail.cli import main
from bulkmail.errors import ConfigError, CredentialsError
from bulkmail.providers.smtp import SmtpProvider
from bulkmail.signing.smtp_password import ses_smtp_password

from .conftest import CampaignFactory

USER = "smtp-user@example.com"
PASSWORD = "Sm7p-Passw0rd-from-env"
PASSWORD_ENV = "BULKMAIL_TEST_SMTP_PASSWORD"
UNSUBSCRIBE = (
    'unsubscribe:\n  url: "https://example.com/u?e={{ email }}"\n  mailto: unsub@example.com\n'
)
THROTTLED = "454 4.7.0 Throttling failure: Maximum sending rate exceeded."


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    tls: bool


@dataclass
class Recorder:
    """aiosmtpd handler: records what it accepts, answers what the test chose."""

    require_auth: bool = False
    received: list[Received] = field(default_factory=list)
    rcpt_commands: list[str] = field(default_factory=list)
    auth_attempts: list[tuple[bytes, bytes]] = field(default_factory=list)
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_replies: dict[str, list[str]] = field(default_factory=dict)

    async def handle_MAIL(  # noqa: N802 - aiosmtpd hook name
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if self.require_auth and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(  # noqa: N802 - aiosmtpd hook name
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        self.rcpt_commands.append(address)
        reply = self.rcpt_replies.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        faults = self.data_replies.get(envelope.rcpt_tos[0], [])
        if faults:
            return faults.pop(0)
        content = envelope.original_content
        assert isinstance(content, bytes)
        self.received.append(
            Received(str(envelope.mail_from), list(envelope.rcpt_tos), content, bool(session.ssl))
        )
        return f"250 Ok 0100018c-{len(self.received):06d}-000000"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        self.auth_attempts.append((auth_data.login, auth_data.password))
        ok = (auth_data.login, auth_data.password) == (USER.encode(), PASSWORD.encode())
        return AuthResult(success=ok, handled=False)  # aiosmtpd answers 235 / 535 itself

    def by_recipient(self) -> dict[str, Received]:
        out = {r.rcpt_tos[0]: r for r in self.received}
        assert len(out) == len(self.received), "a recipient got more than one message"
        return out


StartServer = Callable[..., tuple[Recorder, int]]


@pytest.fixture
def smtp_server() -> Iterator[StartServer]:
    """Start aiosmtpd servers on 127.0.0.1:0 on a loop in a thread; returns (recorder, port).

    ``auth=True`` offers AUTH without TLS (``auth_require_tls=False``) and refuses MAIL until
    the client has logged in; ``starttls=context`` offers STARTTLS and requires it.
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="aiosmtpd", daemon=True)
    thread.start()
    servers: list[asyncio.Server] = []

    def start(
        *, auth: bool = False, starttls: ssl.SSLContext | None = None
    ) -> tuple[Recorder, int]:
        recorder = Recorder(require_auth=auth)

        def factory() -> SMTP:
            return SMTP(
                recorder,
                hostname="localhost",
                loop=loop,
                tls_context=starttls,
                require_starttls=starttls is not None,
                # auth_required=True without TLS makes aiosmtpd warn (an error here);
                # Recorder.handle_MAIL enforces the login instead.
                auth_require_tls=False,
                authenticator=recorder.authenticate if auth else None,
            )

        server = asyncio.run_coroutine_threadsafe(
            loop.create_server(factory, "127.0.0.1", 0), loop
        ).result(10)
        servers.append(server)
        port: int = server.sockets[0].getsockname()[1]
        return recorder, port

    yield start

    async def shutdown() -> None:
        for server in servers:
            server.close()
            await server.wait_closed()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def smtp_provider(port: int, *, tls: str = "none", auth: bool = True, pool: int = 2) -> str:
    """The ``provider:`` body for make_campaign (continuation lines indented two spaces)."""
    lines = ["name: smtp", "host: 127.0.0.1", f"port: {port}", f"tls: {tls}", f"pool: {pool}"]
    if auth:
        lines += [f"username: {USER}", f"password_env: {PASSWORD_ENV}"]
    return "\n  ".join(lines)


def results(campaign: Path) -> dict[str, dict[str, Any]]:
    path = campaign.with_name(campaign.stem + ".results.jsonl")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return {row["email"]: row for row in rows}


def parse(content: bytes) -> email.message.EmailMessage:
    parsed = email.message_from_bytes(content, policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


def recipients(count: int) -> list[str]:
    """The addresses make_campaign writes for ``count`` rows."""
    return [f"user{i:06d}@example.org" for i in range(count)]


def assert_one_message_each(recorder: Recorder, expected: list[str]) -> None:
    got = recorder.by_recipient()
    assert sorted(got) == sorted(expected)
    for to, received in got.items():
        assert received.rcpt_tos == [to]
        assert received.mail_from == "news@example.com"
        assert parse(received.content).get_all("To") == [to]


# ------------------------------------------------------------------------- (a) plain with AUTH


async def test_plain_campaign_with_auth_from_password_env(
    smtp_server: StartServer, make_campaign: CampaignFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder, port = smtp_server(auth=True)
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    path = make_campaign(count=12, provider=smtp_provider(port), extra=UNSUBSCRIBE)

    summary = await bulkmail.run_campaign(path)

    assert summary.counts.get("sent") == 12 and summary.exit_code == 0, summary
    expected = recipients(12)
    assert sorted(recorder.rcpt_commands) == sorted(expected)  # one RCPT per recipient
    assert_one_message_each(recorder, expected)
    assert recorder.auth_attempts and all(
        attempt == (USER.encode(), PASSWORD.encode()) for attempt in recorder.auth_attempts
    )
    assert len(recorder.auth_attempts) <= 2  # one login per pooled session (pool: 2)
    for to, received in recorder.by_recipient().items():
        parsed = parse(received.content)
        unsubscribe = " ".join(parsed["List-Unsubscribe"].split())
        assert f"<https://example.com/u?e={to}>" in unsubscribe
        assert "<mailto:unsub@example.com" in unsubscribe
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert parsed["Subject"] == f"Hi Name{int(to[4:10])}"
    rows = results(path)
    assert {row["status"] for row in rows.values()} == {"sent"}
    assert {row["message_id"] for row in rows.values()} == {
        f"0100018c-{i:06d}-000000" for i in range(1, 13)
    }


async def test_no_unsubscribe_headers_without_unsubscribe(
    smtp_server: StartServer, make_campaign: CampaignFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder, port = smtp_server(auth=True)
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    path = make_campaign(count=2, provider=smtp_provider(port))
    summary = await bulkmail.run_campaign(path)
    assert summary.counts.get("sent") == 2
    for received in recorder.received:
        parsed = parse(received.content)
        assert parsed["List-Unsubscribe"] is None and parsed["List-Unsubscribe-Post"] is None


async def test_missing_password_variable_sends_nothing(
    smtp_server: StartServer, make_campaign: CampaignFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder, port = smtp_server(auth=True)
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    path = make_campaign(count=2, provider=smtp_provider(port))
    with pytest.raises(CredentialsError, match=PASSWORD_ENV):
        await bulkmail.run_campaign(path)
    assert recorder.rcpt_commands == [] and recorder.auth_attempts == []


# ------------------------------------------------------------------------------ (b) STARTTLS


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


async def test_starttls_campaign_trusts_ssl_cert_file(
    smtp_server: StartServer,
    make_campaign: CampaignFactory,
    monkeypatch: pytest.MonkeyPatch,
    ca: trustme.CA,
    server_tls: ssl.SSLContext,
    tmp_path: Path,
) -> None:
    """No TLS setting in the campaign: the private CA reaches the default verifying context
    (which aiosmtplib builds with ``ssl.create_default_context()``) through SSL_CERT_FILE."""
    recorder, port = smtp_server(auth=True, starttls=server_tls)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    path = make_campaign(count=5, provider=smtp_provider(port, tls="starttls"))

    summary = await bulkmail.run_campaign(path)

    assert summary.counts.get("sent") == 5 and summary.exit_code == 0, summary
    assert_one_message_each(recorder, recipients(5))
    assert all(received.tls for received in recorder.received)


async def test_starttls_untrusted_certificate_stops_the_campaign(
    smtp_server: StartServer,
    make_campaign: CampaignFactory,
    monkeypatch: pytest.MonkeyPatch,
    server_tls: ssl.SSLContext,
) -> None:
    recorder, port = smtp_server(auth=True, starttls=server_tls)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    path = make_campaign(count=3, provider=smtp_provider(port, tls="starttls"))

    summary = await bulkmail.run_campaign(path)

    assert summary.stop_kind == "fatal"
    assert summary.stopped is not None and "TLS" in summary.stopped
    assert summary.counts.get("sent", 0) == 0 and summary.exit_code == 2
    assert recorder.received == [] and recorder.auth_attempts == []  # no password sent


# ------------------------------------------------------------------------ (c) server answers


async def test_throttled_messages_are_retried_and_delivered_once(
    smtp_server: StartServer, make_campaign: CampaignFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder, port = smtp_server(auth=True)
    everyone = recipients(10)
    throttled = {everyone[2]: 2, everyone[5]: 1, everyone[9]: 1}
    for to, times in throttled.items():
        recorder.data_replies[to] = [THROTTLED] * times
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    path = make_campaign(count=10, provider=smtp_provider(port))

    summary = await bulkmail.run_campaign(path)

    assert summary.counts.get("sent") == 10 and summary.exit_code == 0, summary
    assert_one_message_each(recorder, everyone)
    assert all(not faults for faults in recorder.data_replies.values())
    rows = results(path)
    for to in everyone:
        assert rows[to]["status"] == "sent"
        assert rows[to]["attempts"] == 1 + throttled.get(to, 0)
        assert recorder.rcpt_commands.count(to) == 1 + throttled.get(to, 0)


async def test_rejected_recipient_fails_and_the_others_are_sent(
    smtp_server: StartServer, make_campaign: CampaignFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder, port = smtp_server(auth=True)
    everyone = recipients(6)
    bad = everyone[3]
    recorder.rcpt_replies[bad] = "550 5.1.1 <user000003@example.org>: No such user"
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    path = make_campaign(count=6, provider=smtp_provider(port))

    summary = await bulkmail.run_campaign(path)

    assert summary.counts.get("sent") == 5 and summary.counts.get("failed") == 1, summary
    assert summary.stopped is None and summary.exit_code == 1
    assert_one_message_each(recorder, [to for to in everyone if to != bad])
    assert recorder.rcpt_commands.count(bad) == 1  # a 5xx is final: not retried
    row = results(path)[bad]
    assert (row["status"], row["error_code"]) == ("failed", "SMTP550")
    assert "No such user" in row["error"]


def test_wrong_password_stops_the_cli_and_never_shows_the_password(
    smtp_server: StartServer,
    make_campaign: CampaignFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    recorder, port = smtp_server(auth=True)
    wrong = "Wr0ng-Sm7p-Passw0rd-xyzzy"
    monkeypatch.setenv(PASSWORD_ENV, wrong)
    path = make_campaign(count=8, provider=smtp_provider(port))

    code = main([str(path), "--json"])

    out, err = capsys.readouterr()
    assert code == 2  # a campaign-wide stop before anything was sent
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["stop_kind"] == "fatal" and summary["complete"] is False
    assert summary["counts"].get("sent", 0) == 0
    assert "535" in err and "stopped" in err
    assert recorder.received == [] and recorder.rcpt_commands == []
    assert set(recorder.auth_attempts) == {(USER.encode(), wrong.encode())}
    # State saved: every row is in the results file and the journal, none of them sent.
    rows = results(path)
    assert len(rows) == 8 and "sent" not in {row["status"] for row in rows.values()}
    files = [p for p in path.parent.iterdir() if p.is_file()]
    assert any(p.name.startswith(path.stem + ".journal") for p in files)
    for text in (out, err, *(p.read_bytes().decode("latin-1") for p in files)):
        assert wrong not in text and PASSWORD not in text

    # The right password resumes the same campaign and sends everyone exactly once.
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    assert main([str(path), "--quiet"]) == 0
    assert_one_message_each(recorder, recipients(8))


# ------------------------------------------------------------------ (d) SES SMTP derivation


AWS_KEYS = {"AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE", "AWS_SECRET_ACCESS_KEY": "some+secret+key"}


def ses_campaign(make_campaign: CampaignFactory, provider: str) -> bulkmail.Campaign:
    return load_campaign(make_campaign(count=1, provider=provider))


@pytest.mark.parametrize(
    "provider",
    [
        "name: smtp\n  host: email-smtp.eu-west-1.amazonaws.com",
        "name: smtp\n  host: ses\n  region: eu-west-1",
    ],
)
def test_ses_smtp_password_derived_from_access_keys(
    make_campaign: CampaignFactory, provider: str
) -> None:
    smtp = make_provider(ses_campaign(make_campaign, provider), environ=AWS_KEYS)
    assert isinstance(smtp, SmtpProvider)
    assert smtp.host == "email-smtp.eu-west-1.amazonaws.com"
    assert (smtp.port, smtp.tls) == (587, "starttls")
    assert smtp._username == "AKIAIOSFODNN7EXAMPLE"
    assert smtp._password == ses_smtp_password("some+secret+key", "eu-west-1")
    assert smtp._password == ses_smtp_password(AWS_KEYS["AWS_SECRET_ACCESS_KEY"], "eu-west-1")


def test_ses_smtp_password_env_wins_over_access_keys(make_campaign: CampaignFactory) -> None:
    campaign = ses_campaign(
        make_campaign,
        f"name: smtp\n  host: ses\n  region: eu-west-1\n  username: AKIAOTHER\n"
        f"  password_env: {PASSWORD_ENV}",
    )
    smtp = make_provider(campaign, environ={**AWS_KEYS, PASSWORD_ENV: "from-env"})
    assert isinstance(smtp, SmtpProvider)
    assert (smtp._username, smtp._password) == ("AKIAOTHER", "from-env")


def test_ses_smtp_refuses_temporary_credentials(make_campaign: CampaignFactory) -> None:
    campaign = ses_campaign(make_campaign, "name: smtp\n  host: ses\n  region: eu-west-1")
    environ = {**AWS_KEYS, "AWS_SESSION_TOKEN": "FwoGZXIvYXdzEXAMPLETOKEN"}
    with pytest.raises(CredentialsError, match="long-term") as info:
        make_provider(campaign, environ=environ)
    assert "some+secret+key" not in str(info.value) and "FwoG" not in str(info.value)


def test_ses_smtp_region_without_endpoint_is_a_config_error(
    make_campaign: CampaignFactory,
) -> None:
    # Caught when the campaign is loaded (the preset table refuses the region), before any
    # credentials are read.
    with pytest.raises(ConfigError, match="provider.region") as info:
        ses_campaign(make_campaign, "name: smtp\n  host: ses\n  region: mars-north-1")
    assert "some+secret+key" not in str(info.value)


def test_username_without_password_env_is_a_config_error(make_campaign: CampaignFactory) -> None:
    campaign = ses_campaign(
        make_campaign, "name: smtp\n  host: mail.example.com\n  username: someone"
    )
    with pytest.raises(ConfigError, match="password_env"):
        make_provider(campaign, environ={})


def test_plain_relay_without_credentials_does_not_log_in(make_campaign: CampaignFactory) -> None:
    campaign = ses_campaign(make_campaign, "name: smtp\n  host: relay.internal\n  tls: none")
    smtp = make_provider(campaign, environ=AWS_KEYS)  # AWS keys are not used for a relay
    assert isinstance(smtp, SmtpProvider)
    assert (smtp.port, smtp._username, smtp._password) == (25, None, None)


def test_ssl_cert_file_reaches_the_default_context(
    ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the STARTTLS campaign test relies on, checked directly."""
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    assert os.environ["SSL_CERT_FILE"] == str(bundle)
    assert ssl.get_default_verify_paths().cafile == str(bundle)
    assert len(ssl.create_default_context().get_ca_certs()) == 1


async def test_ses_headers_for_configuration_set_tags_and_delegated_sending(
    smtp_server: StartServer, make_campaign: CampaignFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over SMTP, SES takes the configuration set, tags and sending-authorization ARNs as
    X-SES-* headers: each appears exactly once in every message."""
    recorder, port = smtp_server(auth=True)
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    arn = "arn:aws:ses:us-east-1:123456789012:identity/example.com"
    extra = (
        "configuration_set: marketing\n"
        "tags: {campaign: spring, team: news}\n"
        f"source_arn: {arn}\nfrom_arn: {arn}\nreturn_path_arn: {arn}\n"
    )
    path = make_campaign(count=3, provider=smtp_provider(port), extra=extra)
    summary = await bulkmail.run_campaign(path)
    assert summary.counts.get("sent") == 3, summary
    for received in recorder.by_recipient().values():
        parsed = parse(received.content)
        assert parsed.get_all("X-SES-CONFIGURATION-SET") == ["marketing"]
        assert parsed.get_all("X-SES-MESSAGE-TAGS") == ["campaign=spring, team=news"]
        for name in ("X-SES-SOURCE-ARN", "X-SES-FROM-ARN", "X-SES-RETURN-PATH-ARN"):
            assert parsed.get_all(name) == [arn]
