"""Group commit: requests that arrive while one commit is under way share the next one.

>>> async def main() -> None:                                        # doctest: +SKIP
...     async def write(items: list[int]) -> None:
...         print("one commit for", items)
...     commit = GroupCommit(write)
...     await asyncio.gather(commit.submit([1]), commit.submit([2, 3]))
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class GroupCommit(Generic[T]):
    """Runs ``write`` for everything submitted meanwhile; each :meth:`submit` returns (or
    raises the write's error) once its items are written.

    >>> GroupCommit(lambda items: asyncio.sleep(0)).pending
    0
    """

    def __init__(self, write: Callable[[list[T]], Awaitable[None]]) -> None:
        self._write = write
        self._waiting: list[tuple[list[T], asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None  # keep a reference

    @property
    def pending(self) -> int:
        return len(self._waiting)

    async def submit(self, items: list[T]) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((items, done))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop())
        await done

    async def _loop(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting, []
            try:
                await self._write([item for items, _ in group for item in items])
            except BaseException as exc:
                for _, done in group:
                    if not done.done():
                        done.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for _, done in group:
                if not done.done():
                    done.set_result(None)


__all__ = ["GroupCommit"]
