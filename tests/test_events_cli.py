"""`bulkmail events EVENTS.yaml` as a person runs it: a process, a port, Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
from cryptography.hazmat.primitives.asymmetric import rsa

from tests._sns import TOPIC, CertHost, Signer, bounce, self_signed
from tests.conftest import free_port


async def test_the_command_serves_until_ctrl_c(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    port = free_port()
    (tmp_path / "events.yaml").write_text(
        f"listen: 127.0.0.1:{port}\ntopics: [{TOPIC}]\nsuppress: suppressed.txt\n"
        "cert_hosts: ['127.0.0.1:*']\n"
    )
    async with CertHost(self_signed(key)) as host:
        host.ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        env = {**os.environ, "SSL_CERT_FILE": str(tmp_path / "ca.pem")}  # trust the cert host
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bulkmail", "events", str(tmp_path / "events.yaml"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            first = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert f"SNS endpoint at http://127.0.0.1:{port}" in first.decode()
            doc = Signer(host.cert_url, key).notification(bounce("m-1", "ana@example.org"))
            async with (
                aiohttp.ClientSession() as session,
                session.post(f"http://127.0.0.1:{port}/", json=doc) as response,
            ):
                assert response.status == 200
        finally:
            proc.send_signal(signal.SIGINT)
            _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert "Traceback" not in err.decode()
    assert (tmp_path / "suppressed.txt").read_text() == "ana@example.org\n"
    assert (tmp_path / "events.events.sqlite").exists()
