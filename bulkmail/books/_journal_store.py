"""The journal's SQLite file: schema and statements, reports, the results file's lines.

Private to :mod:`bulkmail.books.journal`, whose :class:`~bulkmail.books.journal.Journal`
decides when a row changes state. This module holds how the books sit on disk: the schema
and the SQL that moves rows, the read-only counts and the SQL of the results file's lines
(the file itself is written by :mod:`._results_file`); what is done at open (lock, checks,
settling rows, the reserve) is in :mod:`._journal_open`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import orjson

from bulkmail.books.base import FINAL_STATES, RowOutcome

SCHEMA_VERSION = 2
STATES = ("pending", "in_flight", "sent", "failed", "skipped", "uncertain")
SUPPRESSED = "the address is on the suppression list"
GUARANTEES = {False: "at-least-once", True: "at-most-once"}
_ATTEMPTED = frozenset({"sent", "failed", "uncertain"})
IN_CLAUSE = 500  # keys per "IN (...)" lookup, well under SQLite's variable limit

SCHEMA = f"""
CREATE TABLE meta (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    campaign_hash TEXT NOT NULL,
    list_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    imported_through INTEGER NOT NULL DEFAULT 0,
    finished_import INTEGER NOT NULL DEFAULT 0,
    guarantee TEXT                          -- 'at-least-once' | 'at-most-once', set at first run
);
CREATE TABLE rows (
    id INTEGER PRIMARY KEY,                 -- the list line number
    email TEXT NOT NULL,
    key TEXT NOT NULL UNIQUE,               -- the dedupe key: the duplicate detector
    fields BLOB NOT NULL,                   -- orjson
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN {STATES!r}),
    possible_duplicate INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    message_id TEXT,
    error_code TEXT,
    error TEXT,
    first_attempt_at TEXT,
    finished_at TEXT,
    retryable INTEGER                       -- failed rows: 1 transport/5xx/throttled, 0 refused
);
-- (state, rowid): pending() and recovery seek straight to their rows, counts() reads only it
CREATE INDEX rows_state ON rows(state);
CREATE INDEX rows_possible_duplicate ON rows(id) WHERE possible_duplicate = 1;
CREATE TABLE skips (line INTEGER PRIMARY KEY, email TEXT NOT NULL, code TEXT NOT NULL,
                    reason TEXT NOT NULL);
CREATE TABLE suppressed (key TEXT PRIMARY KEY) WITHOUT ROWID;
"""

# Every step over a batch is ONE statement: the batch goes in as one JSON array that SQLite
# walks (json_each) with the GIL released throughout. ``executemany`` releases and retakes the
# GIL once per row, and each retake against a busy event loop waits for a thread switch:
# recording 20,000 outcomes beside a thread that never sleeps took 116-129 µs of CPU and
# 2.4-2.7 ms of wall time a row that way, 18-20 µs and 53-64 µs as one statement
# (benchmarks/README.md, "the journal in one statement per step"). Needs SQLite >= 3.33
# (UPDATE ... FROM) with JSON, checked at open.
INSERT_ROWS = (
    "INSERT INTO rows (id, email, key, fields) SELECT json_extract(value, '$[0]'), "
    "json_extract(value, '$[1]'), json_extract(value, '$[2]'), "
    "CAST(json_extract(value, '$[3]') AS BLOB) FROM json_each(?1)"
)  # fields: the same bytes orjson.dumps gives (SQLite keeps the text of a number as read)
INSERT_SKIPS = (
    "INSERT OR IGNORE INTO skips (line, email, code, reason) SELECT json_extract(value, '$[0]'), "
    "json_extract(value, '$[1]'), json_extract(value, '$[2]'), json_extract(value, '$[3]') "
    "FROM json_each(?1)"
)
SELECT_STATE = (
    "SELECT id, email, fields, possible_duplicate, attempts FROM rows "
    "WHERE state = ? AND id > ? ORDER BY id LIMIT ?"
)
# ?1 now, ?2 the ids. "+state": look each id up by its key, not every pending row by state.
MARK = (
    "UPDATE rows SET state = 'in_flight', first_attempt_at = coalesce(first_attempt_at, ?1) "
    "WHERE id IN (SELECT value FROM json_each(?2)) AND +state = 'pending'"
)
# ?1 the outcomes (record_batches: one array each, no id twice), ?2 now. Rows already in a final
# state are never touched: a late or repeated outcome cannot turn a sent row back into a
# pending one. possible_duplicate is never cleared. o.dup = 1 sets it; o.dup NULL ("not
# known") on a row given back to pending after this run wrote an attempt (o.n above the
# stored count) sets it too: a row never goes from in flight back to *plain* pending unless
# the caller says (o.dup = 0) that every answer proved the message was refused. (SET
# expressions read the old values.)
#: The only states a row leaves during a run: RECORD and MARK move rows in these alone.
OPEN_STATES = ("pending", "in_flight")
RECORD = f"""
UPDATE rows SET state = o.st,
    message_id = coalesce(o.mid, message_id),
    error_code = CASE WHEN o.final THEN o.code ELSE coalesce(o.code, error_code) END,
    error = CASE WHEN o.final THEN o.err ELSE coalesce(o.err, error) END,
    attempts = max(attempts, o.n),
    possible_duplicate = CASE
        WHEN o.dup = 1 THEN 1
        WHEN o.dup IS NULL AND o.st = 'pending' AND o.n > attempts THEN 1
        ELSE possible_duplicate END,
    first_attempt_at = CASE WHEN o.tried THEN coalesce(first_attempt_at, ?2)
        ELSE first_attempt_at END,
    finished_at = CASE WHEN o.final THEN ?2 ELSE finished_at END,
    retryable = CASE WHEN o.final THEN o.retry ELSE retryable END
