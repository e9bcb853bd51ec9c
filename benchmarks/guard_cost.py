"""Cost of one DeliverabilityGuard.check_now() on a 1M-row journal and a 50k-event store."""

import sqlite3
import tempfile
import time
from pathlib import Path

from bulkmail.books.journal import Journal
from bulkmail.deliverability.guard import DeliverabilityGuard, GuardSettings
from bulkmail.deliverability.ses_events import Event
from bulkmail.deliverability.store import EventStore

d = Path(tempfile.mkdtemp())
j, e = d / "j.sqlite", d / "e.sqlite"
journal, _ = Journal.open(j, campaign_hash="c", list_hash="l")
journal.close()
conn = sqlite3.connect(j)
N = 1_000_000
INSERT = (
    "INSERT INTO rows (id, email, key, fields, state, message_id, attempts, finished_at) "
    "VALUES (?, ?, ?, ?, 'sent', ?, 1, '2026-01-01T00:00:00.000Z')"
)
conn.executemany(
    INSERT, ((i, f"u{i}@x.org", f"u{i}@x.org", b"{}", f"m{i:07d}") for i in range(1, N + 1))
)
conn.commit()
conn.close()
with EventStore.open(e) as s:
    s.add(
        "sns",
        [
            Event("bounce", f"m{i:07d}", f"u{i}@x.org", "Permanent", None, None)
            for i in range(1, N, 20)
        ],
        received_at=0,
    )
g = DeliverabilityGuard.for_files(GuardSettings(window=1000), j, e)
g.check_now()
t, n, r = time.perf_counter(), 50, None
for _ in range(n):
    r = g.check_now()
print(f"{(time.perf_counter() - t) / n * 1000:.2f} ms per check; reason: {r}")
g.close()
