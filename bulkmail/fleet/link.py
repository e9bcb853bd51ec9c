"""One connection to Redis for the fleet: Lua scripts, round-trip counting, fault retries.

Every fleet module talks to Redis through a :class:`Link`. Each atomic step is one Lua file
under ``bulkmail/fleet/scripts/``, loaded once (``SCRIPT LOAD``) and run with ``EVALSHA``;
after a server restart (``NOSCRIPT``) it is loaded again. :meth:`Link.call` retries a step
while Redis is unreachable or loading its data after a restart, with capped exponential
backoff and jitter, so a worker pauses instead of failing; every step is written so that
running it again after a lost answer changes nothing more.

The URL is redis-py's: ``redis://``, ``rediss://`` (TLS), ``redis://user:password@host``
(ACL users), ``?db=N``. The password stays in the URL and the client, never in a log line.

>>> async def main() -> None:                                        # doctest: +SKIP
...     link = Link.from_url("redis://127.0.0.1:6379/0")
...     await link.call(lambda r: r.ping())
...     print(link.trips)
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import urlsplit

import hiredis
import redis
import redis.asyncio as aioredis
from redis import exceptions as rexc

from bulkmail.errors import BulkmailError, InternalError

T = TypeVar("T")
_INCLUDE = "--#include "


def _packing_with_hiredis(base: type[Any]) -> type[Any]:
    """``base`` (the URL's connection class: TCP, TLS or Unix) packing commands with
    hiredis' C packer. redis.asyncio packs in Python, and that was the worker's largest
    cost inside redis-py: a 200-row ``record`` step (809 arguments) packs in 126 µs
    instead of 1,344 µs, ~9 µs of a worker's CPU per recipient over its three steps. The
    bytes are identical; what hiredis refuses (not str/bytes/int/float) goes to redis-py,
    which raises its own ``DataError``."""

    def pack_command(self: Any, *args: Any) -> list[bytes]:
        first = args[0]
        if isinstance(first, str):  # "SCRIPT LOAD" is two words on the wire
            args = (*first.encode().split(), *args[1:])
        elif isinstance(first, bytes) and b" " in first:
            args = (*first.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:
            packed: list[bytes] = base.pack_command(self, *args)
            return packed

    return type(base.__name__, (base,), {"pack_command": pack_command})


def _identity() -> dict[str, Any]:
    """How our connections name themselves to the server (``CLIENT SETINFO``, seen in
    ``CLIENT LIST``): ``redis-py(bulkmail_v0.1.0)``. Given explicitly, redis-py also skips
    looking its own version up through ``importlib.metadata`` for every new connection:
    ~8 ms of CPU each, ~25 ms of a worker's start (it opens three)."""
    from bulkmail import __version__

    try:
        from redis import DriverInfo  # redis-py >= 7.2; lib_name/lib_version are deprecated
    except ImportError:  # pragma: no cover - older redis-py
        return {"lib_name": f"redis-py(bulkmail_v{__version__})", "lib_version": redis.__version__}
    info = DriverInfo(lib_version=redis.__version__).add_upstream_driver("bulkmail", __version__)
    return {"driver_info": info}


log = logging.getLogger("bulkmail.fleet")

#: What a pause-and-retry covers: the server is away, restarting or loading its AOF.
TRANSIENT: tuple[type[BaseException], ...] = (
    rexc.ConnectionError,
    rexc.TimeoutError,
    rexc.BusyLoadingError,
    rexc.TryAgainError,
    ConnectionError,
    OSError,
)


class FleetError(BulkmailError):
    """The fleet cannot go on (Redis refused a command for good, a campaign is missing)."""


class Link:
    """A ``redis.asyncio`` client plus the fleet's scripts; counts round trips in ``trips``.

    >>> link = Link.from_url("redis://127.0.0.1:1/0")
    >>> link.display
    'redis://127.0.0.1:1/0'
    """

    def __init__(self, client: aioredis.Redis, *, display: str = "redis") -> None:
        self.client = client
        self.display = display
        self.trips = 0
        self.retries = 0
        #: Packages whose ``scripts/NAME.lua`` :meth:`script` runs, searched in order.
        self.script_packages: tuple[str, ...] = ("bulkmail.fleet",)
        self._shas: dict[str, str] = {}
        self._sources: dict[str, str] = {}
        self.max_backoff = 2.0
        #: Give up after this many seconds of Redis being away (None: never, for workers).
        self.patience: float | None = None

    @classmethod
    def from_url(cls, url: str) -> Link:
        """A link for ``url``; nothing connects until the first call."""
        try:
            client = aioredis.from_url(
                url,
                socket_timeout=10,
                socket_connect_timeout=5,
                health_check_interval=15,
                max_connections=64,
                **_identity(),
            )
        except ValueError as exc:
            raise FleetError(f"invalid Redis URL: {exc}") from None
        pool = client.connection_pool
        pool.connection_class = _packing_with_hiredis(pool.connection_class)
        return cls(client, display=_redacted(url))

    async def close(self) -> None:
        await self.client.aclose()

    async def call(
        self,
        step: Callable[[Any], Awaitable[T]],
        *,
        retry: bool = True,
        on_retry: Callable[[], None] | None = None,
    ) -> T:
        """Run ``step`` (one round trip); while Redis is away, wait and run it again."""
        delay = 0.05
        deadline = None if self.patience is None else time.monotonic() + self.patience
        task = asyncio.current_task()
        asked = task.cancelling() if task is not None else 0
        while True:
            self.trips += 1
            try:
                result = await step(self.client)
            except TRANSIENT as exc:
                if not retry:
                    raise
                _deliver_lost_cancel(task, asked)
                if deadline is not None and time.monotonic() > deadline:
                    raise FleetError(
                        f"redis at {self.display} unavailable ({_kind(exc)})"
                    ) from None
                self.retries += 1
                if on_retry is not None:
                    on_retry()
                log.warning("redis at %s unavailable (%s); retrying", self.display, _kind(exc))
                await asyncio.sleep(random.uniform(delay / 2, delay))
                delay = min(self.max_backoff, delay * 2)
                continue
            _deliver_lost_cancel(task, asked)
            return result

    async def script(
        self,
        name: str,
        keys: Sequence[str],
        args: Sequence[Any],
        *,
        on_retry: Callable[[], None] | None = None,
    ) -> Any:
        """Run the Lua step ``name`` (``scripts/NAME.lua``); retried like :meth:`call`."""
        return await self.call(lambda r: self._evalsha(r, name, keys, args), on_retry=on_retry)

    async def _evalsha(self, r: Any, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        sha = self._shas.get(name)
        if sha is None:
            sha = self._shas[name] = await r.script_load(self._source(name))
        try:
            return await r.evalsha(sha, len(keys), *keys, *args)
        except rexc.NoScriptError:
            self._shas.pop(name, None)  # the server restarted without its script cache
            sha = self._shas[name] = await r.script_load(self._source(name))
            return await r.evalsha(sha, len(keys), *keys, *args)

    def _source(self, name: str) -> str:
        """The script's text, each ``--#include NAME`` line replaced by ``NAME.lua``."""
        if name not in self._sources:
            for package in self.script_packages:
                path = resources.files(package).joinpath("scripts", f"{name}.lua")
                if path.is_file():
                    text = path.read_text(encoding="utf-8")
                    break
            else:
                raise InternalError(f"no Lua script {name!r} in {self.script_packages}")
            self._sources[name] = "".join(
                self._source(line[len(_INCLUDE) :].strip()) + "\n"
                if line.startswith(_INCLUDE)
                else line
                for line in text.splitlines(keepends=True)
            )
        return self._sources[name]

    async def ensure_group(self, stream: str, group: str) -> None:
        """Create consumer ``group`` on ``stream`` (and the stream) unless it exists."""

        async def step(r: Any) -> None:
            try:
                await r.xgroup_create(stream, group, id="0", mkstream=True)
            except rexc.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

        await self.call(step)


def _deliver_lost_cancel(task: asyncio.Task[Any] | None, asked: int) -> None:
    """Raise the cancellation a Redis call swallowed.

    On Python 3.11, ``asyncio.wait_for`` (which redis-py's connection code awaits) returns
    its result and drops the caller's cancellation when the two arrive together (CPython
    gh-86296, fixed in 3.12). A heartbeat cancelled at that moment lived on forever and the
    intake that owned it never closed: the worker hung at exit. A cancellation requested
    during the call that did not surface as :class:`asyncio.CancelledError` is raised here.
    """
    if task is not None and task.cancelling() > asked:
        raise asyncio.CancelledError


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}:***@" if parts.username else ("***@" if parts.password else "")
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"


def _kind(exc: BaseException) -> str:
    return type(exc).__name__


def decode(value: Any) -> str:
    """A reply as text (the client returns bytes)."""
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


__all__ = ["TRANSIENT", "FleetError", "Link", "decode"]
