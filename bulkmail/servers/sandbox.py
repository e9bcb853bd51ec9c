"""A local Amazon SES and Alibaba DirectMail look-alike: what ``bulkmail sandbox`` serves,
what ``endpoint: sandbox`` starts in-process, and the peer the durability tests break.

It speaks, on one port:

- SESv2: ``POST /v2/email/outbound-emails`` (Simple, Raw and Template content) and
  ``GET /v2/email/account``, JSON, errors as ``{"message"}`` + ``x-amzn-ErrorType``;
- SESv2 ``POST /v2/email/outbound-bulk-emails`` (``SendBulkEmail``, stored template): each
  entry is accepted or refused on its own and answered in ``BulkEmailEntryResults``;
- SES v1 (Query API): ``POST /`` with ``Action=SendEmail | SendRawEmail |
  SendTemplatedEmail | GetSendQuota``, XML answers and ``ErrorResponse``;
- DirectMail RPC: ``POST /`` (or ``GET /?...``) with ``Action=SingleSendMail`` and the common
  signature-1.0 parameters; JSON answers.

``POST /`` is SES v1 when it carries an ``Authorization: AWS4-HMAC-SHA256`` header (or looks
like nothing else) and DirectMail when its parameters carry ``SignatureVersion``.

Every request is checked as the real service checks it (SigV4 or RPC signature, clock skew,
DirectMail nonces) and refused with the real error code and message. Sends count their
recipients (To + Cc + Bcc) against a strict 1-second sliding window (``quota``) and a 24-hour
total (``daily_quota``). Faults (:class:`Faults`) are drawn per send from a seeded RNG, so a
run is reproducible. This module serves the wire (routing, signatures, parsing, answers);
:mod:`bulkmail.servers._account` holds what a send meets once parsed (faults, quotas,
acceptance). Where the codes come from:

- SES quota errors: "Errors related to the sending quotas for your Amazon SES account"
  (docs.aws.amazon.com/ses/latest/dg/manage-sending-quotas-errors.html) and the AWS blog
  "How to handle a 'Throttling - Maximum sending rate exceeded' error" (Query API: code
  ``Throttling``, message ``Maximum sending rate exceeded.``);
- SigV4 errors: the AWS "Common Errors" pages (IncompleteSignature 400,
  InvalidClientTokenId 403, MissingAuthenticationToken 403); SignatureDoesNotMatch 403 and its
  message, and the v1 XML envelope with ``<Type>Sender</Type>``, from SES answers quoted in
  n8n-io/n8n#974 and nodemailer/nodemailer#55; v1 ``InvalidClientTokenId`` and v2
  ``UnrecognizedClientException`` ("The security token included in the request is
  invalid.") from django-ses/django-ses#283; v2 ``MissingAuthenticationTokenException``
  ("Missing Authentication Token") from putyourlightson/craft-amazon-ses#15; the
  "Signature expired: ... is now earlier than ... (... - 5 min.)" wording from
  boto/botocore#3587 and remind101/logspout-kinesis#21;
- DirectMail: the Direct Mail error code table (alibabacloud.com/help/doc-detail/29447.htm),
  the OpenAPI error codes (help.aliyun.com/en/document_detail/434846.html:
  ``InvalidTimeStamp.Expired``, ``InvalidAccessKeyId.NotFound``, ``Missing{Name}``), and the
  ``SignatureDoesNotMatch`` body with its echoed string-to-sign, ``HostId`` and ``Recommend``
  from dromara/SMS4J#34.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from aiohttp import web

from bulkmail.servers import _directmail as dm
from bulkmail.servers import _ses as ses
from bulkmail.servers._account import Accepted, Account, Faults
from bulkmail.servers._aiohttp import HTTP_LOG, large_requests, listening_socket, respond
from bulkmail.servers._suppression import PATH as SUPPRESSION_PATH
from bulkmail.servers._suppression import SuppressionList
from bulkmail.servers._wire import ApiError, Reply, SendRequest
from bulkmail.signing.aliyun import AlibabaCredentials
from bulkmail.signing.sigv4 import AwsCredentials

SANDBOX_AWS = AwsCredentials("AKIASANDBOX0EXAMPLE", "sandbox/secret/key/EXAMPLEKEY0000000000000")
SANDBOX_ALIBABA = AlibabaCredentials("LTAIsandbox0example", "sandboxSecretExample0000000000")

_BODY_TIMEOUT = 60.0  # seconds for a declared body to arrive
log = logging.getLogger("bulkmail.sandbox")


_Parsed = TypeVar("_Parsed", SendRequest, list[SendRequest])


class _Dropped(Exception):
    """The connection was closed on purpose; there is nothing to answer."""


class Sandbox:
    """The local SES/DirectMail server. Use it as an async context manager.

    >>> async def demo() -> None:  # doctest: +SKIP
    ...     async with Sandbox(quota=100, outbox=Path("outbox")) as sandbox:
    ...         provider = SesProvider(credentials=SANDBOX_AWS, endpoint=sandbox.url)
    ...         ...  # send; then look at sandbox.accepted and sandbox.stats
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        quota: float | None = None,
        daily_quota: int | None = None,
        outbox: Path | None = None,
        faults: Faults | None = None,
        clock: Callable[[], float] = time.time,
        aws: AwsCredentials = SANDBOX_AWS,
        alibaba: AlibabaCredentials = SANDBOX_ALIBABA,
        record: bool = True,
    ) -> None:
        self._host = host
        self._port = port
        self._outbox = outbox
        self._faults = faults if faults is not None else Faults()
        # Validates quota and daily_quota; fills the stats and accepted below (same objects).
        self._account = Account(
            quota=quota,
            daily_quota=daily_quota,
            outbox=outbox,
            faults=self._faults,
            clock=clock,
            record=record,
        )
        self._clock = clock
        self._aws = aws
        self._alibaba = alibaba
        self._nonces = dm.NonceBook()
        self._runner: web.ServerRunner | None = None
        self._url = ""
        self.accepted: list[Accepted] = self._account.accepted
        self.suppression = SuppressionList()  # SESv2 account suppression list
        self.stats: dict[str, int] = self._account.stats

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` once started."""
        if not self._url:
            raise RuntimeError("the sandbox is not started")
        return self._url

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("the sandbox is already started")
        if self._outbox is not None:
            self._outbox.mkdir(parents=True, exist_ok=True)
        sock = listening_socket(self._host, self._port)
        port = sock.getsockname()[1]
        # aiohttp logs a malformed request with its traceback: one line is enough (and a
        # request line or header value is never repeated at more than debug level).
        server = web.Server(
            self._handle, access_log=None, logger=HTTP_LOG, request_factory=large_requests
        )
        faults = self._faults
        runner = web.ServerRunner(
            server, shutdown_timeout=1.0 + faults.slow_seconds + faults.latency
        )
        await runner.setup()
        site = web.SockSite(runner, sock)
        await site.start()
        self._runner = runner
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._url = f"http://{host}:{port}"

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- serving ---------------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path, _, query = request.raw_path.partition("?")
        api = "sesv2" if path.startswith("/v2/") else "sesv1"
        request_id = ses.new_request_id()
        limit = ses.body_limit(path)
        length = request.content_length or 0
        if length > limit:  # refuse before reading: never wait for 100 GB that may not come
            reply = self._error(api, ses.too_large(length, limit, v2=api == "sesv2"), request_id)
            return respond(reply, close=True)
        try:
            async with asyncio.timeout(_BODY_TIMEOUT):  # no extra task per request
                body = await request.read()
        except (TimeoutError, ConnectionError):
            log.warning("sandbox: %s %r: body not received; closed", request.method, path[:100])
            raise self._drop(request) from None
        try:
            try:
                if api == "sesv2":
                    reply = await self._sesv2(request, path, query, body, request_id)
                elif path == "/":
                    params = dict(parse_qsl(query, keep_blank_values=True))
                    if body:
                        params.update(
                            parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
                        )
                    authorization = request.headers.get("Authorization", "")
                    if authorization.startswith("AWS4-") or not dm.looks_like(params):
                        reply = await self._sesv1(request, query, body, params, request_id)
                    else:
                        api = "directmail"
                        request_id = dm.new_request_id()
                        reply = await self._directmail(request, params, request_id)
                else:
                    raise ApiError(404, "UnknownOperationException", "Unknown operation")
            except ApiError as err:
                reply = self._error(api, err, request_id)
        except _Dropped:
            return web.Response(status=204)  # never written: the transport is gone
        if self._faults.latency:
            await asyncio.sleep(self._faults.latency)
        return respond(reply)

    @staticmethod
    def _error(api: str, err: ApiError, request_id: str) -> Reply:
        if api == "sesv2":
            return ses.v2_error(err, request_id)
        if api == "directmail":
            return dm.error(err, request_id)
        return ses.v1_error(err, request_id)

    def _auth_failed(self, err: ApiError) -> ApiError:
        if err.code == "SignatureNonceUsed":
            self.stats["nonce_reused"] += 1
        else:
            self.stats["signature_failures"] += 1
        return err

    def _check_aws(
        self, request: web.BaseRequest, v2: bool, path: str, query: str, body: bytes
    ) -> None:
        try:
            ses.check_sigv4(
                v2=v2,
                method=request.method,
                path=path,
                query=query,
                headers=request.headers,
                body=body,
                credentials=self._aws,
                now=self._clock(),
            )
        except ApiError as err:
            raise self._auth_failed(err) from None

    async def _sesv2(
        self, request: web.BaseRequest, path: str, query: str, body: bytes, request_id: str
    ) -> Reply:
        self._check_aws(request, True, path, query, body)
        if path == ses.V2_ACCOUNT and request.method == "GET":
            return ses.v2_account(self._account.quota_now(), request_id)
        if path == SUPPRESSION_PATH:
            return self.suppression.handle(request.method, query, body, self._clock(), request_id)
        if path == ses.V2_BULK and request.method == "POST":  # SendBulkEmail: entry by entry
            results = []
            for entry in self._parsed(ses.parse_v2_bulk, body):
                try:
                    message_id = await self._deliver(request, entry, ses.injected)
                    results.append({"Status": "SUCCESS", "MessageId": message_id})
                except ApiError as err:
                    results.append(ses.bulk_entry_error(err))
            self.stats["bulk_calls"] += 1
            return ses.v2_bulk_sent(results, request_id)
        if path != ses.V2_SEND or request.method != "POST":
            raise ApiError(404, "UnknownOperationException", "Unknown operation")
        send = self._parsed(ses.parse_v2_send, body)
        message_id = await self._deliver(request, send, ses.injected)
        return ses.v2_sent(message_id, request_id)

    async def _sesv1(
        self,
        request: web.BaseRequest,
        query: str,
        body: bytes,
        params: dict[str, str],
        request_id: str,
    ) -> Reply:
        self._check_aws(request, False, "/", query, body)
        action = params.get("Action", "")
        if action == "GetSendQuota":
            return ses.v1_quota(self._account.quota_now(), request_id)
        if action not in ses.V1_SEND_ACTIONS:
            raise ApiError(
                400,
                "InvalidAction",
                "The action or operation requested is invalid. "
                "Verify that the action is typed correctly.",
            )
        send = self._parsed(ses.parse_v1_send, params)
        message_id = await self._deliver(request, send, ses.injected)
        return ses.v1_sent(action, message_id, request_id)

    async def _directmail(
        self, request: web.BaseRequest, params: dict[str, str], request_id: str
    ) -> Reply:
        try:
            dm.check_signature(request.method, params, self._alibaba, self._nonces, self._clock())
        except ApiError as err:
            raise self._auth_failed(err) from None
        send = self._parsed(dm.parse_send, params)
        env_id = await self._deliver(request, send, dm.injected)
        return dm.sent(env_id, request_id)

    def _parsed(self, parse: Callable[[Any], _Parsed], arg: Any) -> _Parsed:
        try:
            return parse(arg)
        except ApiError:
            self.stats["rejected"] += 1
            raise

    def _drop(self, request: web.BaseRequest) -> _Dropped:
        transport = request.transport
        if transport is not None:
            transport.abort()
        return _Dropped()

    async def _deliver(
        self, request: web.BaseRequest, send: SendRequest, injected: Callable[[int], ApiError]
    ) -> str:
        """Faults, quotas, then acceptance; the new message id, or raises."""
        return await self._account.deliver(send, injected, lambda: self._drop(request))


async def run_sandbox(
    *,
    port: int,
    quota: float | None,
    outbox: Path,
    daily_quota: int | None = None,
    latency: float = 0.0,
    fault_rate: float = 0.0,
    seed: int = 0,
) -> None:
    """Serve on 127.0.0.1:``port`` until cancelled, after printing how to use it.

    ``latency`` delays every answer, to see a campaign against a distant provider;
    ``fault_rate`` is the share of sends that meet a fault, spread evenly over 500, 503,
    reset before answering, answer lost after accepting, and a slow (2 s) answer.
    """
    share = fault_rate / 5
    faults = (
        Faults(
            seed=seed,
            latency=latency,
            error_500=share,
            error_503=share,
            reset_before=share,
            lost_after_accept=share,
            slow=share,
            slow_seconds=2.0,
        )
        if (latency or fault_rate)
        else None
    )
    async with Sandbox(
        port=port, quota=quota, daily_quota=daily_quota, outbox=outbox, faults=faults
    ) as sandbox:
        limits = f"{quota:g} recipients/s" if quota is not None else "no rate limit"
        if daily_quota is not None:
            limits += f", {daily_quota} recipients/day"
        print(
            f"bulkmail sandbox: SES (v2 and v1) and DirectMail at {sandbox.url} ({limits})\n"
            f"  outbox: {outbox.resolve()}\n"
            "  credentials it accepts:\n"
            f"    export AWS_ACCESS_KEY_ID={SANDBOX_AWS.access_key_id}\n"
            f"    export AWS_SECRET_ACCESS_KEY={SANDBOX_AWS.secret_access_key}\n"
            f"    export ALIBABA_CLOUD_ACCESS_KEY_ID={SANDBOX_ALIBABA.access_key_id}\n"
            f"    export ALIBABA_CLOUD_ACCESS_KEY_SECRET={SANDBOX_ALIBABA.access_key_secret}\n"
            f"  then: bulkmail CAMPAIGN.yaml --endpoint {sandbox.url}\n"
            "  Ctrl-C to stop.",
            flush=True,
        )
        await asyncio.Event().wait()


__all__ = ["SANDBOX_ALIBABA", "SANDBOX_AWS", "Accepted", "Faults", "Sandbox", "run_sandbox"]
