"""The SES API the proxy serves: authenticate, fan out, accept durably, answer as SES does.

Every request is SigV4-verified against the keys the proxy issued (the same checks and error
codes as SES: :func:`bulkmail.servers._ses.check_sigv4`) before anything else is looked at;
nothing is queued for a request that does not verify. Then:

- v1 Query (``POST /``): ``SendEmail``, ``SendRawEmail``, ``SendTemplatedEmail``,
  ``SendBulkTemplatedEmail``, ``GetSendQuota``;
- v2 REST: ``POST /v2/email/outbound-emails`` (Simple, Raw, Template),
  ``POST /v2/email/outbound-bulk-emails``, ``GET /v2/email/account``;
- ``GET /bulkmail/v1/messages/{id}``: each recipient's status and upstream message id
  (only to the client that sent it).

A send is refused with ``MessageRejected`` when its From is outside the client's identities,
and with SES's throttling error when the backlog is over its bound (the SDK backs off).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parseaddr
from urllib.parse import parse_qsl, unquote

import orjson

from bulkmail.proxy.fanout import Envelope, bulk_v1, bulk_v2, check_addresses, envelope_for
from bulkmail.proxy.http import Request
from bulkmail.proxy.store import ProxyQueue
from bulkmail.servers import _ses as ses
from bulkmail.servers._wire import ApiError, Quota, Reply
from bulkmail.signing.sigv4 import AwsCredentials

log = logging.getLogger("bulkmail.proxy")

V2_BULK = "/v2/email/outbound-bulk-emails"
STATUS_PREFIX = "/bulkmail/v1/messages/"
GET_BODY_LIMIT = 64 * 1024
_INVALID_ACTION = (
    "The action or operation requested is invalid. Verify that the action is typed correctly."
)


@dataclass(frozen=True, slots=True)
class Client:
    """A key the proxy issued: who may send, from which identities, with what share.

    >>> Client(AwsCredentials("AKID1", "s3cret"), ("example.com",)).may_send("a@example.com")
    True
    """

    key: AwsCredentials
    identities: tuple[str, ...]
    share: float = 1.0

    def may_send(self, address: str) -> bool:
        address = address.strip().lower()
        domain = address.rpartition("@")[2]
        return any(i.lower() in (address, domain) for i in self.identities)

    def __repr__(self) -> str:  # never the secret
        return f"Client({self.key.access_key_id!r}, identities={self.identities!r})"


@dataclass(slots=True)
class Usage:
    """What the quota actions report: the upstream quota and the proxy's use of it."""

    max_send_rate: float
    max_24h: float


