"""AWS SigV4: the AWS test suite byte for byte, then botocore on generated SES requests."""

from __future__ import annotations

import calendar
import datetime
import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from unittest import mock
from urllib.parse import quote

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

import bulkmail.signing
from bulkmail.signing import (
    AwsCredentials,
    SigV4Signer,
    amz_date,
    canonical_query,
    canonical_request,
    derive_signing_key,
    parse_authorization,
    sign_headers,
    verify_request,
)
from bulkmail.signing.sigv4 import string_to_sign

# --- the AWS Signature Version 4 test suite (tests/vectors/aws-sigv4, Apache-2.0) ----------

VECTORS = Path(__file__).parent / "vectors" / "aws-sigv4"
SUITE_CREDENTIALS = AwsCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
SUITE_REGION = "us-east-1"
SUITE_SERVICE = "service"
SUITE_NOW = float(calendar.timegm((2015, 8, 30, 12, 36, 0)))
SUITE_DATE = "20150830T123600Z"
SUITE_SCOPE = "20150830/us-east-1/service/aws4_request"


@dataclass
class SuiteCase:
    name: str
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lowercased name -> value, repeats joined by ","
    body: bytes
    creq: str
    sts: str
    authz: str

    @property
    def session_token(self) -> str | None:
        # Two cases sign a token the .req does not show (get-vanilla-with-session-token);
        # the canonical request is the authority on what was signed.
        for line in self.creq.split("\n"):
            if line.startswith("x-amz-security-token:"):
                return line.partition(":")[2]
        return None


def _load(case_dir: Path) -> SuiteCase:
    def read(ext: str) -> str:
        return (case_dir / f"{case_dir.name}.{ext}").read_text(encoding="utf-8")

    head, _, body = read("req").partition("\n\n")
    lines = head.split("\n")
    method, _, target = lines[0].partition(" ")
    target = target.rsplit(" ", 1)[0]  # drop " HTTP/1.1"; the path may hold a space
    path, _, query = target.partition("?")
    headers: dict[str, str] = {}
    last = ""
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t":  # folded continuation line: part of the previous value
            headers[last] += "\n" + line
            continue
        name, _, value = line.partition(":")
        last = name.lower()
        headers[last] = f"{headers[last]},{value}" if last in headers else value
    return SuiteCase(
        name=str(case_dir.relative_to(VECTORS)),
        method=method,
        path=path,
        query=query,
        headers=headers,
        body=body.encode("utf-8"),
        creq=read("creq"),
        sts=read("sts"),
        authz=read("authz"),
    )


SUITE = [_load(p.parent) for p in sorted(VECTORS.rglob("*.req"))]


def test_suite_is_all_there() -> None:
    # Every case of the suite is replayed; none is skipped.
    assert len(SUITE) == 34
    assert (VECTORS / "LICENSE").is_file() and (VECTORS / "NOTICE").is_file()


@pytest.mark.parametrize("case", SUITE, ids=[c.name for c in SUITE])
def test_suite_canonical_request_and_string_to_sign(case: SuiteCase) -> None:
    headers = dict(case.headers)
    token = case.session_token
    if token is not None:
        headers["x-amz-security-token"] = token
    creq = canonical_request(
        case.method,
        case.path,
        case.query,
        headers,
        list(headers),
        hashlib.sha256(case.body).hexdigest(),
    )
    assert creq == case.creq
    assert string_to_sign(SUITE_DATE, SUITE_SCOPE, creq) == case.sts


@pytest.mark.parametrize("case", SUITE, ids=[c.name for c in SUITE])
def test_suite_authorization(case: SuiteCase) -> None:
    # post-sts-token/post-sts-header-after adds the token after signing; bulkmail always
    # signs the token (as botocore does), so that case is signed without one: its canonical
    # request is exactly that of an unsigned-token request.
    credentials = AwsCredentials(
        SUITE_CREDENTIALS.access_key_id, SUITE_CREDENTIALS.secret_access_key, case.session_token
    )
    extra = {
        k: v
        for k, v in case.headers.items()
        if k not in ("host", "x-amz-date", "x-amz-security-token")
    }
    added = sign_headers(
        method=case.method,
        host=case.headers["host"],
        path=case.path,
        query=case.query,
        headers=extra,
        body=case.body,
        credentials=credentials,
        region=SUITE_REGION,
        service=SUITE_SERVICE,
        now=SUITE_NOW,
    )
    assert added["Authorization"] == case.authz
    assert added["X-Amz-Date"] == SUITE_DATE
    assert added.get("X-Amz-Security-Token") == case.session_token

    signer = SigV4Signer(credentials, region=SUITE_REGION, service=SUITE_SERVICE)
    assert (
        signer.sign(
            case.method, case.headers["host"], case.path, case.query, extra, case.body, SUITE_NOW
        )
        == added
    )


