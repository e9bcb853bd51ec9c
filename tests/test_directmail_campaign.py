"""DirectMail campaigns end to end: the example through the embedded sandbox, 20,000
recipients against an independent DirectMail look-alike, and ``mode: batch``.

The independent server below shares no code with bulkmail: it parses forms with aiohttp and
checks every signature with Alibaba's own ``alibabacloud_openapi_util`` (the function the
official Python SDKs sign with), so a bug in our signer cannot hide behind the same bug in
our sandbox.
"""

from __future__ import annotations

import asyncio
import email
import shutil
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiolimiter import AsyncLimiter
from alibabacloud_openapi_util.client import Client as OpenApiUtil

import bulkmail
from bulkmail.api import make_provider
from bulkmail.delivery.batch import BatchSummary, receivers_names, run_batch_campaign
from bulkmail.delivery.sender import RetryPolicy
from bulkmail.errors import FatalProviderError
from bulkmail.input.campaign import Campaign
from bulkmail.providers.directmail import DirectMailProvider
from bulkmail.servers import SANDBOX_ALIBABA, Faults, Sandbox
from bulkmail.signing.aliyun import AlibabaCredentials, rpc_timestamp, sign_params

from .conftest import CampaignFactory

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
KEY_ID, SECRET = "LTAIindependent0test", "independent-secret-0123456789"
FAST_RETRY = RetryPolicy(max_attempts=5, base=0.001, cap=0.005)


# -- an independent DirectMail-compatible server ------------------------------------------


class IndependentDirectMail:
    """``SingleSendMail`` as DirectMail checks it: AccessKeyId, signature (recomputed with
    ``alibabacloud_openapi_util``), Timestamp within 15 minutes, SignatureNonce never reused.
    Records every accepted ToAddress."""

    def __init__(self) -> None:
        self.to: Counter[str] = Counter()
        self.nonces: set[str] = set()
        self.refused: Counter[str] = Counter()
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        form = await request.post()
        params = {k: str(v) for k, v in form.items()}
        code = self.refusal(request.method, params)
        if code is not None:
            self.refused[code] += 1
            return web.json_response({"Code": code, "Message": code, "RequestId": "x"}, status=400)
        self.to[params["ToAddress"]] += 1
        return web.json_response(
            {"EnvId": str(uuid.uuid4().int % 10**15), "RequestId": str(uuid.uuid4()).upper()}
        )

    async def recorded(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"to": self.to, "refused": self.refused, "nonces": len(self.nonces)}
        )

    def refusal(self, method: str, params: dict[str, str]) -> str | None:
        signature = params.pop("Signature", "")
        if params.get("AccessKeyId") != KEY_ID:
            return "InvalidAccessKeyId.NotFound"
        if OpenApiUtil.get_rpcsignature(params, method, SECRET) != signature:
            return "SignatureDoesNotMatch"
        try:
            sent = datetime.strptime(params["Timestamp"], "%Y-%m-%dT%H:%M:%SZ")
        except (KeyError, ValueError):
            return "InvalidTimeStamp.Format"
        if abs(sent.replace(tzinfo=UTC).timestamp() - time.time()) > 900:
            return "InvalidTimeStamp.Expired"
        nonce = params.get("SignatureNonce", "")
        if not nonce or nonce in self.nonces:
            return "SignatureNonceUsed"
        self.nonces.add(nonce)
        if params.get("Action") != "SingleSendMail" or "@" not in params.get("ToAddress", ""):
            return "InvalidParameter"
        return None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/", self.handle)
        app.router.add_get("/recorded", self.recorded)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def independent() -> AsyncIterator[IndependentDirectMail]:
    server = IndependentDirectMail()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@dataclass
class Remote:
    """The independent server in its own process (as a real peer is, and on the other
    core): ``python -m tests.test_directmail_campaign`` prints its URL and serves until
    killed; ``GET /recorded`` tells what it accepted and refused."""

    url: str

    async def recorded(self) -> tuple[Counter[str], Counter[str], int]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(self.url + "/recorded") as response,
        ):
            doc = await response.json()
        return Counter(doc["to"]), Counter(doc["refused"]), int(doc["nonces"])


@pytest.fixture
async def remote() -> AsyncIterator[Remote]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.test_directmail_campaign",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
        url = line.decode().strip()
        assert url.startswith("http://127.0.0.1:"), url
        yield Remote(url)
    finally:
        proc.terminate()
        await proc.wait()


