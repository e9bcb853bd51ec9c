"""The aiohttp plumbing the sandbox serves on: its listening socket, its request factory (bodies
up to SES's limit), a one-line log for malformed requests, and a :class:`Reply` as a response.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from aiohttp import web

from bulkmail.servers import _ses as ses
from bulkmail.servers._wire import Reply


class _OneLine(logging.Filter):
    """Drop the traceback aiohttp attaches to a malformed request: one line each."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            record.msg = f"{record.getMessage()}: {type(record.exc_info[1]).__name__}"
            record.args = None
        record.exc_info = None
        record.exc_text = None
        return True


HTTP_LOG = logging.getLogger("bulkmail.sandbox.http")
HTTP_LOG.addFilter(_OneLine())


def large_requests(
    message: Any, payload: Any, protocol: Any, writer: Any, task: Any
) -> web.BaseRequest:
    """aiohttp's request, taking bodies up to SES's limit (its default stops at 1 MiB)."""
    loop = asyncio.get_running_loop()
    return web.BaseRequest(
        message, payload, protocol, writer, task, loop, client_max_size=ses.V2_BODY_LIMIT
    )


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (``port`` 0: any free one), IPv6 if ``host`` has a colon."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def respond(reply: Reply, *, close: bool = False) -> web.Response:
    """``reply`` as aiohttp's response; ``close`` ends the connection after it."""
    response = web.Response(
        status=reply.status,
        body=reply.body,
        headers={"Content-Type": reply.content_type, **reply.headers},
    )
    if close:
        response.force_close()
    return response


__all__ = ["HTTP_LOG", "large_requests", "listening_socket", "respond"]
