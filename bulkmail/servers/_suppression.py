"""The sandbox's SESv2 account-level suppression list: list (paged) and put.

``GET /v2/email/suppression/addresses`` (``PageSize``, ``NextToken``) answers
``{"SuppressedDestinationSummaries": [{"EmailAddress", "Reason", "LastUpdateTime"}],
"NextToken"}``; ``PUT /v2/email/suppression/addresses`` with ``{"EmailAddress", "Reason"}``
(``BOUNCE`` | ``COMPLAINT``) adds or updates one address. Errors as the other SESv2 calls.
"""

from __future__ import annotations

import base64
from urllib.parse import parse_qsl

import orjson

from bulkmail.servers._wire import ApiError, Reply

PATH = "/v2/email/suppression/addresses"
REASONS = ("BOUNCE", "COMPLAINT")
MAX_PAGE = 1000


class SuppressionList:
    """Addresses (lower-cased key -> (address, reason, time)) in insertion order."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[str, str, float]] = {}

    def handle(self, method: str, query: str, body: bytes, now: float, request_id: str) -> Reply:
        headers = {"x-amzn-RequestId": request_id}
        if method == "PUT":
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise ApiError(400, "BadRequestException", "the body is not JSON") from None
            email = doc.get("EmailAddress") if isinstance(doc, dict) else None
            reason = doc.get("Reason") if isinstance(doc, dict) else None
            if not isinstance(email, str) or "@" not in email:
                raise ApiError(400, "BadRequestException", "EmailAddress is required")
            if reason not in REASONS:
                raise ApiError(400, "BadRequestException", "Reason must be BOUNCE or COMPLAINT")
            self.entries[email.lower()] = (email, reason, now)
            return Reply(200, b"{}", "application/json", headers)
        if method != "GET":
            raise ApiError(404, "UnknownOperationException", "Unknown operation")
        params = dict(parse_qsl(query))
        try:
            size = int(params.get("PageSize", "100"))
            start = int(base64.b64decode(params.get("NextToken", "MA==")).decode())
        except ValueError:
            raise ApiError(400, "BadRequestException", "invalid PageSize or NextToken") from None
        if not 1 <= size <= MAX_PAGE or start < 0:
            raise ApiError(400, "BadRequestException", f"PageSize must be 1-{MAX_PAGE}")
        items = list(self.entries.values())[start : start + size]
        doc = {
            "SuppressedDestinationSummaries": [
                {"EmailAddress": e, "Reason": r, "LastUpdateTime": t} for e, r, t in items
            ]
        }
        if start + size < len(self.entries):
            doc["NextToken"] = base64.b64encode(str(start + size).encode()).decode()
        return Reply(200, orjson.dumps(doc), "application/json", headers)