async def test_independent_server_refuses_what_directmail_refuses(
    independent: IndependentDirectMail,
) -> None:
    """The checker itself is checked: a good request passes, bad ones do not."""
    base = {
        "Action": "SingleSendMail",
        "Version": "2015-11-23",
        "AccountName": "n@example.com",
        "AddressType": "1",
        "ReplyToAddress": "false",
        "ToAddress": "a@example.org",
        "Subject": "s",
        "TextBody": "t",
    }
    good = AlibabaCredentials(KEY_ID, SECRET)
    now = time.time()

    async def post(creds: AlibabaCredentials, nonce: str, when: float) -> int:
        signed = sign_params(base, creds, method="POST", nonce=nonce, timestamp=rpc_timestamp(when))
        async with (
            aiohttp.ClientSession() as session,
            session.post(independent.url + "/", data=signed) as response,
        ):
            return response.status

    assert await post(good, "n1", now) == 200
    assert await post(good, "n1", now) == 400
    assert await post(AlibabaCredentials(KEY_ID, "wrong"), "n2", now) == 400
    assert await post(good, "n3", now - 1000) == 400
    assert independent.to == Counter({"a@example.org": 1})
    assert independent.refused == Counter(
        {"SignatureNonceUsed": 1, "SignatureDoesNotMatch": 1, "InvalidTimeStamp.Expired": 1}
    )


@pytest.mark.slow
async def test_20000_recipients_against_an_independent_directmail(
    remote: Remote,
    make_campaign: CampaignFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """THE done-when check: 20,000 recipients, each delivered exactly once, no signature
    failure, every nonce fresh."""
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SECRET)
    count = 20_000
    path = make_campaign(
        count=count,
        domain="dm.example.org",
        provider=f"name: directmail\n  region: cn-hangzhou\n  endpoint: {remote.url}",
        rate=5000,
    )
    started = time.perf_counter()
    summary = await bulkmail.run_campaign(path)
    elapsed = time.perf_counter() - started
    with capsys.disabled():
        print(
            f"\n20k DirectMail recipients against the independent server: {elapsed:.1f} s "
            f"({count / elapsed:.0f}/s)"
        )
    assert summary.counts.get("sent") == count, summary.as_dict()
    to, refused, nonces = await remote.recorded()
    assert refused == Counter()  # no signature failure, no reused nonce, no stale Timestamp
    assert to == Counter({f"user{i:06d}@dm.example.org": 1 for i in range(count)})
    assert nonces == count


# -- the example campaign through the embedded sandbox ------------------------------------


async def test_example_directmail_campaign_runs_on_the_sandbox(tmp_path: Path) -> None:
    for name in ("directmail.yaml", "news.txt", "news.html", "recipients.csv"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    summary = await bulkmail.run_campaign(tmp_path / "directmail.yaml")
    rows = (tmp_path / "recipients.csv").read_text(encoding="utf-8").splitlines()[1:]
    addresses = [row.split(",")[0] for row in rows]
    assert summary.counts.get("sent") == len(addresses) == 100, summary.as_dict()
    delivered: Counter[str] = Counter()
    for eml in (tmp_path / "outbox").glob("*.eml"):
        message = email.message_from_bytes(eml.read_bytes())
        delivered[message["To"]] += 1
        assert message["From"] == "Example News <news@example.com>"
        assert message["List-Unsubscribe"]
    assert delivered == Counter(addresses)
    results = (tmp_path / "directmail.results.jsonl").read_text().splitlines()
    assert len(results) == 100 and all(orjson.loads(r)["status"] == "sent" for r in results)


# -- mode: batch --------------------------------------------------------------------------


class CountingLimiter(AsyncLimiter):
    """A fast limiter that counts the calls it lets through."""

    def __init__(self, max_rate: float = 1000, time_period: float = 1) -> None:
        super().__init__(max_rate, time_period)
        self.acquired = 0

    async def acquire(self, amount: float = 1) -> None:
        await super().acquire(amount)
        self.acquired += 1


def batch_campaign(tmp_path: Path, *, receivers: str = "spring", extra: str = "") -> Campaign:
    (tmp_path / "list.csv").write_text("email\nunused@example.org\n", encoding="utf-8")
    path = tmp_path / "batch.yaml"
    path.write_text(
        "name: spring-batch\n"
        "provider:\n  name: directmail\n  region: cn-hangzhou\n  endpoint: sandbox\n"
        "directmail:\n  mode: batch\n  template_name: spring-news\n"
        f"  receivers_name: {receivers}\n  tag_name: spring\n  click_trace: '1'\n{extra}"
        "rate: 1\n"
        'from: "News <news@example.com>"\n'
        "recipients: list.csv\n",
        encoding="utf-8",
    )
    return Campaign.from_file(path)


def with_lists(campaign: Campaign, names: list[str]) -> Campaign:
    """campaign.py takes one list name; batch.py also sends several (in the given order)."""
    return replace(
        campaign, directmail=MappingProxyType({**campaign.directmail, "receivers_name": names})
    )


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox() as server:
        yield server


async def provider_for(
    campaign: Campaign, sandbox: Sandbox, alibaba: AlibabaCredentials = SANDBOX_ALIBABA
) -> DirectMailProvider:
    provider = make_provider(campaign, endpoint=sandbox.url, alibaba=alibaba)
    assert isinstance(provider, DirectMailProvider)
    return await provider.__aenter__()


def lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_text().splitlines()]


