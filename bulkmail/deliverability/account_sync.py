"""``bulkmail suppress sync``: the SESv2 account suppression list <-> the local file, both ways.

Reads every page of ``ListSuppressedDestinations`` (``GET /v2/email/suppression/addresses``,
``NextToken``), appends the addresses the file lacks, then ``PutSuppressedDestination``
(``PUT /v2/email/suppression/addresses``) for each address of the file the account lacks,
with ``reason`` (the file carries none; a complaint recorded in the event store is sent as
``COMPLAINT``). Requests are signed with bulkmail's own SigV4 and sent over its HTTP pool;
a throttled or 5xx answer is retried with backoff.

>>> result = await sync_suppression(Path("suppressed.txt"), credentials=creds,
...                                 region="eu-west-1")                 # doctest: +SKIP
>>> result.pulled, result.pushed                                      # doctest: +SKIP
(12, 3)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import orjson

from bulkmail.deliverability.store import EventStore
from bulkmail.deliverability.suppression import SuppressionFile
from bulkmail.errors import FatalProviderError
from bulkmail.providers.errors import scrub
from bulkmail.providers.http import HttpError, HttpPool
from bulkmail.signing.sigv4 import AwsCredentials, SigV4Signer

PATH = "/v2/email/suppression/addresses"
_RETRY = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class SyncResult:
    """``pulled``: added to the file; ``pushed``: added to the account; totals after.

    >>> SyncResult(pulled=2, pushed=1, account=3, local=3).pushed
    1
    """

    pulled: int
    pushed: int
    account: int
    local: int


class _Client:
    def __init__(
        self,
        pool: HttpPool,
        signer: SigV4Signer,
        base: str,
        clock: Callable[[], float],
        attempts: int,
    ) -> None:
        self._pool, self._signer, self._base, self._clock = pool, signer, base, clock
        self._attempts = attempts
        creds = signer.credentials
        self._secrets = (creds.secret_access_key, creds.session_token)

    async def call(self, method: str, path: str, query: str, body: bytes) -> dict[str, object]:
        headers = {"Content-Type": "application/json"} if body else {}
        for attempt in range(1, self._attempts + 1):
            signed = self._signer.sign(
                method, self._pool.host_header, self._base + path, query, headers, body,
                self._clock(),
            )  # fmt: skip
            target = f"{path}?{query}" if query else path
            try:
                response = await self._pool.request(
                    method, target, [*headers.items(), *signed.items()], body
                )
            except HttpError as exc:
                if attempt == self._attempts:
                    raise FatalProviderError(f"SES cannot be reached: {exc}") from None
                await asyncio.sleep(min(0.2 * 2**attempt, 5))
                continue
            if response.status == 200:
                doc = orjson.loads(response.body or b"{}")
                return doc if isinstance(doc, dict) else {}
            code = (response.headers.get("x-amzn-ErrorType") or "").split(":")[0] or "error"
            if response.status in _RETRY and attempt < self._attempts:
                await asyncio.sleep(min(0.2 * 2**attempt, 5))
                continue
            try:
                text = str(orjson.loads(response.body).get("message", ""))
            except (orjson.JSONDecodeError, AttributeError):
                text = ""
            message = scrub(text, self._secrets) or ""
            raise FatalProviderError(
                f"SES refused {method} {path}: {response.status} {code}: {message}", code=code
            )
        raise AssertionError("unreachable")  # pragma: no cover


async def sync_suppression(
    file: Path,
    *,
    credentials: AwsCredentials,
    region: str,
    endpoint: str | None = None,
    reason: str = "BOUNCE",
    events: Path | None = None,
    clock: Callable[[], float] = time.time,
    attempts: int = 5,
) -> SyncResult:
    """Merge the account list and ``file`` both ways; see the module docstring."""
    if reason not in ("BOUNCE", "COMPLAINT"):
        raise ValueError("reason must be BOUNCE or COMPLAINT")
    url = (endpoint or f"https://email.{region}.amazonaws.com").rstrip("/")
    signer = SigV4Signer(credentials, region=region, service="ses")
    local = SuppressionFile(file)
    async with HttpPool(url, max_connections=4) as pool:
        client = _Client(pool, signer, urlsplit(url).path, clock, attempts)
        remote: dict[str, str] = {}
        token: str | None = None
        while True:
            query = "PageSize=1000" + (f"&NextToken={quote(token, safe='')}" if token else "")
            page = await client.call("GET", PATH, query, b"")
            for item in page.get("SuppressedDestinationSummaries") or []:  # type: ignore[attr-defined]
                if isinstance(item, dict) and isinstance(item.get("EmailAddress"), str):
                    remote.setdefault(item["EmailAddress"].lower(), item["EmailAddress"])
            next_token = page.get("NextToken")
            if not isinstance(next_token, str) or not next_token:
                break
            token = next_token
        pulled = local.add(remote.values())
        have = local.addresses()
        complained = _complained(events)
        missing = sorted(set(have) - set(remote))
        for key in missing:
            why = "COMPLAINT" if key in complained else reason
            body = orjson.dumps({"EmailAddress": have[key], "Reason": why})
            await client.call("PUT", PATH, "", body)
    return SyncResult(
        pulled=len(pulled), pushed=len(missing), account=len(remote) + len(missing), local=len(have)
    )


def _complained(events: Path | None) -> set[str]:
    if events is None or not events.is_file():
        return set()
    with EventStore.open(events, readonly=True) as store:
        return {email.lower() for kind, _, email, _ in store.rows() if kind == "complaint"}


__all__ = ["SyncResult", "sync_suppression"]
