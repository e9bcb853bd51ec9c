"""The Books seam: durable per-recipient state, whatever holds it.

The engine keeps its books only through this interface; :class:`~bulkmail.books.sqlite.SqliteBooks`
(one local SQLite journal) and :class:`~bulkmail.books.memory.MemoryBooks` (tests) implement
it, and the fleet's Redis books do too. A row moves::

    pending ──mark_in_flight──► in_flight ──record──► sent | failed | skipped | uncertain
       ▲                            │
       └──── record("pending") ─────┘   (given back: definitely not sent)

A row left ``in_flight`` by a process that died was possibly sent: whoever recovers it
hands it out again flagged ``possible_duplicate`` or, under at-most-once, holds it
``uncertain``. Nothing secret is ever stored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from bulkmail._frozen import fast_init

#: States a row never leaves once recorded.
FINAL_STATES = frozenset({"sent", "failed", "skipped", "uncertain"})
#: Skip codes that are expected housekeeping rather than a problem with the list.
BENIGN_SKIP_CODES = frozenset({"duplicate", "suppressed"})


@fast_init
@dataclass(frozen=True, slots=True)
class PendingRow:
    """A recipient to send to; ``id`` is the books' handle (for a list file, its line).

    >>> PendingRow(7, 7, "ana@example.com", {"first_name": "Ana"}, False, 0).email
    'ana@example.com'
    """

    id: int
    line: int
    email: str
    fields: Mapping[str, Any]
    possible_duplicate: bool
    attempts: int


@fast_init
@dataclass(frozen=True, slots=True)
class RowOutcome:
    """What happened to one row. ``state="pending"`` gives it back: definitely not sent.

    >>> RowOutcome(7, "sent", message_id="0100-abc", attempts=1).state
    'sent'
    """

    id: int
    state: str
    message_id: str | None = None
    error_code: str | None = None
    error: str | None = None
    attempts: int = 0  # the row's total so far; the books keep the maximum they have seen
    #: True: flag it; False: this run's answers prove nothing arrived; None: not known (a row
    #: given back to pending after an attempt is then flagged). The flag is never cleared.
    possible_duplicate: bool | None = None
    #: For ``failed``: could a later run succeed (transport, 5xx, throttling ran out) or did
    #: the provider refuse this recipient (False)? Read by ``retry_failed``.
    retryable: bool | None = None


@dataclass(frozen=True, slots=True)
class Recovery:
    """How rows were settled when the books were opened.

    ``ambiguous`` rows were found ``in_flight`` (a run died while sending them): ``requeued``
    as possible duplicates or held ``uncertain``. ``retried`` failed rows went back to
    pending (``retry_failed``); ``held`` pending rows flagged possible duplicate were held
    ``uncertain`` because the campaign sends at most once.

    >>> Recovery(ambiguous=3, requeued=3, uncertain=0).ambiguous
    3
    """

    ambiguous: int
    requeued: int
    uncertain: int
    retried: int = 0
    held: int = 0


NO_RECOVERY = Recovery(0, 0, 0)


@runtime_checkable
class Books(Protocol):
    """What the engine needs from durable per-recipient state.

    Every method is one durable step: when it returns, the change survives a crash.

    >>> async def send_one(books: Books, row: PendingRow) -> None:  # doctest: +SKIP
    ...     await books.mark_in_flight([row.id])          # before the request leaves
    ...     ...                                           # the request
    ...     await books.record([RowOutcome(row.id, "sent", message_id="m-1", attempts=1)])
    """

    async def mark_in_flight(self, ids: Sequence[int]) -> None:
        """Commit that these pending rows are about to be sent (before sending).

        Raises :class:`~bulkmail.errors.JournalError`, changing nothing, if any is not pending.
        """
        ...

    async def record(self, outcomes: Sequence[RowOutcome]) -> None:
        """Record outcomes in one durable step; rows already final are left untouched."""
        ...

    async def counts(self) -> dict[str, int]:
        """Rows per state, plus ``possible_duplicate`` and ``total``."""
        ...

    async def problem_skips(self) -> int:
        """Skipped rows whose code is not housekeeping (bad rows, render problems)."""
        ...


def timestamp(seconds: float) -> str:
    """UTC, milliseconds, ``Z``: how every book writes a time.

    >>> timestamp(1714564800.0)
    '2024-05-01T12:00:00.000Z'
    """
    stamp = datetime.fromtimestamp(seconds, UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


__all__ = [
    "BENIGN_SKIP_CODES",
    "FINAL_STATES",
    "NO_RECOVERY",
    "Books",
    "PendingRow",
    "Recovery",
    "RowOutcome",
    "timestamp",
]