async def test_batch_mode_sends_one_call_per_list(tmp_path: Path, sandbox: Sandbox) -> None:
    campaign = with_lists(batch_campaign(tmp_path), ["spring", "summer", "spring"])
    results = tmp_path / "out" / "batch.results.jsonl"
    limiter = CountingLimiter()
    provider = await provider_for(campaign, sandbox)
    try:
        summary = await run_batch_campaign(campaign, provider, results=results, limiter=limiter)
    finally:
        await provider.__aexit__(None, None, None)
    assert isinstance(summary, BatchSummary)
    assert (summary.sent, summary.failed, summary.skipped, summary.exit_code) == (2, 0, 0, 0)
    assert limiter.acquired == 2
    assert [a.api for a in sandbox.accepted] == ["directmail-batch"] * 2
    assert sandbox.stats["accepted"] == 2 and sandbox.stats["signature_failures"] == 0
    first = sandbox.accepted[0].params
    assert {
        k: first[k]
        for k in (
            "Action",
            "TemplateName",
            "ReceiversName",
            "AccountName",
            "AddressType",
            "TagName",
            "ClickTrace",
        )
    } == {
        "Action": "BatchSendMail",
        "TemplateName": "spring-news",
        "ReceiversName": "spring",
        "AccountName": "news@example.com",
        "AddressType": "1",
        "TagName": "spring",
        "ClickTrace": "1",
    }
    got = lines(results)
    assert [(g["receivers_name"], g["status"], g["attempts"]) for g in got] == [
        ("spring", "sent", 1),
        ("summer", "sent", 1),
    ]
    assert [g["env_id"] for g in got] == [a.message_id for a in sandbox.accepted]
    assert all(g["first_attempt_at"].endswith("Z") and g["finished_at"] for g in got)
    assert summary.as_summary().counts == {"sent": 2, "failed": 0, "skipped": 0}

    # Running again sends nothing twice: both lists are already sent with this template.
    provider = await provider_for(campaign, sandbox)
    try:
        again = await run_batch_campaign(campaign, provider, results=results, limiter=limiter)
    finally:
        await provider.__aexit__(None, None, None)
    assert (again.sent, again.skipped) == (0, 2) and len(sandbox.accepted) == 2


async def test_batch_mode_is_paced_by_its_limiter(tmp_path: Path, sandbox: Sandbox) -> None:
    campaign = with_lists(batch_campaign(tmp_path), ["a", "b", "c"])
    provider = await provider_for(campaign, sandbox)
    started = time.monotonic()
    try:
        await run_batch_campaign(
            campaign, provider, results=tmp_path / "r.jsonl", limiter=AsyncLimiter(1, 0.2)
        )
    finally:
        await provider.__aexit__(None, None, None)
    times = [a.received_at for a in sandbox.accepted]
    assert len(times) == 3 and time.monotonic() - started >= 0.35
    assert all(b - a >= 0.15 for a, b in zip(times, times[1:], strict=False))


async def test_batch_mode_retries_5xx_and_throttles(tmp_path: Path) -> None:
    campaign = with_lists(batch_campaign(tmp_path), [f"list{i}" for i in range(6)])
    limiter = CountingLimiter()
    async with Sandbox(faults=Faults(seed=3, error_503=0.4), quota=None) as server:
        provider = await provider_for(campaign, server)
        try:
            summary = await run_batch_campaign(
                campaign, provider, results=tmp_path / "r.jsonl", limiter=limiter, retry=FAST_RETRY
            )
        finally:
            await provider.__aexit__(None, None, None)
        injected = server.stats["errors_injected"]
    got = lines(tmp_path / "r.jsonl")
    assert summary.sent == 6 and [g["status"] for g in got] == ["sent"] * 6
    assert injected > 0 and sum(g["attempts"] for g in got) == 6 + injected
    assert limiter.acquired == 6 + injected  # every attempt is a paced call


