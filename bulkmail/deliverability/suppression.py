"""The local suppression file: one address a line, appended atomically, never duplicated.

The same file a campaign's ``suppress:`` reads (:func:`bulkmail.input.recipients.read_suppressed`).
Writers (``bulkmail events``, ``bulkmail suppress sync``) take an ``flock`` on the file, read
what is there, and append only the new addresses in one ``write`` followed by ``fsync``: a
reader never sees half a line, and two writers never add the same address twice. Addresses
are compared like the suppression check of a campaign: ignoring case.

>>> file = SuppressionFile(Path("suppressed.txt"))                       # doctest: +SKIP
>>> file.add(["Ana@Example.com", "ana@example.com"])                    # doctest: +SKIP
['Ana@Example.com']
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable
from pathlib import Path

from bulkmail.input.recipients import address_key, check_address, read_suppressed


class SuppressionFile:
    """Append-only access to one suppression file (created on first use).

    The addresses are read once, then only what other writers appended since (the file is
    re-read whole if it was replaced or shrank), so adding to a large file stays cheap.

    >>> file = SuppressionFile(Path("suppressed.txt"))                   # doctest: +SKIP
    >>> file.add(["ana@example.org"]), "ana@example.org" in file.read()  # doctest: +SKIP
    (['ana@example.org'], True)
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._known: dict[str, str] = {}  # lower-cased -> as written
        self._seen: tuple[int, int, int] = (-1, -1, 0)  # (st_dev, st_ino, bytes read)

    def read(self) -> set[str]:
        """Every suppressed address, lower-cased (an absent file is empty)."""
        return set(self.addresses())

    def addresses(self) -> dict[str, str]:
        """Lower-cased address -> the address as first written in the file."""
        if not self.path.exists():
            return {}
        found: dict[str, str] = {}
        for key in read_suppressed(self.path):
            found.setdefault(key.lower(), key)
        return found

    def add(self, addresses: Iterable[str]) -> list[str]:
        """Append the addresses not yet in the file; returns those written, in order.

        Invalid addresses are ignored (the reader would ignore them too).
        """
        wanted: dict[str, str] = {}
        for email in addresses:
            email = email.strip()
            if email and "\n" not in email and check_address(email) is None:
                wanted.setdefault(address_key(email).lower(), email)
        if not wanted:
            return []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._catch_up(fd)
            new = [email for key, email in wanted.items() if key not in self._known]
            if new:
                size = os.fstat(fd).st_size
                lead = b""
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    lead = b"\n"  # a hand-edited last line without its newline
                data = lead + "".join(f"{e}\n" for e in new).encode("utf-8")
                os.write(fd, data)
                os.fsync(fd)
                for email in new:
                    self._known.setdefault(address_key(email).lower(), email)
                dev, ino, _ = self._seen
                self._seen = (dev, ino, size + len(data))
            return new
        finally:
            os.close(fd)  # releases the lock

    def _catch_up(self, fd: int) -> None:
        """Under the lock: learn what was appended since the last look (or read it all)."""
        st = os.fstat(fd)
        dev, ino, done = self._seen
        if (st.st_dev, st.st_ino) != (dev, ino) or st.st_size < done:
            self._known = self.addresses()
            self._seen = (st.st_dev, st.st_ino, st.st_size)
            return
        if st.st_size == done:
            return
        tail = os.pread(fd, st.st_size - done, done)
        end = tail.rfind(b"\n") + 1  # a line still being written is read next time
        for line in tail[:end].decode("utf-8", "replace").splitlines():
            value = line.strip()
            if value and not value.startswith("#") and check_address(value) is None:
                key = address_key(value)
                self._known.setdefault(key.lower(), key)
        self._seen = (dev, ino, done + end)


__all__ = ["SuppressionFile"]
