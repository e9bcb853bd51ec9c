"""Signed SNS notifications per second through EventsServer (every one a permanent bounce)."""

import asyncio
import tempfile
import time
from pathlib import Path

import aiohttp
from cryptography.hazmat.primitives.asymmetric import rsa

from bulkmail.deliverability.config import EventsConfig
from bulkmail.servers.events import EventsServer, https_fetcher
from tests._sns import TOPIC, CertHost, Signer, bounce, self_signed


async def main() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    tmp = Path(tempfile.mkdtemp())
    async with CertHost(self_signed(key)) as host:
        cfg = EventsConfig(
            path=tmp / "e.yaml",
            listen=("127.0.0.1", 0),
            topics=(TOPIC,),
            suppress=tmp / "s.txt",
            events=tmp / "e.sqlite",
            cert_hosts=("127.0.0.1:*",),
        )
        signer = Signer(host.cert_url, key)
        docs = [
            signer.notification(bounce(f"m{i}", f"u{i}@x.org"), version="2") for i in range(2000)
        ]
        async with (
            EventsServer(cfg, port=0, fetch=https_fetcher(host.client_context())) as server,
            aiohttp.ClientSession() as s,
        ):
            sem = asyncio.Semaphore(16)

            async def post(doc):
                async with sem, s.post(server.url, json=doc) as r:
                    assert r.status == 200

            await post(docs[0])
            t = time.perf_counter()
            await asyncio.gather(*(post(d) for d in docs[1:]))
            dt = time.perf_counter() - t
    print(
        f"{(len(docs) - 1) / dt:.0f} notifications/s; suppressed: "
        f"{len((tmp / 's.txt').read_text().splitlines())}"
    )


asyncio.run(main())