class ProxyService:
    """The request handler :class:`~bulkmail.proxy.http.HttpServer` calls.

    >>> service = ProxyService([client], queue, Usage(14.0, 50000.0))  # doctest: +SKIP
    """

    def __init__(
        self,
        clients: Sequence[Client],
        queue: ProxyQueue,
        usage: Usage,
        *,
        max_backlog: int = 1_000_000,
        region: str = "us-east-1",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.clients = {c.key.access_key_id: c for c in clients}
        self._keys: Mapping[str, AwsCredentials] = {k: c.key for k, c in self.clients.items()}
        self.queue = queue
        self.usage = usage
        self.max_backlog = max_backlog
        self.region = region.upper()
        self._clock = clock
        self.stats = {"accepted": 0, "recipients": 0, "refused": 0, "throttled": 0}

    # -- the Handler protocol ----------------------------------------------------------------

    def body_limit(self, method: str, path: str) -> int:
        if method == "GET":
            return GET_BODY_LIMIT
        return ses.body_limit(path)

    def error(self, path: str, error: ApiError) -> Reply:
        if path.startswith("/v2/") or path.startswith(STATUS_PREFIX):
            return ses.v2_error(error, ses.new_request_id())
        return ses.v1_error(error, ses.new_request_id())

    async def handle(self, request: Request) -> Reply:
        try:
            return await self._route(request)
        except ApiError as err:
            self.stats["throttled" if err.code in ("Throttling", "TooManyRequestsException")
                       else "refused"] += 1  # fmt: skip
            log.warning(
                "%s: %s %r -> %d %s", request.peer, request.method, request.path[:100],
                err.status, err.code,
            )  # fmt: skip
            return self.error(request.path, err)

    # -- routing -----------------------------------------------------------------------------

    async def _route(self, request: Request) -> Reply:
        path = request.path
        v2 = path.startswith("/v2/") or path.startswith(STATUS_PREFIX)
        client = self._authenticate(request, v2)
        request_id = ses.new_request_id()
        if path == ses.V2_SEND and request.method == "POST":
            send = ses.parse_v2_send(request.body)
            mids = await self._accept(client, "sesv2", [envelope_for(send)], v2=True)
            return ses.v2_sent(mids[0], request_id)
        if path == V2_BULK and request.method == "POST":
            mids = await self._accept(client, "sesv2", bulk_v2(request.body), v2=True)
            doc = {"BulkEmailEntryResults": [{"Status": "SUCCESS", "MessageId": m} for m in mids]}
            return Reply(
                200, orjson.dumps(doc), "application/json", {"x-amzn-RequestId": request_id}
            )
        if path == ses.V2_ACCOUNT and request.method == "GET":
            return ses.v2_account(await self._quota(), request_id)
        if path.startswith(STATUS_PREFIX) and request.method == "GET":
            return await self._status(client, unquote(path[len(STATUS_PREFIX) :]), request_id)
        if path == "/" and request.method == "POST":
            return await self._v1(client, request, request_id)
        raise ApiError(404, "UnknownOperationException", "Unknown operation")

    def _authenticate(self, request: Request, v2: bool) -> Client:
        key = ses.check_sigv4(
            v2=v2,
            method=request.method,
            path=request.path,
            query=request.query,
            headers=request.headers,
            body=request.body,
            credentials=self._keys,
            now=self._clock(),
        )
        return self.clients[key.access_key_id]

    async def _v1(self, client: Client, request: Request, request_id: str) -> Reply:
        try:
            text = request.body.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, "InvalidParameterValue", "The request body is not UTF-8.") from None
        params = dict(parse_qsl(request.query, keep_blank_values=True))
        params.update(parse_qsl(text, keep_blank_values=True))
        action = params.get("Action", "")
        if action == "GetSendQuota":
            return ses.v1_quota(await self._quota(), request_id)
        if action == "SendBulkTemplatedEmail":
            mids = await self._accept(client, "sesv1", bulk_v1(params), v2=False)
            return ses.v1_bulk_sent(mids, request_id)
        if action in ses.V1_SEND_ACTIONS:
            envelope = envelope_for(ses.parse_v1_send(params))
            mids = await self._accept(client, "sesv1", [envelope], v2=False)
            return ses.v1_sent(action, mids[0], request_id)
        raise ApiError(400, "InvalidAction", _INVALID_ACTION)

    # -- accept ------------------------------------------------------------------------------

    async def _accept(
        self, client: Client, api: str, envelopes: list[Envelope], *, v2: bool
    ) -> list[str]:
        check_addresses(envelopes, v2=v2)
        for env in envelopes:
            for address in {env.sender, str(env.spec.get("from") or "")} - {""}:
                email = parseaddr(address)[1] or address
                if not client.may_send(email):
                    raise ApiError(
                        400,
                        "MessageRejected",
                        "Email address is not verified. The following identities failed "
                        f"the check in region {self.region}: {email[:200]}",
                    )
        count = sum(len(env.recipients) for env in envelopes)
        if self.queue.backlog + count > self.max_backlog:
            raise ses.throttled(v2)
        mids = await self.queue.accept(client.key.access_key_id, api, envelopes)
        self.stats["accepted"] += len(mids)
        self.stats["recipients"] += count
        return mids

    async def _quota(self) -> Quota:
        return Quota(
            max_send_rate=self.usage.max_send_rate,
            max_24h=self.usage.max_24h,
            sent_24h=float(await self.queue.sent_last_24h()),
        )

    async def _status(self, client: Client, mid: str, request_id: str) -> Reply:
        doc = await self.queue.status(mid, client.key.access_key_id)
        if doc is None:
            raise ApiError(404, "NotFoundException", "Message not found.")
        return Reply(200, orjson.dumps(doc), "application/json", {"x-amzn-RequestId": request_id})


Serve = Callable[[Request], Awaitable[Reply]]

__all__ = ["Client", "ProxyService", "Usage"]