async def test_batch_mode_stops_on_a_fatal_answer(tmp_path: Path, sandbox: Sandbox) -> None:
    campaign = with_lists(batch_campaign(tmp_path), ["a", "b"])
    wrong = AlibabaCredentials(SANDBOX_ALIBABA.access_key_id, "not-the-secret")
    provider = await provider_for(campaign, sandbox, alibaba=wrong)
    try:
        with pytest.raises(FatalProviderError) as caught:
            await run_batch_campaign(
                campaign,
                provider,
                results=tmp_path / "r.jsonl",
                limiter=CountingLimiter(),
                retry=FAST_RETRY,
            )
    finally:
        await provider.__aexit__(None, None, None)
    assert caught.value.code == "SignatureDoesNotMatch"
    [line] = lines(tmp_path / "r.jsonl")
    assert (line["receivers_name"], line["status"], line["error_code"]) == (
        "a",
        "failed",
        "SignatureDoesNotMatch",
    )
    assert "string to sign" not in line["error"] and sandbox.accepted == []


async def test_sandbox_batchsendmail_on_the_wire(sandbox: Sandbox) -> None:
    """Signature and nonce are checked as for SingleSendMail; missing fields are named."""
    params = {
        "Action": "BatchSendMail",
        "Version": "2015-11-23",
        "RegionId": "cn-hangzhou",
        "AccountName": "news@example.com",
        "AddressType": "0",
        "TemplateName": "t1",
        "ReceiversName": "r1",
    }

    async def call(
        p: dict[str, str], nonce: str, creds: AlibabaCredentials = SANDBOX_ALIBABA
    ) -> tuple[int, dict[str, Any]]:
        signed = sign_params(
            p, creds, method="POST", nonce=nonce, timestamp=rpc_timestamp(time.time())
        )
        async with (
            aiohttp.ClientSession() as session,
            session.post(sandbox.url + "/", data=signed) as response,
        ):
            return response.status, orjson.loads(await response.read())

    status, doc = await call(params, "b-1")
    assert status == 200 and set(doc) == {"EnvId", "RequestId"}
    [accepted] = sandbox.accepted
    assert (accepted.api, accepted.to, accepted.message_id) == (
        "directmail-batch",
        (),
        doc["EnvId"],
    )
    assert accepted.params["ReceiversName"] == "r1"
    assert (await call(params, "b-1"))[1]["Code"] == "SignatureNonceUsed"
    wrong = AlibabaCredentials(SANDBOX_ALIBABA.access_key_id, "nope")
    assert (await call(params, "b-2", wrong))[1]["Code"] == "SignatureDoesNotMatch"
    missing = {k: v for k, v in params.items() if k != "TemplateName"}
    assert (await call(missing, "b-3"))[1]["Code"] == "MissingTemplateName"
    bad = {**params, "AddressType": "2"}
    assert (await call(bad, "b-4"))[1]["Code"] == "InvalidParameter"
    assert sandbox.stats["accepted"] == 1 and sandbox.stats["nonce_reused"] == 1
    assert sandbox.stats["signature_failures"] == 1 and sandbox.stats["rejected"] == 2


def test_receivers_names() -> None:
    assert receivers_names({"receivers_name": "spring"}) == ("spring",)
    assert receivers_names({"receivers_name": ["a", "b"]}) == ("a", "b")
    with pytest.raises(ValueError):
        receivers_names({"receivers_name": []})
    with pytest.raises(ValueError):
        receivers_names({"receivers_name": ["a", ""]})


async def _serve() -> None:
    server = IndependentDirectMail()
    await server.start()
    print(server.url, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is not on Windows
        asyncio.run(_serve())
    else:
        uvloop.run(_serve())


async def test_batch_mode_through_run_campaign(tmp_path: Path) -> None:
    """`mode: batch` via the public API (endpoint: sandbox): one BatchSendMail call."""
    from bulkmail import run_campaign

    campaign = batch_campaign(tmp_path)
    summary = await run_campaign(campaign)
    assert summary.exit_code == 0
    [line] = lines(campaign.results)
    assert line["status"] == "sent" and line["receivers_name"] == "spring"
    assert line["env_id"]


async def test_batch_mode_never_retries_a_500_and_a_rerun_skips_that_list(
    tmp_path: Path,
) -> None:
    """A 500 may come after DirectMail queued the whole list: recorded uncertain, no
    second call, and a plain rerun does not send that list again."""
    campaign = with_lists(batch_campaign(tmp_path), ["spring"])
    results = tmp_path / "r.jsonl"
    async with Sandbox(faults=Faults(seed=1, error_500=1.0)) as server:
        provider = await provider_for(campaign, server)
        try:
            await run_batch_campaign(
                campaign, provider, results=results, limiter=CountingLimiter(), retry=FAST_RETRY
            )
            assert server.stats["errors_injected"] == 1  # one call, no retry
            [line] = lines(results)
            assert line["status"] == "uncertain" and line["attempts"] == 1
            again = await run_batch_campaign(
                campaign, provider, results=results, limiter=CountingLimiter(), retry=FAST_RETRY
            )
            assert again.skipped == 1 and server.stats["errors_injected"] == 1
        finally:
            await provider.__aexit__(None, None, None)
