"""The Intake seam: where pending work comes from, in order, resumable.

An intake hands the engine :class:`Batch` es of pending rows. What is done is never handed
out again: a row whose outcome the books have recorded is final. Once every row of a batch
has a final outcome *recorded*, the engine calls :meth:`Intake.settle` — for a Redis stream
that is the acknowledgement; a batch with a row given back (drained, not sent) is never
settled, so another worker may take it up again.

Implementations: :class:`~bulkmail.intake.listfile.ListIntake` (the campaign's list file,
imported into the journal while sending goes on), :class:`~bulkmail.intake.memory.MemoryIntake`
(tests), and the fleet's and the proxy's queues.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from bulkmail.books.base import PendingRow


@dataclass(slots=True, eq=False)
class Batch:
    """Rows handed out together; ``token`` is the intake's own handle (a stream entry id).

    >>> Batch([PendingRow(1, 1, "ana@example.com", {}, False, 0)], resumed=True).resumed
    True
    """

    rows: list[PendingRow]
    #: Rows that were pending from an earlier run (counted as resumed, not imported).
    resumed: bool = False
    token: Any = None
    #: Rows the intake itself settled without sending (duplicates, invalid, suppressed).
    skipped: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Intake(Protocol):
    """A source of pending work.

    >>> async def consume(intake: Intake) -> None:                     # doctest: +SKIP
    ...     async for batch in intake.batches():
    ...         ...                           # send every row, record every outcome
    ...         await intake.settle(batch)    # all of them are final and recorded
    """

    def batches(self) -> AsyncIterator[Batch]:
        """Pending work in order; ends when there is none left (a queue may wait for more)."""
        ...

    async def settle(self, batch: Batch) -> None:
        """Every row of ``batch`` has a final outcome recorded in the books."""
        ...


__all__ = ["Batch", "Intake"]
