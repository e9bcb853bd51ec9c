"""Alibaba Cloud RPC signature 1.0: the documented example, then the official SDK helper."""

from __future__ import annotations

import random

import pytest
from alibabacloud_openapi_util.client import Client as AlibabaUtil

from bulkmail.signing import (
    AlibabaCredentials,
    percent_encode,
    rpc_signature,
    rpc_timestamp,
    sign_params,
)
from bulkmail.signing.aliyun import string_to_sign

# The worked example of Alibaba Cloud's RPC signature documentation (published values:
# AccessKey secret "testsecret", DescribeRegions, GET).
DOC_PARAMS = {
    "AccessKeyId": "testid",
    "Action": "DescribeRegions",
    "Format": "XML",
    "SignatureMethod": "HMAC-SHA1",
    "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
    "SignatureVersion": "1.0",
    "Timestamp": "2016-02-23T12:46:24Z",
    "Version": "2014-05-26",
}
DOC_STRING_TO_SIGN = (
    "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML"
    "%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"
    "%26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
)
DOC_SIGNATURE = "OLeaidS1JvxuMvnyHOwuJ+uX5qY="


def test_documented_example() -> None:
    assert string_to_sign("GET", DOC_PARAMS) == DOC_STRING_TO_SIGN
    assert rpc_signature("GET", DOC_PARAMS, "testsecret") == DOC_SIGNATURE
    # A Signature already in the parameters is not signed over.
    assert rpc_signature("GET", {**DOC_PARAMS, "Signature": "x"}, "testsecret") == DOC_SIGNATURE


def test_documented_example_through_sign_params() -> None:
    business = {"Action": "DescribeRegions", "Format": "XML", "Version": "2014-05-26"}
    signed = sign_params(
        business,
        AlibabaCredentials("testid", "testsecret"),
        method="GET",
        nonce="3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
        timestamp=rpc_timestamp(1456231584),
    )
    assert signed == {**DOC_PARAMS, "Signature": DOC_SIGNATURE}


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        ("A-Za-z0-9-_.~", "A-Za-z0-9-_.~"),
        (" ", "%20"),
        ("*", "%2A"),
        ("+", "%2B"),
        ("~", "~"),
        ("/", "%2F"),
        ("&=", "%26%3D"),
        ("%", "%25"),
        ("ü中", "%C3%BC%E4%B8%AD"),
        ("", ""),
    ],
)
def test_percent_encode(raw: str, encoded: str) -> None:
    assert percent_encode(raw) == encoded


def test_rpc_timestamp() -> None:
    assert rpc_timestamp(1456231584) == "2016-02-23T12:46:24Z"
    assert rpc_timestamp(1456231584.999) == "2016-02-23T12:46:24Z"
    assert rpc_timestamp(0) == "1970-01-01T00:00:00Z"


ALPHABET = "aZ09 *~+&=%/?-_.!'()#ü€中😀\t"


def _text(rng: random.Random, low: int, high: int) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(low, high)))


def _generate(count: int, seed: int) -> list[tuple[str, dict[str, str], str]]:
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        params = {_text(rng, 1, 8): _text(rng, 0, 16) for _ in range(rng.randint(1, 8))}
        params.update(
            Action="SingleSendMail",
            AccountName="news@mail.example.org",
            ToAddress=f"{_text(rng, 1, 5)}@example.org",
            Subject=_text(rng, 0, 20),
            HtmlBody=_text(rng, 0, 40),
            TagName="",
        )
        secret = "".join(rng.choice("abcXYZ019+/=&") for _ in range(30))
        cases.append((rng.choice(["POST", "GET"]), params, secret))
    return cases


GENERATED = _generate(300, seed=20160223)


@pytest.mark.parametrize(
    ("method", "params", "secret"), GENERATED, ids=[f"gen{i}" for i in range(len(GENERATED))]
)
def test_matches_alibaba_sdk(method: str, params: dict[str, str], secret: str) -> None:
    # get_rpcsignature(signed_params, method, secret) signs every key it is given.
    assert rpc_signature(method, params, secret) == AlibabaUtil.get_rpcsignature(
        params, method, secret
    )


def test_generated_inputs_cover_the_awkward_characters() -> None:
    joined = "".join(k + v for _, params, _ in GENERATED for k, v in params.items())
    for char in " *~+&=ü😀":
        assert char in joined, char
    assert all("" in params.values() for _, params, _ in GENERATED)


CREDS = AlibabaCredentials("LTAI5tExample", "s3cr3t-key")
STS = AlibabaCredentials("STS.NExample", "s3cr3t-key", "sts-token/+=")


def test_sign_params_adds_the_common_parameters() -> None:
    business = {"Action": "SingleSendMail", "Version": "2015-11-23", "ToAddress": "a@x.org"}
    signed = sign_params(business, CREDS, nonce="n-1", timestamp="2024-01-01T00:00:00Z")
    assert business == {"Action": "SingleSendMail", "Version": "2015-11-23", "ToAddress": "a@x.org"}
    assert signed == {
        **business,
        "AccessKeyId": "LTAI5tExample",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "SignatureNonce": "n-1",
        "Timestamp": "2024-01-01T00:00:00Z",
        "Format": "JSON",
        "Signature": signed["Signature"],
    }
    unsigned = {k: v for k, v in signed.items() if k != "Signature"}
    assert signed["Signature"] == rpc_signature("POST", unsigned, "s3cr3t-key")
    assert signed["Signature"] == AlibabaUtil.get_rpcsignature(unsigned, "POST", "s3cr3t-key")
    assert "SecurityToken" not in signed


def test_sign_params_with_security_token() -> None:
    signed = sign_params({"Action": "SingleSendMail"}, STS, nonce="n", timestamp="t")
    assert signed["SecurityToken"] == "sts-token/+="
    unsigned = {k: v for k, v in signed.items() if k != "Signature"}
    assert signed["Signature"] == rpc_signature("POST", unsigned, "s3cr3t-key")
    # The token is signed: a different token gives a different signature.
    other = AlibabaCredentials(STS.access_key_id, STS.access_key_secret, "other")
    assert (
        sign_params({"Action": "SingleSendMail"}, other, nonce="n", timestamp="t")["Signature"]
        != signed["Signature"]
    )


def test_sign_params_keeps_given_format_and_replaces_old_signature() -> None:
    signed = sign_params(
        {"Action": "A", "Format": "XML", "Signature": "stale"}, CREDS, nonce="n", timestamp="t"
    )
    assert signed["Format"] == "XML"
    assert signed["Signature"] != "stale"
    unsigned = {k: v for k, v in signed.items() if k != "Signature"}
    assert signed["Signature"] == rpc_signature("POST", unsigned, "s3cr3t-key")


def test_nonce_method_and_timestamp_change_the_signature() -> None:
    def signature(**kwargs: str) -> str:
        args = {"method": "POST", "nonce": "n-1", "timestamp": "2024-01-01T00:00:00Z", **kwargs}
        return sign_params({"Action": "SingleSendMail"}, CREDS, **args)["Signature"]

    base = signature()
    assert signature() == base
    assert signature(nonce="n-2") != base
    assert signature(method="GET") != base
    assert signature(timestamp="2024-01-01T00:00:01Z") != base


def test_credentials_repr_hides_secrets() -> None:
    text = repr(STS)
    assert "STS.NExample" in text and "s3cr3t" not in text and "sts-token" not in text