@pytest.mark.parametrize("case", SUITE, ids=[c.name for c in SUITE])
def test_suite_requests_verify(case: SuiteCase) -> None:
    headers = {name.title(): value for name, value in case.headers.items()}
    if case.session_token is not None:
        headers["X-Amz-Security-Token"] = case.session_token
    assert verify_request(
        method=case.method,
        path=case.path,
        query=case.query,
        headers=headers,
        body=case.body,
        secret_access_key=SUITE_CREDENTIALS.secret_access_key,
        authorization=parse_authorization(case.authz),
    )


def test_documented_form_post_signature() -> None:
    (case,) = [c for c in SUITE if c.name == "post-x-www-form-urlencoded"]
    signature = case.authz.rpartition("Signature=")[2]
    assert signature == "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"


def test_small_pieces() -> None:
    assert amz_date(SUITE_NOW) == SUITE_DATE
    assert amz_date(SUITE_NOW + 0.999) == SUITE_DATE
    assert canonical_query("") == ""
    assert canonical_query("b=2&a=x y&a=%7E&c") == "a=x%20y&a=~&b=2&c="
    assert canonical_query("k=a+b&k=%2B&&s=%2f") == "k=%2B&k=a%2Bb&s=%2F"
    assert canonical_query("%E1%88%B4=%C3%BC") == "%E1%88%B4=%C3%BC"
    # The derived key of the SigV4 documentation example (IAM, 20120215, us-east-1).
    key = derive_signing_key(
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1", "iam"
    )
    assert key.hex() == "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"


def test_canonical_request_needs_every_signed_header() -> None:
    with pytest.raises(ValueError, match="'x-missing'"):
        canonical_request("GET", "/", "", {"Host": "h"}, ["host", "X-Missing"], "0" * 64)


def test_credentials_repr_hides_secrets() -> None:
    text = repr(AwsCredentials("AKID", "s3cr3t-value", "t0ken-value"))
    assert "AKID" in text and "s3cr3t" not in text and "t0ken" not in text
    assert "s3cr3t" not in repr(
        SigV4Signer(AwsCredentials("AKID", "s3cr3t"), region="r", service="s")
    )


def test_public_names_are_pinned() -> None:
    assert sorted(bulkmail.signing.__all__) == sorted(
        [
            "SES_SMTP_REGIONS",
            "AlibabaCredentials",
            "AwsCredentials",
            "ParsedAuthorization",
            "SigV4Signer",
            "amz_date",
            "canonical_query",
            "canonical_request",
            "derive_signing_key",
            "parse_authorization",
            "percent_encode",
            "rpc_signature",
            "rpc_timestamp",
            "ses_smtp_password",
            "sign_headers",
            "sign_params",
            "verify_request",
        ]
    )


# --- botocore.auth.SigV4Auth as a second reference on generated SES requests ---------------

REGIONS = ["us-east-1", "eu-west-1", "eu-central-1", "ap-southeast-2", "sa-east-1", "us-gov-west-1"]
ALPHABET = "aZ09 +&=~*%/-_.!'()?#ü€中😀\t"


@dataclass
class Generated:
    method: str
    host: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: bytes
    credentials: AwsCredentials
    region: str
    now: float

    @property
    def query(self) -> str:
        return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in self.params.items())


def _text(rng: random.Random, low: int = 0, high: int = 12) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(low, high)))


