"""The SNS endpoint against real peers: a signing SNS look-alike and an HTTPS cert host."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from bulkmail.deliverability.config import EventsConfig
from bulkmail.errors import ConfigError
from bulkmail.servers.events import EventsServer, https_fetcher
from tests._sns import OTHER_TOPIC, TOPIC, CertHost, Signer, bounce, complaint, self_signed

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Peer:
    def __init__(self, server: EventsServer, host: CertHost, signer: Signer, tmp: Path) -> None:
        self.server, self.host, self.signer, self.tmp = server, host, signer, tmp

    async def post(self, doc: dict[str, Any] | bytes) -> int:
        async with aiohttp.ClientSession() as session:
            kwargs: dict[str, Any] = {"data": doc} if isinstance(doc, bytes) else {"json": doc}
            async with session.post(self.server.url + "/sns", **kwargs) as response:
                return response.status

    def suppressed(self) -> list[str]:
        path = self.server.config.suppress
        return path.read_text().splitlines() if path.exists() else []

    def events(self) -> list[tuple[str, str, str | None]]:
        with sqlite3.connect(self.server.config.events) as conn:
            return conn.execute("SELECT kind, email, subtype FROM events ORDER BY id").fetchall()


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[Peer]:
    async with CertHost(self_signed(KEY)) as host:
        config = EventsConfig(
            path=tmp_path / "events.yaml",
            listen=("127.0.0.1", 0),
            topics=(TOPIC,),
            suppress=tmp_path / "suppressed.txt",
            events=tmp_path / "events.sqlite",
            cert_hosts=("127.0.0.1:*",),
        )
        fetch = https_fetcher(host.client_context())
        async with EventsServer(config, port=0, fetch=fetch) as server:
            yield Peer(server, host, Signer(host.cert_url, KEY), tmp_path)


async def test_permanent_bounce_v2_and_complaint_v1_are_suppressed(peer: Peer) -> None:
    doc = peer.signer.notification(bounce("m-1", "ana@example.org", "Bob@Example.ORG"), version="2")
    assert await peer.post(doc) == 200
    doc = peer.signer.notification(complaint("m-2", "carl@example.org"), version="1")
    assert await peer.post(doc) == 200
    assert peer.suppressed() == ["ana@example.org", "Bob@Example.ORG", "carl@example.org"]
    assert [e[:2] for e in peer.events()] == [
        ("bounce", "ana@example.org"),
        ("bounce", "Bob@Example.ORG"),
        ("complaint", "carl@example.org"),
    ]
    assert peer.host.cert_fetches == 1  # cached


async def test_transient_bounce_is_counted_not_suppressed(peer: Peer) -> None:
    doc = peer.signer.notification(bounce("m-3", "dana@example.org", kind="Transient"))
    assert await peer.post(doc) == 200
    assert peer.suppressed() == []
    assert peer.events() == [("bounce", "dana@example.org", "Transient")]
    assert peer.server.stats["bounce:Transient"] == 1


async def test_event_publishing_shape_and_redelivery(peer: Peer) -> None:
    doc = peer.signer.notification(complaint("m-4", "eve@example.org", shape="event"))
    assert await peer.post(doc) == 200
    assert await peer.post(doc) == 200  # SNS retries: nothing twice
    assert peer.suppressed() == ["eve@example.org"]
    assert len(peer.events()) == 1
    again = peer.signer.notification(bounce("m-5", "EVE@example.org"))
    assert await peer.post(again) == 200
    assert peer.suppressed() == ["eve@example.org"]  # same address, other case


async def test_altered_foreign_and_elsewhere_are_refused_and_change_nothing(peer: Peer) -> None:
    good = peer.signer.notification(bounce("m-6", "fay@example.org"))
    altered = {**good, "Message": good["Message"].replace("fay@", "gus@")}
    foreign = peer.signer.notification(bounce("m-7", "hal@example.org"), topic=OTHER_TOPIC)
    elsewhere = Signer("https://evil.example/SimpleNotificationService-x.pem", KEY).notification(
        bounce("m-8", "ivy@example.org")
    )
    plain_http = Signer(peer.host.cert_url.replace("https:", "http:"), KEY).notification(
        bounce("m-9", "jo@example.org")
    )
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = Signer(peer.host.cert_url, other_key).notification(bounce("m-10", "kim@x.org"))
    for doc in (altered, foreign, elsewhere, plain_http, forged):
        assert await peer.post(doc) == 403
    assert await peer.post(b"not json") == 400
    assert await peer.post({"Type": "Nope"}) == 400
    assert peer.suppressed() == []
    assert peer.events() == []
    assert peer.host.cert_fetches <= 1  # never fetched from elsewhere
    refused = {k: v for k, v in peer.server.stats.items() if k.startswith("refused:")}
    assert refused == {
        "refused:signature": 2,
        "refused:topic": 1,
        "refused:cert_url": 2,
        "refused:json": 1,
        "refused:type": 1,
    }


async def test_subscription_is_confirmed_through_subscribe_url(peer: Peer) -> None:
    doc = peer.signer.confirmation(peer.host.base + "/confirm?Token=tok-123")
    assert await peer.post(doc) == 200
    assert peer.host.confirmed == ["tok-123"]
    bad = peer.signer.confirmation("https://evil.example/confirm?Token=tok-123")
    assert await peer.post(bad) == 403
    assert peer.host.confirmed == ["tok-123"]


def test_config_file_is_validated_with_lines_and_suggestions(tmp_path: Path) -> None:
    path = tmp_path / "events.yaml"
    path.write_text(f"listen: 127.0.0.1:9000\ntopic: [{TOPIC}]\nsuppress: s.txt\n")
    with pytest.raises(ConfigError) as info:
        EventsConfig.from_file(path)
    assert "events.yaml:2: key 'topic': unknown key; did you mean 'topics'?" in str(info.value)
    path.write_text("topics: [nope]\nsuppress: s.txt\ncert_hosts: []\n")
    with pytest.raises(ConfigError) as info:
        EventsConfig.from_file(path)
    text = str(info.value)
    assert "events.yaml:1: key 'topics[0]': must be an SNS topic ARN" in text
    assert "events.yaml:3: key 'cert_hosts'" in text
    path.write_text(f"topics: [{TOPIC}]\nsuppress: s.txt\n")
    config = EventsConfig.from_file(path)
    assert config.listen == ("127.0.0.1", 8026)
    assert config.cert_hosts == ("sns.*.amazonaws.com",)
    assert config.events == tmp_path / "events.events.sqlite"
    assert config.suppress == tmp_path / "s.txt"


def test_cli_config_error_exits_2_without_traceback(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from bulkmail.cli import main

    path = tmp_path / "events.yaml"
    path.write_text("listen: nowhere\n")
    assert main(["events", str(path)]) == 2
    err = capsys.readouterr().err
    assert "events.yaml:1: key 'listen': must be HOST:PORT" in err
    assert "Traceback" not in err


async def test_size_and_header_checks(peer: Peer) -> None:
    assert await peer.post(b"{" + b" " * (300 * 1024) + b"}") == 413
    doc = peer.signer.notification(bounce("m-11", "lee@example.org"))
    async with aiohttp.ClientSession() as session:
        headers = {"x-amz-sns-message-type": "SubscriptionConfirmation"}
        async with session.post(peer.server.url, json=doc, headers=headers) as response:
            assert response.status == 400
        async with session.get(peer.server.url) as response:
            assert response.status == 405
    assert peer.suppressed() == [] and peer.events() == []


async def test_serves_https_with_its_own_certificate(tmp_path: Path) -> None:
    import ssl

    import trustme

    ca = trustme.CA()
    served = ca.issue_cert("127.0.0.1")
    served.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    served.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    (tmp_path / "events.yaml").write_text(
        f"listen: 127.0.0.1:0\ntopics: [{TOPIC}]\nsuppress: s.txt\ncert_hosts: ['127.0.0.1:*']\n"
        "tls: {cert: cert.pem, key: key.pem}\n"
    )
    config = EventsConfig.from_file(tmp_path / "events.yaml")
    async with CertHost(self_signed(KEY)) as host:
        fetch = https_fetcher(host.client_context())
        async with EventsServer(config, fetch=fetch) as server, aiohttp.ClientSession() as s:
            assert server.url.startswith("https://127.0.0.1:")
            client = ssl.create_default_context()
            ca.configure_trust(client)
            doc = Signer(host.cert_url, KEY).notification(complaint("m-12", "mo@example.org"))
            async with s.post(server.url, json=doc, ssl=client) as response:
                assert response.status == 200
    assert (tmp_path / "s.txt").read_text() == "mo@example.org\n"


def test_a_csv_suppression_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "events.yaml"
    path.write_text(f"topics: [{TOPIC}]\nsuppress: s.csv\n")
    with pytest.raises(ConfigError, match="events.yaml:2: key 'suppress': must be a plain text"):
        EventsConfig.from_file(path)


async def test_unsubscribe_confirmation_is_logged_not_fetched(peer: Peer) -> None:
    doc = peer.signer.confirmation(
        peer.host.base + "/confirm?Token=tok-9", kind="UnsubscribeConfirmation"
    )
    assert await peer.post(doc) == 200
    assert peer.server.stats["unsubscribed"] == 1
    assert peer.host.confirmed == []  # resubscribing is a person's decision
    forged = {**doc, "Token": "other"}
    assert await peer.post(forged) == 403
