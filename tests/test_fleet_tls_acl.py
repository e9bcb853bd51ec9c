"""The fleet through ``rediss://`` as an ACL user with only the rights the README lists.

valkey-server from the wheel is built without TLS, so TLS is terminated in front of it by a
small forwarder with a certificate made by ``openssl`` (as stunnel, or a managed service's
in-transit encryption, looks to a client): the worker's connections verify that
certificate (``?ssl_ca_certs=``) and log in as a user that may touch ``bulkmail:*`` keys
only, with the default user switched off, so nothing here can work by accident. The
proxy's Redis queue is checked under the same rule (plus ``INCRBY``).
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis

from bulkmail.api import load_campaign
from bulkmail.fleet.enqueue import enqueue_campaign
from bulkmail.fleet.link import Link
from bulkmail.fleet.status import campaign_status, export_results
from bulkmail.fleet.worker import WorkerOptions, run_worker
from bulkmail.servers.sandbox import SANDBOX_AWS, Sandbox
from tests.fleet_conftest import ValkeyServer
from tests.test_fleet import write_campaign

#: The user of README "Many workers": these categories and commands, bulkmail's keys only.
ACL_RULE = (
    "on >w0rker-pass ~bulkmail:* resetchannels -@all +@stream +@hash +@set +@sortedset "
    "+@transaction +evalsha +script|load +time +expire +pexpire +exists +ping +hello "
    "+client|setinfo"
)


def _certificate(folder: Path) -> tuple[Path, Path]:
    assert shutil.which("openssl"), "openssl makes the test certificate: run make install-test"
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
         "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return key, cert


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


@pytest.fixture
async def tls_front(valkey: ValkeyServer, tmp_path: Path) -> AsyncIterator[tuple[int, Path]]:
    """A TLS listener on 127.0.0.1 forwarding to the server's plain port."""
    key, cert = _certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        back_reader, back_writer = await asyncio.open_connection("127.0.0.1", valkey.port)
        await asyncio.gather(_pipe(reader, back_writer), _pipe(back_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    async with server:
        yield server.sockets[0].getsockname()[1], cert


@pytest.fixture
def acl_user(valkey: ValkeyServer) -> None:
    admin = redis.Redis.from_url(valkey.url)
    admin.execute_command("ACL", "SETUSER", "worker", *ACL_RULE.split())
    admin.execute_command("ACL", "SETUSER", "default", "off")  # only our user can log in
    admin.close()


async def test_a_worker_sends_through_tls_as_an_acl_user(
    valkey: ValkeyServer,
    tls_front: tuple[int, Path],
    acl_user: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", SANDBOX_AWS.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SANDBOX_AWS.secret_access_key)
    port, cert = tls_front
    url = f"rediss://worker:w0rker-pass@127.0.0.1:{port}/0?ssl_ca_certs={cert}"
    campaign = load_campaign(write_campaign(tmp_path, 120))
    link = Link.from_url(url)
    try:
        await enqueue_campaign(link, campaign, chunk=25)
        async with Sandbox() as sandbox:
            options = WorkerOptions(exit_when_done=True, endpoint=sandbox.url, visibility=3)
            summaries = await asyncio.wait_for(run_worker(link, options, asyncio.Event()), 60)
            sent_to = Counter(a.to[0] for a in sandbox.accepted)
        status = await campaign_status(link, campaign.name)
        written = await export_results(link, campaign.name, tmp_path / "results.jsonl")
    finally:
        await link.close()
    assert summaries[campaign.name].counts["sent"] == 120
    assert len(sent_to) == 120 and set(sent_to.values()) == {1}
    assert status.counts["sent"] == 120 and written == 123
    assert "w0rker-pass" not in link.display


async def test_the_plain_port_refuses_the_default_user(
    valkey: ValkeyServer, acl_user: None
) -> None:
    """The check above is real: without the user's password nothing is allowed."""
    link = Link.from_url(valkey.url)
    link.patience = 0.5
    with pytest.raises(Exception, match="(?i)auth|NOPERM|disabled|WRONGPASS|denied"):
        await link.call(lambda r: r.ping())
    await link.close()


async def test_the_proxy_queues_as_an_acl_user_with_incrby(
    valkey: ValkeyServer, tmp_path: Path
) -> None:
    """The proxy's ``queue:`` under the same rule plus ``+incrby`` (its accept sequence);
    ``CONFIG GET`` is refused and only skips the fsync check."""
    from tests._proxy_helpers import client, recorded, running

    admin = redis.Redis.from_url(valkey.url)
    admin.execute_command("ACL", "SETUSER", "proxy", *ACL_RULE.split(), "+incrby")
    admin.execute_command("ACL", "SETUSER", "default", "off")
    admin.close()
    url = f"redis://proxy:w0rker-pass@127.0.0.1:{valkey.port}/0"
    async with running(tmp_path, queue=url) as r:
        v2 = client("sesv2", r.url)
        for i in range(5):
            rcpt = [f"p{i}-{j}@x.org" for j in range(4)]
            await asyncio.to_thread(
                v2.send_email,
                FromEmailAddress="news@example.com",
                Destination={"ToAddresses": rcpt},
                Content={"Simple": {"Subject": {"Data": "Hi"}, "Body": {"Text": {"Data": "x"}}}},
            )
        assert await recorded(r, 20)
        sent = Counter(a.to[0] for a in r.sandbox.accepted)
    assert len(sent) == 20 and set(sent.values()) == {1}
