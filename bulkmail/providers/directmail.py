"""Alibaba Cloud DirectMail over its RPC API, signed by us (signature 1.0, HMAC-SHA1).

One ``SingleSendMail`` call per recipient, posted as a form. Every attempt is signed afresh
with a new ``SignatureNonce`` and ``Timestamp``: DirectMail refuses a nonce it has seen in the
last 15 minutes, so a retry that reused one would fail with ``SignatureNonceUsed``.

What we send, and why (SingleSendMail reference, API 2015-11-23 — alibabacloud.com/help/en/
direct-mail/api-dm-2015-11-23-singlesendmail, and the generated SDK model
``aliyun/alibabacloud-java-sdk`` ``dm-20151123/.../SingleSendMailRequest.java``):

- ``AccountName`` is the address part of ``Message.sender`` (a sender address verified in the
  console); ``FromAlias`` is its display name, or the provider's ``from_alias``. The docs cap
  the alias at 15 characters and the subject at 100.
- ``ReplyToAddress`` is a *string boolean* ("true"/"false", required), meaning "use the
  reply-to address configured (and verified) in the console"; it is not an address. We send
  "true" when the message has a reply-to and "false" otherwise, and also pass the first
  reply-to address as ``ReplyAddress`` (an optional string field the current API documents),
  so the console setting and the campaign agree. Only the first reply-to address is used.
- ``TagName`` must be a tag created in the console (1-128 of ``A-Za-z0-9_-``) and is required
  when ``ClickTrace`` is "1". We take the provider's ``tag_name`` (the campaign's
  ``directmail.tag_name``), else an explicit ``Message.tags["TagName"]``; other message tags
  (SES-style ``{campaign: spring}``) are never sent, since an unknown tag is refused.
- ``Headers`` is a JSON object: ``Message-ID``, ``List-Unsubscribe`` and
  ``List-Unsubscribe-Post`` overwrite the standard headers, anything else must start with
  ``X-User-``; at most 10.

A message DirectMail cannot take (raw MIME, a stored template, an alias or subject over the
limit, headers it refuses) is answered ``REJECTED`` *without* a request; the same check is
public as :meth:`DirectMailProvider.validate_message` so a campaign can refuse to start.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from email.utils import getaddresses, parseaddr
from typing import Any

import orjson

from bulkmail.mail.message import Message
from bulkmail.providers._directmail_codes import (
    classify_directmail_error,
    error_fields,
    json_object,
)
from bulkmail.providers._headers import FORM_CONTENT_TYPE, retry_after
from bulkmail.providers._httpbase import _PooledHttpProvider
from bulkmail.providers.base import Outcome, Quota, Verdict
from bulkmail.providers.config import ProviderSetup
from bulkmail.providers.errors import scrub, transport_outcome
from bulkmail.providers.http import PoolOptions
from bulkmail.signing.aliyun import (
    AlibabaCredentials,
    percent_encode,
    rpc_timestamp,
    sign_params,
)

#: Public endpoints by region (DirectMail is offered in these regions only).
REGION_ENDPOINTS: Mapping[str, str] = {
    "cn-hangzhou": "https://dm.aliyuncs.com",
    "ap-southeast-1": "https://dm.ap-southeast-1.aliyuncs.com",
    "ap-southeast-2": "https://dm.ap-southeast-2.aliyuncs.com",
    "us-east-1": "https://dm.us-east-1.aliyuncs.com",
    "eu-central-1": "https://dm.eu-central-1.aliyuncs.com",
}
VERSIONS = ("2015-11-23", "2017-06-22")
MAX_FROM_ALIAS_CHARS = 15
MAX_SUBJECT_CHARS = 100
MAX_HEADERS = 10
_STANDARD_HEADERS = frozenset({"message-id", "list-unsubscribe", "list-unsubscribe-post"})
_TAG_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")


def endpoint_for(region: str) -> str:
    """The public DirectMail endpoint of ``region``.

    >>> endpoint_for("ap-southeast-1")
    'https://dm.ap-southeast-1.aliyuncs.com'
    """
    try:
        return REGION_ENDPOINTS[region]
    except KeyError:
        valid = ", ".join(REGION_ENDPOINTS)
        raise ValueError(f"DirectMail has no region {region!r}; valid regions: {valid}") from None


def _form(params: Mapping[str, str]) -> bytes:
    return "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in params.items()).encode(
        "ascii"
    )


class DirectMailProvider(_PooledHttpProvider):
    """Alibaba Cloud DirectMail, one signed ``SingleSendMail`` per message.

    >>> async def main() -> None:                                     # doctest: +SKIP
    ...     creds = AlibabaCredentials("LTAI...", "secret")
    ...     async with DirectMailProvider(credentials=creds, region="cn-hangzhou") as dm:
    ...         outcome = await dm.send(Message(to="a@example.com",
    ...                                         sender="News <news@mail.example.com>",
    ...                                         subject="Hi", text="Hello"))

    ``endpoint`` overrides the region's endpoint (the local sandbox, a proxy). ``nonce`` and
    ``clock`` are injected so tests can see that each attempt is signed anew.
    ``get_quota()`` answers ``None``: DirectMail has no sending-rate API. (``DescAccountSummary``
    reports daily and monthly quotas, but no rate, and is itself limited to 10 calls a minute.)
    """

    name = "directmail"

    def __init__(
        self,
        *,
        credentials: AlibabaCredentials,
        region: str = "cn-hangzhou",
        endpoint: str | None = None,
        version: str = "2015-11-23",
        max_connections: int = 256,
        timeout: float = 30.0,
        pool_options: PoolOptions | None = None,
        clock: Callable[[], float] = time.time,
        nonce: Callable[[], str] = lambda: uuid.uuid4().hex,
        address_type: int = 1,
        click_trace: str | None = None,
        tag_name: str | None = None,
        from_alias: str | None = None,
    ) -> None:
        if version not in VERSIONS:
            raise ValueError(f"DirectMail version must be one of {', '.join(VERSIONS)}")
        base = endpoint if endpoint is not None else endpoint_for(region)
        self._init_endpoint(
            base, max_connections=max_connections, timeout=timeout, pool_options=pool_options
        )
        if address_type not in (0, 1):
            raise ValueError("address_type must be 0 (random account) or 1 (sender address)")
        if click_trace is not None and click_trace not in ("0", "1"):
            raise ValueError('click_trace must be "0" or "1"')
        if tag_name is not None and not _TAG_NAME.fullmatch(tag_name):
            raise ValueError("tag_name must be 1-128 characters of A-Z a-z 0-9 _ -")
        if from_alias is not None and len(from_alias) > MAX_FROM_ALIAS_CHARS:
            raise ValueError(
                f"from_alias {from_alias!r} is {len(from_alias)} characters; "
                f"DirectMail allows at most {MAX_FROM_ALIAS_CHARS}"
            )
        self._credentials = credentials
        self.region = region
        self.version = version
        self._clock = clock
        self._nonce = nonce
        self._address_type = str(address_type)
        self._click_trace = click_trace
        self._tag_name = tag_name
        self._from_alias = from_alias
        self._secrets = (
            credentials.access_key_secret,
            credentials.security_token,
            credentials.access_key_id,
        )

    # -- checks before any request ---------------------------------------------------------

    def validate_message(self, message: Message) -> str | None:
        """Why DirectMail would refuse ``message`` (``None`` when it can be sent).

        The campaign calls this on its first message to fail fast on what every message
        shares (sender alias, headers); :meth:`send` applies the same check to each message.

        >>> dm = DirectMailProvider(credentials=AlibabaCredentials("id", "secret"))
        >>> print(dm.validate_message(Message(to="a@example.com", text="x", subject="Hi",
        ...                   sender="Our Very Long Newsletter <n@example.com>")))
        FromAlias 'Our Very Long Newsletter' is 24 characters; DirectMail allows at most 15
        """
        problem = self._check(message)
        return None if problem is None else problem[1]

    def _check(self, message: Message) -> tuple[str, str] | None:
        if message.raw is not None:
            return "InvalidBody", "SingleSendMail cannot send raw MIME (attachments); use SMTP"
        if message.template is not None:
            return (
                "InvalidBody",
                "SingleSendMail has no stored templates; use directmail mode: batch",
            )
        display, account = parseaddr(message.sender)
        if "@" not in account:
            return "InvalidMailAddress", f"sender {message.sender!r} has no address"
        alias = self._from_alias if self._from_alias is not None else display
        if len(alias) > MAX_FROM_ALIAS_CHARS:
            return (
                "InvalidFromAlias",
                f"FromAlias {alias!r} is {len(alias)} characters; "
                f"DirectMail allows at most {MAX_FROM_ALIAS_CHARS}",
            )
        recipients = [addr for _, addr in getaddresses([message.to]) if addr]
        if len(recipients) != 1 or "@" not in recipients[0]:
            return "InvalidToAddress", "ToAddress must be exactly one address"
        if not message.subject:
            return "InvalidSubject", "DirectMail requires a subject"
        if len(message.subject) > MAX_SUBJECT_CHARS:
            return (
                "InvalidSubject",
                f"subject is {len(message.subject)} characters; "
                f"DirectMail allows at most {MAX_SUBJECT_CHARS}",
            )
        if message.text is None and message.html is None:
            return "InvalidBody", "DirectMail needs a text or an HTML body"
        headers_problem = _check_headers(message.headers)
        if headers_problem is not None:
            return "InvalidHeaders", headers_problem
        tag = self._tag_for(message)
        if tag is not None and not _TAG_NAME.fullmatch(tag):
            return "InvalidTagName", f"TagName {tag!r} must be 1-128 of A-Z a-z 0-9 _ -"
        if self._click_trace == "1" and tag is None:
            return "InvalidTagName", "ClickTrace 1 (tracking) needs a TagName"
        return None

    def _tag_for(self, message: Message) -> str | None:
        if self._tag_name is not None:
            return self._tag_name
        return message.tags.get("TagName")

    def _params(self, message: Message) -> dict[str, str]:
        display, account = parseaddr(message.sender)
        alias = self._from_alias if self._from_alias is not None else display
        to = next(addr for _, addr in getaddresses([message.to]) if addr)
        params: dict[str, str] = {
            "Action": "SingleSendMail",
            "Version": self.version,
            "RegionId": self.region,
            "AccountName": account,
            "AddressType": self._address_type,
            "ReplyToAddress": "true" if message.reply_to else "false",
            "ToAddress": to,
            "Subject": message.subject,
        }
        if alias:
            params["FromAlias"] = alias
        if message.reply_to:
            params["ReplyAddress"] = parseaddr(message.reply_to[0])[1] or message.reply_to[0]
        if message.html is not None:
            params["HtmlBody"] = message.html
        if message.text is not None:
            params["TextBody"] = message.text
        if self._click_trace is not None:
            params["ClickTrace"] = self._click_trace
        tag = self._tag_for(message)
        if tag is not None:
            params["TagName"] = tag
        if message.headers:
            params["Headers"] = orjson.dumps(dict(message.headers)).decode("utf-8")
        return params

    # -- the wire ---------------------------------------------------------------------------

    async def _call(self, params: Mapping[str, str]) -> tuple[int, Mapping[str, str], bytes]:
        if self._pool is None:
            raise RuntimeError("use 'async with DirectMailProvider(...)' before sending")
        # A fresh nonce and timestamp on every attempt, retries included.
        signed = sign_params(
            params,
            self._credentials,
            method="POST",
            nonce=self._nonce(),
            timestamp=rpc_timestamp(self._clock()),
        )
        response = await self._pool.request(
            "POST", "/", [("Content-Type", FORM_CONTENT_TYPE)], _form(signed)
        )
        return response.status, response.headers, response.body

    async def send(self, message: Message) -> Outcome:
        """Send one attempt; every answer becomes an :class:`Outcome`, never an exception."""
        problem = self._check(message)
        if problem is not None:
            return Outcome(Verdict.REJECTED, error_code=problem[0], error=problem[1])
        return await self._send_params(self._params(message))

    async def batch_send(
        self,
        *,
        template_name: str,
        receivers_name: str,
        account_name: str,
        address_type: int = 1,
        tag_name: str | None = None,
        click_trace: str | None = None,
    ) -> Outcome:
        """One ``BatchSendMail`` call: a console template sent to a console recipient list.

        Pace the calls with :func:`bulkmail.pacing.calls.batch_limiter` (20 per minute at most)::

            limiter = batch_limiter(region)  # bulkmail.pacing.calls
            async with limiter:
                outcome = await provider.batch_send(template_name="news",
                                                    receivers_name="spring",
                                                    account_name="news@mail.example.com")
        """
        if address_type not in (0, 1):
            raise ValueError("address_type must be 0 (random account) or 1 (sender address)")
        params: dict[str, str] = {
            "Action": "BatchSendMail",
            "Version": self.version,
            "RegionId": self.region,
            "AccountName": account_name,
            "AddressType": str(address_type),
            "TemplateName": template_name,
            "ReceiversName": receivers_name,
        }
        tag = tag_name if tag_name is not None else self._tag_name
        if tag is not None:
            params["TagName"] = tag
        trace = click_trace if click_trace is not None else self._click_trace
        if trace is not None:
            params["ClickTrace"] = trace
        return await self._send_params(params)

    async def _send_params(self, params: Mapping[str, str]) -> Outcome:
        try:
            status, headers, data = await self._call(params)
        except Exception as exc:  # noqa: BLE001 - mapped at the one boundary
            return transport_outcome(exc)
        doc = json_object(data)
        if status == 200:
            env_id = doc.get("EnvId") if doc is not None else None
            # A 200 is DirectMail taking the message; an unreadable body does not undo that.
            return Outcome(Verdict.SENT, message_id=str(env_id) if env_id else None)
        return self._error_outcome(status, headers, data, doc)

    def _error_outcome(
        self,
        status: int,
        headers: Mapping[str, str],
        data: bytes,
        doc: dict[str, Any] | None,
    ) -> Outcome:
        code, text, request_id = error_fields(data, doc)
        error = scrub(text, self._secrets) or f"HTTP {status}"
        if request_id:
            error = f"{error} (RequestId {request_id})"
        return Outcome(
            classify_directmail_error(status, code, text),
            error_code=code or f"HTTP{status}",
            error=error,
            retry_after=retry_after(headers),
        )

    async def get_quota(self) -> Quota | None:
        """``None``: DirectMail publishes no sending rate to pace by (see the class notes)."""
        return None


def campaign_problems(
    *, sender: str, subject: str | None, header_names: Sequence[str]
) -> list[tuple[str, str]]:
    """What DirectMail would refuse in *every* message of a campaign: ``(field, problem)``
    with field ``from``, ``subject`` or ``headers``. A templated subject (``{{ ... }}``) is
    checked per message instead. Lets a campaign refuse to start rather than fail everyone.

    >>> campaign_problems(sender="Our Very Long Newsletter <n@example.com>", subject="Hi",
    ...                   header_names=["X-User-Id"])[0][1]
    "FromAlias 'Our Very Long Newsletter' is 24 characters; DirectMail allows at most 15"
    """
    problems: list[tuple[str, str]] = []
    alias = parseaddr(sender)[0]
    if len(alias) > MAX_FROM_ALIAS_CHARS:
        problems.append(
            (
                "from",
                f"FromAlias {alias!r} is {len(alias)} characters; "
                f"DirectMail allows at most {MAX_FROM_ALIAS_CHARS}",
            )
        )
    fixed = subject is not None and not any(mark in subject for mark in ("{{", "{%", "{#"))
    if fixed and subject is not None and len(subject) > MAX_SUBJECT_CHARS:
        problems.append(
            (
                "subject",
                f"is {len(subject)} characters; DirectMail allows at most {MAX_SUBJECT_CHARS}",
            )
        )
    header_problem = _check_headers(tuple((name, "") for name in header_names))
    if header_problem is not None:
        problems.append(("headers", header_problem))
    return problems


def _check_headers(headers: tuple[tuple[str, str], ...]) -> str | None:
    if len(headers) > MAX_HEADERS:
        return f"DirectMail takes at most {MAX_HEADERS} headers, got {len(headers)}"
    seen: set[str] = set()
    for name, _ in headers:
        lower = name.lower()
        if lower in seen:
            return f"header {name} appears twice (DirectMail takes a JSON object)"
        seen.add(lower)
        if lower not in _STANDARD_HEADERS and not lower.startswith("x-user-"):
            return (
                f"header {name}: DirectMail accepts only Message-ID, List-Unsubscribe, "
                "List-Unsubscribe-Post and X-User-* headers"
            )
    return None


def from_config(
    setup: ProviderSetup, *, credentials: AlibabaCredentials | None = None
) -> DirectMailProvider:
    """Build the DirectMail provider from its config block and its ``directmail:`` options."""
    from bulkmail.credentials import alibaba_from_env

    config, options = setup.config, setup.options
    return DirectMailProvider(
        credentials=credentials or alibaba_from_env(setup.environ),
        region=config.region or "cn-hangzhou",
        endpoint=setup.url,
        version=config.version,
        max_connections=setup.max_connections,
        address_type=int(options.get("address_type", 1)),
        click_trace=options.get("click_trace"),
        tag_name=options.get("tag_name"),
    )


__all__ = [
    "REGION_ENDPOINTS",
    "DirectMailProvider",
    "campaign_problems",
    "classify_directmail_error",
    "endpoint_for",
    "from_config",
]
