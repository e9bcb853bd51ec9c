"""Shared by the proxy tests: a config file, a running proxy over the sandbox, SDK clients."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bulkmail.proxy import Proxy, ProxyConfig
from bulkmail.servers.sandbox import SANDBOX_AWS, Sandbox

KEY_ID = "AKIDPROXYCLIENT0001"
SECRET = "proxy-client-secret-Wq9vXz3kLmN0pQ"
OTHER_ID = "AKIDPROXYCLIENT0002"
OTHER_SECRET = "other-client-secret-Yt5rEe2wQ"


def write_config(
    tmp: Path, *, rate: str = "auto", extra: str = "", name: str = "ses", queue: str | None = None
) -> Path:
    """A PROXY.yaml in ``tmp``: the SQLite journal, or ``queue`` (a ``queue:`` value)."""
    provider = {
        "ses": "{name: ses, region: us-east-1}",
        "sesv1": "{name: ses, region: us-east-1, api: v1}",
        "directmail": "{name: directmail, region: cn-hangzhou}",
    }[name]
    path = tmp / "proxy.yaml"
    path.write_text(
        "listen: 127.0.0.1:0\n"
        "clients:\n"
        f"  - access_key_id: {KEY_ID}\n"
        "    secret_env: PROXY_TEST_SECRET\n"
        "    identities: [example.com]\n"
        f"  - access_key_id: {OTHER_ID}\n"
        "    secret_env: PROXY_TEST_OTHER\n"
        "    identities: [news@other.example]\n"
        f"provider: {provider}\n"
        f"rate: {rate}\n"
        + ("journal: proxy.journal.sqlite\n" if queue is None else f"queue: {queue}\n")
        + "results: proxy.results.jsonl\n"
        + extra
    )
    return path


ENV = {"PROXY_TEST_SECRET": SECRET, "PROXY_TEST_OTHER": OTHER_SECRET}


@dataclass
class Running:
    proxy: Proxy
    sandbox: Sandbox

    @property
    def url(self) -> str:
        return self.proxy.url


@contextlib.asynccontextmanager
async def running(
    tmp: Path,
    *,
    quota: float | None = 500,
    rate: str = "auto",
    name: str = "ses",
    extra: str = "",
    outbox: bool = True,
    queue: str | None = None,
    **kw: Any,
) -> AsyncIterator[Running]:
    config = ProxyConfig.from_file(
        write_config(tmp, rate=rate, name=name, extra=extra, queue=queue), environ=ENV
    )
    folder = tmp / "outbox" if outbox else None
    async with Sandbox(quota=quota, outbox=folder, **kw) as sandbox:
        from bulkmail.servers.sandbox import SANDBOX_ALIBABA

        creds = SANDBOX_ALIBABA if name == "directmail" else SANDBOX_AWS
        async with Proxy(config, endpoint=sandbox.url, credentials=creds, grace=2) as proxy:
            yield Running(proxy, sandbox)


def client(
    service: str, url: str, key: str = KEY_ID, secret: str = SECRET, attempts: int = 5
) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(
            retries={"mode": "standard", "max_attempts": attempts}, max_pool_connections=16
        ),
    )


async def until(predicate: Any, timeout: float = 30.0) -> bool:
    """Poll ``predicate`` (bounded); True once it holds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return bool(predicate())


async def recorded(r: Running, sent: int, timeout: float = 30.0) -> bool:
    """Wait (bounded) until the proxy's journal has ``sent`` recipients recorded sent."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    assert r.proxy.queue is not None
    while loop.time() < end:
        if (await r.proxy.queue.counts())["sent"] >= sent:
            return True
        await asyncio.sleep(0.05)
    return False
