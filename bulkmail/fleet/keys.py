"""Where a campaign lives in Redis: every key name in one place.

A campaign ``NAME`` uses the keys ``bulkmail:{NAME}:*`` (the braces keep them in one
cluster slot, so each Lua step touches one slot)::

    meta      hash: definition (JSON), files, hashes, through (last line enqueued), enqueued
    stream    the chunks of rows to send (one entry = one chunk), group ``workers``
    state     hash: row id -> pending | in_flight | sent | failed | skipped | uncertain
    counts    hash: state -> rows, and total
    rec       hash: row id -> {"line", "email"} (written at enqueue)
    out       hash: row id -> the outcome (message_id, error, attempts, finished_at)
    first     hash: row id -> first attempt time
    why       hash: row id -> "code<TAB>reason" for rows skipped at enqueue
    pd        set: row ids flagged possible_duplicate
    seen      hash: dedupe key -> first row id;  suppressed: set of suppressed keys
    workers   sorted set: worker -> last heartbeat (Redis time)
    persec    hash: Redis second -> recipients sent (for the fleet rate; expires)

and the pacer of a provider account lives under ``bulkmail:pace:{ACCOUNT}`` (see
:mod:`bulkmail.pacing.redis`). ``bulkmail:campaigns`` is the set of campaign names.

>>> CampaignKeys("news").state
'bulkmail:{news}:state'
"""

from __future__ import annotations

from dataclasses import dataclass

CAMPAIGNS = "bulkmail:campaigns"
GROUP = "workers"
_PARTS = (
    "meta", "stream", "state", "counts", "rec", "out", "first", "why", "pd", "seen",
    "suppressed", "workers", "persec",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class CampaignKeys:
    """The key names of one campaign."""

    name: str

    def _key(self, part: str) -> str:
        return f"bulkmail:{{{self.name}}}:{part}"

    @property
    def meta(self) -> str:
        return self._key("meta")

    @property
    def stream(self) -> str:
        return self._key("stream")

    @property
    def state(self) -> str:
        return self._key("state")

    @property
    def counts(self) -> str:
        return self._key("counts")

    @property
    def rec(self) -> str:
        return self._key("rec")

    @property
    def out(self) -> str:
        return self._key("out")

    @property
    def first(self) -> str:
        return self._key("first")

    @property
    def why(self) -> str:
        return self._key("why")

    @property
    def pd(self) -> str:
        return self._key("pd")

    @property
    def seen(self) -> str:
        return self._key("seen")

    @property
    def suppressed(self) -> str:
        return self._key("suppressed")

    @property
    def workers(self) -> str:
        return self._key("workers")

    @property
    def persec(self) -> str:
        return self._key("persec")

    def all(self) -> list[str]:
        """Every key of the campaign (to expire them once it is finished)."""
        return [self._key(p) for p in _PARTS]


def pacer_keys(account: str) -> tuple[str, str]:
    """The pacer hash and the daily counter of a provider account (a hash, never a key)."""
    return f"bulkmail:pace:{{{account}}}", f"bulkmail:pace:{{{account}}}:daily"


__all__ = ["CAMPAIGNS", "GROUP", "CampaignKeys", "pacer_keys"]
