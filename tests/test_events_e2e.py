"""Done-when: a campaign runs against the sandbox, SNS posts signed events for it, and the
next run skips the suppressed addresses; the results say who bounced or complained."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import orjson
from cryptography.hazmat.primitives.asymmetric import rsa

from bulkmail.api import run_campaign
from bulkmail.deliverability.config import EventsConfig
from bulkmail.servers.events import EventsServer, https_fetcher
from tests._sns import TOPIC, CertHost, Signer, bounce, complaint, self_signed


def results(path: Path) -> dict[str, dict[str, object]]:
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    return {str(line["email"]): line for line in lines}


async def test_events_feed_the_next_run(tmp_path: Path, make_campaign) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "suppressed.txt").write_text("# addresses never to mail\n")
    extra = "suppress: suppressed.txt\nevents: events.sqlite\n"
    first = make_campaign(count=6, extra=extra, name="first")
    summary = await run_campaign(first)
    assert summary.counts["sent"] == 6
    sent = results(tmp_path / "first.results.jsonl")
    mid = {email: str(row["message_id"]) for email, row in sent.items()}
    assert all(row["event"] is None for row in sent.values())

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    async with CertHost(self_signed(key)) as host:
        config = EventsConfig(
            path=tmp_path / "events.yaml",
            listen=("127.0.0.1", 0),
            topics=(TOPIC,),
            suppress=tmp_path / "suppressed.txt",
            events=tmp_path / "events.sqlite",
            cert_hosts=("127.0.0.1:*",),
        )
        signer = Signer(host.cert_url, key)
        a, b, c, d = (f"user{i:06d}@example.org" for i in range(4))
        docs = [
            signer.notification(bounce(mid[a], a), version="2"),
            signer.notification(complaint(mid[b], b), version="1"),
            signer.notification(bounce(mid[c], c, kind="Transient"), version="2"),
        ]
        tampered = signer.notification(bounce(mid[d], d), version="2")
        tampered["Message"] = tampered["Message"].replace(d, "someone@example.org")
        async with (
            EventsServer(config, port=0, fetch=https_fetcher(host.client_context())) as server,
            aiohttp.ClientSession() as session,
        ):
            statuses = []
            for doc in [*docs, tampered]:
                async with session.post(server.url, json=doc) as response:
                    statuses.append(response.status)
    assert statuses == [200, 200, 200, 403]
    lines = (tmp_path / "suppressed.txt").read_text().splitlines()
    assert lines == ["# addresses never to mail", a, b]

    # The first campaign again: nothing is sent twice, and its results now carry the events.
    again = await run_campaign(first)
    assert again.sent_this_run == 0
    after = results(tmp_path / "first.results.jsonl")
    assert [after[e]["event"] for e in (a, b, c, d)] == [
        "bounced",
        "complained",
        "soft_bounced",
        None,
    ]

    # A second campaign to the same list skips the two suppressed addresses only.
    second = make_campaign(count=6, extra=extra, name="second")
    summary = await run_campaign(second)
    assert summary.counts["sent"] == 4
    rows = results(tmp_path / "second.results.jsonl")
    assert {e for e, r in rows.items() if r["status"] == "skipped"} == {a, b}
    assert rows[a]["error_code"] == rows[b]["error_code"] == "suppressed"
    assert rows[c]["status"] == rows[d]["status"] == "sent"