def _generate(count: int, seed: int) -> list[Generated]:
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        region = rng.choice(REGIONS)
        fields = {_text(rng, 1): _text(rng) for _ in range(rng.randint(0, 6))}
        fields["Action"] = "SendRawEmail"
        headers: dict[str, str] = {}
        if rng.random() < 0.6:
            body = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in fields.items())
            headers["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8"
            path = "/"
        else:
            body = json.dumps(fields, ensure_ascii=rng.random() < 0.5)
            headers["content-type"] = "application/json"
            path = rng.choice(["/v2/email/outbound-emails", "/v2/email/account", "/"])
        if rng.random() < 0.3:
            headers["X-Custom-" + rng.choice("AbC")] = "  a   b \t c  "
        params = {_text(rng, 1, 6): _text(rng, 0, 6) for _ in range(rng.choice([0, 0, 1, 3]))}
        token = None
        if rng.random() < 0.3:
            token = "".join(rng.choice("ABCxyz0189+/=") for _ in range(rng.randint(20, 300)))
        credentials = AwsCredentials(
            "AKIA" + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16)),
            "".join(rng.choice("abcXYZ0189+/") for _ in range(40)),
            token,
        )
        cases.append(
            Generated(
                method=rng.choice(["POST", "POST", "POST", "GET"]),
                host=f"email.{region}.amazonaws.com",
                path=path,
                params=params,
                headers=headers,
                body=body.encode("utf-8"),
                credentials=credentials,
                region=region,
                now=rng.uniform(1.4e9, 2.1e9),
            )
        )
    return cases


GENERATED = _generate(400, seed=20150830)


def _botocore_headers(case: Generated) -> dict[str, str]:
    request = AWSRequest(
        method=case.method,
        url=f"https://{case.host}{case.path}",
        data=case.body,
        headers=dict(case.headers),
        params=dict(case.params),
    )
    credentials = Credentials(
        case.credentials.access_key_id,
        case.credentials.secret_access_key,
        case.credentials.session_token,
    )
    # botocore 1.4x add_auth() overwrites request.context["timestamp"] with its own clock,
    # so the clock it reads is frozen instead.
    frozen = datetime.datetime.fromtimestamp(case.now, datetime.UTC).replace(tzinfo=None)
    with mock.patch("botocore.auth.get_current_datetime", return_value=frozen):
        SigV4Auth(credentials, "ses", case.region).add_auth(request)
    wanted = ("X-Amz-Date", "Authorization", "X-Amz-Security-Token")
    return {name: request.headers[name] for name in wanted if name in request.headers}


@pytest.mark.parametrize("case", GENERATED, ids=[f"gen{i}" for i in range(len(GENERATED))])
def test_matches_botocore(case: Generated) -> None:
    signer = SigV4Signer(case.credentials, region=case.region, service="ses")
    ours = signer.sign(
        case.method, case.host, case.path, case.query, case.headers, case.body, case.now
    )
    assert ours == _botocore_headers(case)


def test_generated_inputs_cover_the_awkward_characters() -> None:
    # Guard against the generator drifting into easy inputs.
    bodies = b"".join(c.body for c in GENERATED).decode("utf-8")
    queries = "".join(c.query for c in GENERATED)
    for needle in ("%2B", "%26", "%3D", "~", "%2A", "%20", "%C3%BC", "%F0%9F%98%80"):
        assert needle in bodies and needle in queries, needle
    assert "ü" in bodies and "😀" in bodies
    assert sum(c.credentials.session_token is not None for c in GENERATED) > 50
    assert len({c.region for c in GENERATED}) == len(REGIONS)


# --- verify_request and parse_authorization -------------------------------------------------

CREDS = AwsCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "tok/en+=")
BODY = b"Action=SendRawEmail&RawMessage.Data=SGVsbG8%3D&Destinations.member.1=a%2Bb%40x.org"


def _received() -> dict[str, str]:
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    signer = SigV4Signer(CREDS, region="eu-west-1", service="ses")
    added = signer.sign("POST", "email.eu-west-1.amazonaws.com", "/", "a=1", headers, BODY, 1.7e9)
    return {"Host": "email.eu-west-1.amazonaws.com", **headers, **added}


def _verify(
    headers: dict[str, str],
    *,
    body: bytes = BODY,
    query: str = "a=1",
    path: str = "/",
    method: str = "POST",
    secret: str = CREDS.secret_access_key,
) -> bool:
    return verify_request(
        method=method,
        path=path,
        query=query,
        headers=headers,
        body=body,
        secret_access_key=secret,
        authorization=parse_authorization(
            next(v for k, v in headers.items() if k.lower() == "authorization")
        ),
    )


