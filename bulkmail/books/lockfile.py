"""One writer per books file: an exclusive ``flock`` on a lock file beside it, holding the pid.

Shared by the campaign journal and the proxy's journal::

    fd = lock(Path("c.journal.sqlite.lock"), Path("c.journal.sqlite"))
    try:
        ...
    finally:
        unlock(fd)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from bulkmail.errors import JournalError


def lock(lock_path: Path, journal: Path) -> int:
    """Take an exclusive flock on ``lock_path`` and write our pid into it."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise JournalError(f"{journal} is in use by another bulkmail run (pid {holder})") from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def unlock(fd: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


# -- the reserve: space given back when the disk fills -----------------------------------


__all__ = ["lock", "unlock"]
