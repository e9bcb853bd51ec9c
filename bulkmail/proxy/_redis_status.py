"""``GET /bulkmail/v1/messages/{id}`` from Redis: any proxy sharing the queue answers.

The message's hash names its client, first row id and recipients; the fleet's books hold
each row's state, outcome (upstream message id, error, attempts) and duplicate flag. One
round trip for the message, one for its rows.
"""

from __future__ import annotations

from typing import Any

import orjson

from bulkmail.books.base import timestamp
from bulkmail.fleet.link import Link, decode
from bulkmail.proxy._redis_lanes import ProxyKeys


async def message_status(
    link: Link, keys: ProxyKeys, mid: str, client: str
) -> dict[str, Any] | None:
    """The status document of ``mid`` if ``client`` sent it (None: unknown, or not theirs).

    >>> await message_status(link, ProxyKeys("default"), mid, "AKID1")  # doctest: +SKIP
    {'MessageId': '...', 'AcceptedAt': '...', 'Recipients': [{'Email': 'a@x.org', ...}]}
    """
    found = await link.call(lambda r: r.hmget(keys.message(mid), "client", "first", "emails", "at"))
    if found[0] is None or decode(found[0]) != client:
        return None
    first = int(found[1])
    emails: list[str] = orjson.loads(found[2])
    ids = [first + i for i in range(len(emails))]
    books = keys.books

    async def step(r: Any) -> list[Any]:
        pipe = r.pipeline(transaction=False)
        pipe.hmget(books.state, ids)
        pipe.hmget(books.out, ids)
        pipe.smismember(books.pd, ids)
        result: list[Any] = await pipe.execute()
        return result

    states, outs, flagged = await link.call(step) if ids else ([], [], [])
    recipients = []
    for email, state, out, pd in zip(emails, states, outs, flagged, strict=True):
        doc = orjson.loads(out) if out else {}
        recipients.append(
            {
                "Email": email,
                "Status": decode(state) if state is not None else "pending",
                "UpstreamMessageId": doc.get("message_id"),
                "ErrorCode": doc.get("error_code"),
                "Error": doc.get("error"),
                "Attempts": int(doc.get("attempts") or 0),
                "PossibleDuplicate": bool(pd),
            }
        )
    return {"MessageId": mid, "AcceptedAt": timestamp(float(found[3])), "Recipients": recipients}


__all__ = ["message_status"]