def test_verify_accepts_what_we_signed() -> None:
    headers = _received()
    assert _verify(headers)
    assert _verify({name.upper(): value for name, value in headers.items()})
    assert _verify(headers, query="a=%31")  # same query, other spelling
    assert _verify({**headers, "User-Agent": "not signed, so free to change"})


@pytest.mark.parametrize(
    "change",
    [
        {"body": BODY + b"&x=1"},
        {"body": b""},
        {"query": "a=2"},
        {"query": ""},
        {"path": "/other"},
        {"method": "PUT"},
        {"secret": CREDS.secret_access_key[:-1] + "X"},
    ],
    ids=["body", "empty-body", "query", "no-query", "path", "method", "secret"],
)
def test_verify_rejects_changed_request(change: dict[str, object]) -> None:
    assert not _verify(_received(), **change)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("Content-Type", "text/plain"),
        ("Host", "email.us-east-1.amazonaws.com"),
        ("X-Amz-Date", "20231114T221321Z"),
        ("X-Amz-Security-Token", "other"),
        ("X-Amz-Content-SHA256", hashlib.sha256(b"other").hexdigest()),
    ],
)
def test_verify_rejects_changed_header(header: str, value: str) -> None:
    assert not _verify({**_received(), header: value})


def test_verify_rejects_missing_signed_header_or_date() -> None:
    headers = _received()
    for name in ("Content-Type", "X-Amz-Date", "X-Amz-Security-Token"):
        assert not _verify({k: v for k, v in headers.items() if k != name}), name


def test_verify_rejects_a_signature_without_host() -> None:
    signer = SigV4Signer(CREDS, region="eu-west-1", service="ses")
    added = signer.sign("POST", "h", "/", "", {}, b"", 1.7e9)
    auth = parse_authorization(added["Authorization"])
    assert "host" in auth.signed_headers
    stripped = added["Authorization"].replace("SignedHeaders=host;", "SignedHeaders=")
    assert not verify_request(
        method="POST",
        path="/",
        query="",
        headers={"host": "h", **added},
        body=b"",
        secret_access_key=CREDS.secret_access_key,
        authorization=parse_authorization(stripped),
    )


def test_parse_authorization_parts() -> None:
    auth = parse_authorization(_received()["Authorization"])
    assert auth.access_key_id == "AKIDEXAMPLE"
    assert (auth.date, auth.region, auth.service) == ("20231114", "eu-west-1", "ses")
    assert auth.signed_headers == ("content-type", "host", "x-amz-date", "x-amz-security-token")
    assert len(auth.signature) == 64