FROM (SELECT json_extract(value, '$[0]') AS st, json_extract(value, '$[1]') AS mid,
             json_extract(value, '$[2]') AS code, json_extract(value, '$[3]') AS err,
             json_extract(value, '$[4]') AS n, json_extract(value, '$[5]') AS dup,
             json_extract(value, '$[6]') AS final, json_extract(value, '$[7]') AS tried,
             json_extract(value, '$[8]') AS oid, json_extract(value, '$[9]') AS retry
      FROM json_each(?1)) AS o
WHERE rows.id = o.oid AND +rows.state IN {OPEN_STATES!r}
"""
MIGRATE_1_TO_2 = (
    "ALTER TABLE meta ADD COLUMN guarantee TEXT",
    "ALTER TABLE rows ADD COLUMN retryable INTEGER",
)
INTERRUPTED = "the run ended while this request was in flight: it may have been sent"
# -- values in and out ------------------------------------------------------------------


def rows_json(recipients: Iterable[_Row]) -> bytes:
    """The ``?1`` of :data:`INSERT_ROWS`: ``[line, email, key, fields]`` for each."""
    return orjson.dumps(
        [
            (r.line, r.email, r.key, r.fields if isinstance(r.fields, dict) else dict(r.fields))
            for r in recipients
        ]
    )


class _Keyed(Protocol):
    @property
    def line(self) -> int: ...
    @property
    def key(self) -> str: ...


class _Row(_Keyed, Protocol):
    @property
    def email(self) -> str: ...
    @property
    def fields(self) -> Mapping[str, Any]: ...


K = TypeVar("K", bound=_Keyed)


def line_of(item: _Keyed) -> int:
    return item.line


def partition(recipients: Iterable[K], done: int) -> tuple[dict[str, K], list[K]]:
    """One chunk in line order, lines after ``done`` once each: ``(first, again)``, the first
    recipient of each key in the chunk and the later ones with a key already seen in it."""
    first: dict[str, K] = {}
    again: list[K] = []
    seen_lines: set[int] = set()
    for r in sorted(recipients, key=line_of):
        if r.line <= done or r.line in seen_lines:
            continue
        seen_lines.add(r.line)
        if r.key in first:
            again.append(r)
        else:
            first[r.key] = r
    return first, again


def record_batches(outcomes: Sequence[RowOutcome]) -> Iterator[bytes]:
    """The ``?1`` of :data:`RECORD`: one JSON array per run of outcomes with no id twice.

    One statement applies its rows in no set order, so an id seen again starts the next
    statement: outcomes for one row are applied in the order given, as one by one.
    """
    start, seen = 0, set[int]()
    for index, o in enumerate(outcomes):
        if o.id in seen:
            yield _record_json(outcomes[start:index])
            start, seen = index, set()
        seen.add(o.id)
    if start < len(outcomes):
        yield _record_json(outcomes[start:])


def _record_json(outcomes: Sequence[RowOutcome]) -> bytes:
    final, attempted = FINAL_STATES, _ATTEMPTED
    return orjson.dumps(
        [
            (
                o.state,
                o.message_id,
                o.error_code,
                o.error,
                o.attempts,
                o.possible_duplicate,
                o.state in final,
                o.state in attempted or o.attempts > 0,
                o.id,
                o.retryable,
            )
            for o in outcomes
        ]
    )


def lookup(conn: sqlite3.Connection, sql: str, keys: Mapping[str, object]) -> dict[str, int]:
    """Run ``sql`` (with one ``IN ({})``) over ``keys`` in chunks; merge the (key, value) rows."""
    found: dict[str, int] = {}
    batch = list(keys)
    for start in range(0, len(batch), IN_CLAUSE):
        part = batch[start : start + IN_CLAUSE]
        query = sql.format(",".join("?" * len(part)))
        found.update(conn.execute(query, part).fetchall())
    return found


# -- reading the books ------------------------------------------------------------------


def count_states(conn: sqlite3.Connection) -> dict[str, int]:
    """Rows per state (skipped list rows included), ``possible_duplicate`` and ``total``."""
    counts = dict.fromkeys(STATES, 0)
    counts.update(conn.execute("SELECT state, count(*) FROM rows GROUP BY state").fetchall())
    counts["skipped"] += conn.execute("SELECT count(*) FROM skips").fetchone()[0]
    counts["possible_duplicate"] = conn.execute(
        "SELECT count(*) FROM rows WHERE possible_duplicate = 1"
    ).fetchone()[0]
    counts["total"] = sum(counts[s] for s in STATES)
    return counts


def count_problem_skips(conn: sqlite3.Connection, benign: Iterable[str]) -> int:
    """Skipped list rows and skipped recipients whose code is not in ``benign``."""
    codes = sorted(set(benign))
    marks = ",".join("?" * len(codes))
    n_skips = conn.execute(
        f"SELECT count(*) FROM skips WHERE code NOT IN ({marks})", codes
    ).fetchone()[0]
    n_rows = conn.execute(
        "SELECT count(*) FROM rows WHERE state = 'skipped' "
        f"AND coalesce(error_code, '') NOT IN ({marks})",
        codes,
    ).fetchone()[0]
    return int(n_skips + n_rows)


#: The ``event`` of a results line: what SES reported for its message, most telling first
#: (complained, bounced = a permanent bounce, rejected, soft_bounced, delayed, delivered).
#: Reads the event store attached as ``ev``.
EVENT_OF = """(SELECT CASE
    WHEN sum(kind = 'complaint') THEN 'complained'
    WHEN sum(kind = 'bounce' AND subtype = 'Permanent') THEN 'bounced'
    WHEN sum(kind = 'reject') THEN 'rejected'
    WHEN sum(kind = 'bounce') THEN 'soft_bounced'
    WHEN sum(kind = 'delay') THEN 'delayed'
    WHEN sum(kind = 'delivery') THEN 'delivered'
  END FROM ev.events WHERE ev.events.message_id = rows.message_id)"""


#: Each key of a results line and what shows it for a journal row and for a skipped line.
_LINE = (
    ("line", "rows.id", "line"),
    ("email", "rows.email", "email"),
    ("status", "rows.state", "'skipped'"),
    ("message_id", "rows.message_id", "NULL"),
    ("error_code", "rows.error_code", "code"),
    ("error", "rows.error", "reason"),
    ("attempts", "rows.attempts", "0"),
    (
        "possible_duplicate",
        "json(CASE WHEN rows.possible_duplicate THEN 'true' ELSE 'false' END)",
        "json('false')",
    ),
    ("first_attempt_at", "rows.first_attempt_at", "NULL"),
    ("finished_at", "rows.finished_at", "NULL"),
)


def lines_between(event: str | None = None) -> str:
    """The results file's lines ``?1 < line <= ?2`` as ONE row: the lines joined by
    newlines, and their count. ``event``: the SQL of the ``event`` key (no key if None).

    SQLite writes each line (``json_object``): the same bytes as ``orjson.dumps`` of the
    row's dict (compact, keys in this order, the same escapes), at 6.3 µs a row instead of
    16 building each dict in Python. Each side of the ``UNION ALL`` makes its own lines and
    the two are merged in line order (both tables are read in rowid order, ``MERGE (UNION
    ALL)`` into ``group_concat``): ordering the union as one subquery sorted every line in a
    temporary B-tree first (3.2-5.6 against 2.3-4.3 µs a line, 20,000 lines). One step of
    SQLite makes the whole batch with the GIL released; fetching it row by row retook the
    GIL once per line, which against a busy event loop waits for a thread switch (see the
    batch statements above).
    """
    keys = [key for key, _, _ in _LINE]
    from_rows = [column for _, column, _ in _LINE]
    from_skips = [column for _, _, column in _LINE]
    if event is not None:
        keys.append("event")
        from_rows.append(event)
        from_skips.append("NULL")

    def line(columns: list[str]) -> str:
        pairs = ", ".join(f"'{k}', {c}" for k, c in zip(keys, columns, strict=True))
        return f"json_object({pairs})"

    rows = f"SELECT {line(from_rows)} AS text, id FROM rows WHERE id > ?1 AND id <= ?2"
    skips = f"SELECT {line(from_skips)}, line FROM skips WHERE line > ?1 AND line <= ?2"
    union = f"{rows} UNION ALL {skips} ORDER BY 2"
    return f"SELECT group_concat(text, char(10)), count(*) FROM ({union})"


#: The first line a run may still change: lines before it are final (``record`` only ever
#: moves pending and in-flight rows), so they can be written to the results file already.
FIRST_OPEN = f"SELECT min(id) FROM rows WHERE state IN {OPEN_STATES!r} AND id > ?"

#: The last line with a results line (a row or a skipped line).
LAST_LINE = (
    "SELECT max(n) FROM (SELECT max(id) AS n FROM rows UNION ALL SELECT max(line) FROM skips)"
)
