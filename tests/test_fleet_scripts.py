"""The fleet's Lua steps, run directly against a real server.

Each step reads and writes a key with one command over all of its rows (``_many.lua``),
not one command per row. These tests pin what the rows end up as: dedupe and suppression
in list order within and across chunks, a row named twice in one ``record``, the letters
``chunk_begin`` hands out, ``mark_in_flight``'s all-or-none, and steps over more rows
than one slice of arguments (2,000) holds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from bulkmail.fleet.keys import CampaignKeys
from bulkmail.fleet.link import Link, decode
from tests.fleet_conftest import ValkeyServer

K = CampaignKeys("t")


@pytest.fixture
async def link(valkey: ValkeyServer) -> AsyncIterator[Link]:
    link = Link.from_url(valkey.url)
    yield link
    await link.close()


async def _hash(link: Link, key: str) -> dict[str, str]:
    raw = await link.call(lambda r: r.hgetall(key))
    return {decode(k): decode(v) for k, v in raw.items()}


async def _enqueue(
    link: Link, through: int, rows: list[tuple[int, str, str]], *, last: bool = False
) -> Any:
    """One chunk: (line, key, why) per row; the rec and row json are the line number."""
    keys = [K.meta, K.state, K.rec, K.seen, K.suppressed, K.stream, K.counts, K.why]
    args: list[Any] = [through, rows[-1][0], len(rows), int(last)]
    for line, key, why in rows:
        args += [line, key, why, f'{{"r":{line}}}', f'{{"id":{line}}}']
    return await link.script("enqueue_chunk", keys, args)


async def test_enqueue_dedupes_and_suppresses_in_list_order(link: Link) -> None:
    await link.call(lambda r: r.sadd(K.suppressed, "blocked@example.com"))
    first = [
        (1, "a@example.com", ""),
        (2, "Blocked@example.com", ""),  # suppressed: compared lower-cased
        (3, "a@example.com", ""),  # duplicate of line 1, in the same chunk
        (4, "bad", "invalid\tnot an address"),
        (5, "blocked@example.com", ""),
    ]
    assert await _enqueue(link, 0, first) == [1, 4, 0]
    second = [(6, "a@example.com", ""), (7, "b@example.com", ""), (8, "b@example.com", "")]
    assert await _enqueue(link, 5, second, last=True) == [1, 2, 0]
    # The same chunk again (a resumed enqueue that lost its answer) adds nothing.
    await link.call(lambda r: r.hset(K.meta, "through", "5"))
    assert await _enqueue(link, 5, second, last=True) == [0, 0, 3]

    state = await _hash(link, K.state)
    assert state == {
        "1": "pending", "2": "skipped", "3": "skipped", "4": "skipped", "5": "skipped",
        "6": "skipped", "7": "pending", "8": "skipped",
    }  # fmt: skip
    why = await _hash(link, K.why)
    assert why["2"].startswith("suppressed\t") and why["5"].startswith("suppressed\t")
    assert why["3"] == why["6"] == "duplicate\tduplicate of line 1"
    assert why["8"] == "duplicate\tduplicate of line 7"
    assert why["4"] == "invalid\tnot an address"
    assert await _hash(link, K.seen) == {"a@example.com": "1", "b@example.com": "7"}
    assert await _hash(link, K.counts) == {"pending": "2", "skipped": "6", "total": "8"}
    entries = await link.call(lambda r: r.xrange(K.stream))
    assert [orjson.loads(fields[b"rows"]) for _, fields in entries] == [
        [{"id": 1}],
        [{"id": 7}],
    ]
    assert (await _hash(link, K.rec))["8"] == '{"r":8}'


async def _rows(link: Link, n: int) -> list[int]:
    ids = list(range(1, n + 1))
    await link.call(lambda r: r.hset(K.state, mapping={i: "pending" for i in ids}))
    await link.call(lambda r: r.hset(K.counts, mapping={"pending": n}))
    return ids


async def _mark(link: Link, ids: list[int], retry: bool = False) -> Any:
    keys = [K.state, K.counts, K.first]
    return await link.script("mark_in_flight", keys, [int(retry), "T1", *ids])


async def _record(link: Link, outcomes: list[tuple[int, str, bool, str]]) -> Any:
    keys = [K.state, K.counts, K.pd, K.out, K.persec]
    args: list[Any] = [len(outcomes)]
    for row, state, flagged, doc in outcomes:
        args += [row, state, int(flagged), doc]
    return await link.script("record", keys, args)


async def test_many_rows_in_one_step_cross_the_argument_slices(link: Link) -> None:
    ids = await _rows(link, 2600)  # 2,600 fields, 5,200 field/value arguments
    assert await _mark(link, ids) == 2600
    outcomes = [(i, "sent" if i % 3 else "failed", i % 2 == 0, f'{{"n":{i}}}') for i in ids]
    assert await _record(link, outcomes) == sum(1 for i in ids if i % 3)
    state, out = await _hash(link, K.state), await _hash(link, K.out)
    assert len(state) == len(out) == 2600
    assert state["2600"] == "sent" and state["2598"] == "failed" and out["2599"] == '{"n":2599}'
    assert set(state.values()) == {"sent", "failed"}
    flagged = await link.call(lambda r: r.smembers(K.pd))
    assert {int(m) for m in flagged} == {i for i in ids if i % 2 == 0}
    counts = await _hash(link, K.counts)
    assert counts == {"pending": "0", "in_flight": "0", "sent": "1734", "failed": "866"}
    assert len(await _hash(link, K.first)) == 2600


async def test_mark_in_flight_is_all_or_none_and_keeps_the_first_attempt(link: Link) -> None:
    ids = await _rows(link, 3)
    await link.call(lambda r: r.hset(K.state, "3", "sent"))
    with pytest.raises(Exception, match="BMNOTPENDING row 3 is sent"):
        await _mark(link, ids)
    assert set((await _hash(link, K.state)).values()) == {"pending", "sent"}
    assert await _mark(link, [1, 2]) == 2
    # A retry after a lost answer: rows already in flight are fine and not counted twice.
    await link.call(lambda r: r.hset(K.first, "1", "T0"))
    assert await _mark(link, [1, 2], retry=True) == 0
    with pytest.raises(Exception, match="BMNOTPENDING row 1 is in_flight"):
        await _mark(link, [1])
    assert (await _hash(link, K.first)) == {"1": "T0", "2": "T1"}
    assert (await _hash(link, K.counts))["in_flight"] == "2"


async def test_record_a_row_named_twice_sees_its_own_earlier_outcome(link: Link) -> None:
    await _rows(link, 2)
    await _mark(link, [1, 2])
    # Row 1 is given back (pending), then sent in the same flush; row 2 is sent, and its
    # second outcome is ignored because the row is already final.
    sent = await _record(
        link,
        [(1, "pending", False, "a"), (2, "sent", False, "b"), (1, "sent", True, "c"),
         (2, "failed", False, "d")],
    )  # fmt: skip
    assert sent == 2
    assert await _hash(link, K.state) == {"1": "sent", "2": "sent"}
    assert await _hash(link, K.out) == {"1": "c", "2": "b"}
    counts = await _hash(link, K.counts)
    assert counts == {"pending": "0", "in_flight": "0", "sent": "2"}
    assert await _record(link, [(1, "failed", False, "e")]) == 0  # idempotent on retry


@pytest.mark.parametrize("at_most_once", [False, True])
async def test_chunk_begin_letters(link: Link, at_most_once: bool) -> None:
    await _rows(link, 4)
    await _mark(link, [2, 3])
    await _record(link, [(3, "sent", False, "ok")])
    await link.call(lambda r: r.sadd(K.pd, "4"))
    keys = [K.state, K.pd, K.counts, K.out]
    codes = await link.script("chunk_begin", keys, [int(at_most_once), "T9", 1, 2, 3, 4])
    assert decode(codes) == ("pu" if at_most_once else "pd") + "xd"
    held = "uncertain" if at_most_once else "pending"
    assert (await _hash(link, K.state))["2"] == held
    flagged = await link.call(lambda r: r.smembers(K.pd))
    assert {int(m) for m in flagged} == {2, 4}
    counts = await _hash(link, K.counts)
    assert counts["in_flight"] == "0"
    assert counts.get("uncertain", "0") == ("1" if at_most_once else "0")
    assert counts["pending"] == ("2" if at_most_once else "3")
    out = await _hash(link, K.out)
    if at_most_once:
        doc = orjson.loads(out["2"])
        assert doc["error_code"] == "interrupted" and doc["finished_at"] == "T9"
    else:
        assert "2" not in out