GOOD_SIG = "a" * 64


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "algorithm"),
        ("garbage", "algorithm"),
        ("AWS4-HMAC-SHA1 Credential=a/20150830/r/s/aws4_request", "algorithm"),
        ("AWS4-HMAC-SHA256", "NAME=VALUE"),
        ("AWS4-HMAC-SHA256 Credential", "NAME=VALUE"),
        (f"AWS4-HMAC-SHA256 SignedHeaders=host, Signature={GOOD_SIG}", "missing Credential"),
        (
            f"AWS4-HMAC-SHA256 Credential=a/20150830/r/s/aws4_request, Signature={GOOD_SIG}",
            "missing SignedHeaders",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=a/20150830/r/s/aws4_request, SignedHeaders=host",
            "missing Signature",
        ),
        (
            f"AWS4-HMAC-SHA256 Credential=a/20150830/r/s, SignedHeaders=host, Signature={GOOD_SIG}",
            "Credential must be",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=a/20150830/r/s/aws4_request/x, SignedHeaders=host, "
            f"Signature={GOOD_SIG}",
            "Credential must be",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=a/2015-08-30/r/s/aws4_request, SignedHeaders=host, "
            f"Signature={GOOD_SIG}",
            "date must be",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=a/20150830/r/s/aws4_request, SignedHeaders=Host, "
            f"Signature={GOOD_SIG}",
            "SignedHeaders must be",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=a/20150830/r/s/aws4_request, SignedHeaders=host;;x, "
            f"Signature={GOOD_SIG}",
            "SignedHeaders must be",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=a/20150830/r/s/aws4_request, SignedHeaders=host, "
            "Signature=xyz",
            "Signature must be",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=a/20150830/r/s/aws4_request, SignedHeaders=host, "
            f"Signature={GOOD_SIG.upper()}",
            "Signature must be",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=a/20150830/r/s/aws4_request, SignedHeaders=host, "
            f"Signature={GOOD_SIG}, Signature={GOOD_SIG}",
            "given twice",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=a/20150830/r/s/aws4_request, SignedHeaders=host, "
            f"Signature={GOOD_SIG}, Extra=1",
            "unknown component",
        ),
    ],
)
def test_parse_authorization_rejects_junk(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_authorization(value)


# --- the derived-key cache -----------------------------------------------------------------


def test_key_cache_across_a_date_boundary() -> None:
    midnight = float(calendar.timegm((2024, 3, 1, 0, 0, 0)))
    before, after = midnight - 0.5, midnight + 0.5
    signer = SigV4Signer(CREDS, region="us-east-1", service="ses")

    def fresh(now: float) -> dict[str, str]:
        return sign_headers(
            method="POST",
            host="email.us-east-1.amazonaws.com",
            path="/",
            query="",
            headers={},
            body=BODY,
            credentials=CREDS,
            region="us-east-1",
            service="ses",
            now=now,
        )

    for now in (before, after, before, after, after + 86_400 * 400):
        got = signer.sign("POST", "email.us-east-1.amazonaws.com", "/", "", {}, BODY, now)
        assert got == fresh(now)
    assert fresh(before)["X-Amz-Date"] == "20240229T235959Z"
    assert fresh(after)["X-Amz-Date"] == "20240301T000000Z"

    key_before = signer.signing_key("20240229")
    key_after = signer.signing_key("20240301")
    assert key_before != key_after
    assert key_after == derive_signing_key(CREDS.secret_access_key, "20240301", "us-east-1", "ses")
    assert signer.signing_key("20240301") is key_after  # cached: not derived again


def test_a_reused_signer_signs_each_request_as_a_fresh_one_would() -> None:
    # The signer keeps the last canonical header block: whatever changes between two calls
    # in the same second (a header, its value, the host, the token, the payload hash given
    # as a header, the time), the headers must be those a new signer gives.
    creds = AwsCredentials("AKIDEXAMPLE", "secret")
    temporary = AwsCredentials("ASIAEXAMPLE", "secret2", "token-1")
    now = 1_700_000_000.25
    calls: list[tuple[str, dict[str, str], bytes, float, AwsCredentials]] = [
        ("h.example", {"Content-Type": "application/json"}, b"{}", now, creds),
        ("h.example", {"Content-Type": "application/json"}, b'{"a":1}', now, creds),
        ("h.example", {"Content-Type": "text/plain"}, b'{"a":1}', now, creds),
        ("h.example", {"Content-Type": "text/plain", "X-Extra": "1"}, b"", now, creds),
        ("h.example", {"X-Extra": "1", "Content-Type": "text/plain"}, b"", now, creds),
        ("other.example", {"Content-Type": "text/plain"}, b"", now, creds),
        ("h.example", {"Content-Type": "text/plain"}, b"", now, temporary),
        (
            "h.example",
            {"Content-Type": "text/plain"},
            b"",
            now,
            temporary.__class__(temporary.access_key_id, temporary.secret_access_key, "token-2"),
        ),
        ("h.example", {"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}, b"x", now, creds),
        ("h.example", {"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}, b"y", now + 1, creds),
        ("h.example", {"Content-Type": "text/plain"}, b"y", now + 1, creds),
        ("h.example", {"Content-Type": "text/plain"}, b"y", now + 1, creds),
    ]
    reused = SigV4Signer(creds, region="us-east-1", service="ses")
    for host, headers, body, at, who in calls:
        fresh = SigV4Signer(who, region="us-east-1", service="ses")
        expected = fresh.sign("POST", host, "/v2/x", "", headers, body, at)
        assert reused.sign("POST", host, "/v2/x", "", headers, body, at, who) == expected
