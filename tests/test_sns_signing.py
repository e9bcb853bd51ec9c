"""SNS signatures: the documented string to sign, versions 1 and 2, tampering, cert URLs."""

from __future__ import annotations

import base64
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from bulkmail.signing import sns
from tests._sns import Signer, bounce, self_signed

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PEM = self_signed(KEY)
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem"


def test_notification_string_to_sign_is_the_documented_fields_in_order() -> None:
    doc = {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": "arn:aws:sns:us-west-2:123456789012:MyTopic",
        "Subject": "My First Message",
        "Message": "Hello world!\nsecond line",
        "Timestamp": "2012-05-02T00:54:06.655Z",
        "SignatureVersion": "1",
        "Signature": "x",
        "SigningCertURL": CERT_URL,
        "UnsubscribeURL": "https://sns.us-west-2.amazonaws.com/?Action=Unsubscribe",
    }
    assert sns.string_to_sign(doc) == (
        b"Message\nHello world!\nsecond line\n"
        b"MessageId\n22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324\n"
        b"Subject\nMy First Message\n"
        b"Timestamp\n2012-05-02T00:54:06.655Z\n"
        b"TopicArn\narn:aws:sns:us-west-2:123456789012:MyTopic\n"
        b"Type\nNotification\n"
    )
    del doc["Subject"]
    assert b"Subject" not in sns.string_to_sign(doc)


def test_confirmation_string_to_sign_includes_subscribe_url_and_token() -> None:
    doc = Signer(CERT_URL, KEY).confirmation("https://sns.us-east-1.amazonaws.com/?Token=t")
    text = sns.string_to_sign(doc).decode()
    names = text.split("\n")[0::2][:-1]
    assert names == [
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ]


@pytest.mark.parametrize("version", ["1", "2"])
def test_signed_message_verifies_and_any_change_is_refused(version: str) -> None:
    cert = sns.load_certificate(PEM, time.time())
    doc = Signer(CERT_URL, KEY).notification(bounce("m-1", "a@x.org"), version=version)
    sns.verify(doc, cert)
    for field, value in (("Message", doc["Message"] + " "), ("TopicArn", "arn:other")):
        changed = {**doc, field: value}
        with pytest.raises(sns.SnsSignatureError, match="does not match"):
            sns.verify(changed, cert)
    other = {**doc, "SignatureVersion": "2" if version == "1" else "1"}
    with pytest.raises(sns.SnsSignatureError):
        sns.verify(other, cert)


def test_openssl_agrees_with_the_signature(tmp_path: Path) -> None:
    """An independent verifier: openssl dgst -sha256 on the string to sign."""
    doc = Signer(CERT_URL, KEY).notification(bounce("m-1", "a@x.org"), version="2")
    (tmp_path / "data").write_bytes(sns.string_to_sign(doc))
    (tmp_path / "sig").write_bytes(base64.b64decode(doc["Signature"]))
    (tmp_path / "cert.pem").write_bytes(PEM)
    pub = subprocess.run(
        ["openssl", "x509", "-pubkey", "-noout", "-in", str(tmp_path / "cert.pem")],
        check=True,
        capture_output=True,
    ).stdout
    (tmp_path / "pub.pem").write_bytes(pub)
    result = subprocess.run(
        ["openssl", "dgst", "-sha256", "-verify", str(tmp_path / "pub.pem"), "-signature"]
        + [str(tmp_path / "sig"), str(tmp_path / "data")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and "Verified OK" in result.stdout


@pytest.mark.parametrize(
    "bad",
    [
        {"Type": "Bogus"},
        {"Type": "Notification", "Message": "m"},
        {"Type": "Notification", "Message": 1, "MessageId": "i", "Timestamp": "t"},
    ],
)
def test_malformed_messages_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(sns.SnsSignatureError):
        sns.string_to_sign(bad)


def test_unsupported_version_and_bad_base64() -> None:
    cert = sns.load_certificate(PEM, time.time())
    doc = Signer(CERT_URL, KEY).notification(bounce("m-1", "a@x.org"))
    with pytest.raises(sns.SnsSignatureError, match="SignatureVersion"):
        sns.verify({**doc, "SignatureVersion": "3"}, cert)
    with pytest.raises(sns.SnsSignatureError, match="base64"):
        sns.verify({**doc, "Signature": "!!!"}, cert)


def test_expired_certificate_and_garbage_are_refused() -> None:
    with pytest.raises(sns.SnsSignatureError, match="not valid now"):
        sns.load_certificate(PEM, 4e9)
    with pytest.raises(sns.SnsSignatureError, match="cannot be read"):
        sns.load_certificate(b"-----BEGIN CERTIFICATE-----\nnope\n", 1.8e9)


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        (CERT_URL, True),
        ("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem", True),
        ("https://SNS.US-EAST-1.AMAZONAWS.COM/x.pem", True),
        ("http://sns.us-east-1.amazonaws.com/x.pem", False),
        ("https://sns.us-east-1.amazonaws.com.evil.example/x.pem", False),
        ("https://evil.example/sns.us-east-1.amazonaws.com/x.pem", False),
        ("https://sns.us-east-1.amazonaws.com@evil.example/x.pem", False),
        ("https://user:pw@sns.us-east-1.amazonaws.com/x.pem", False),
        ("https://sns.us-east-1.amazonaws.com:8443/x.pem", False),
        ("https://sns.us-east-1.amazonaws.com/x.txt", False),
        ("https://sns.us-east-1.amazonaws.com\\@evil.example/x.pem", False),
        ("https://evilsns.us-east-1.amazonaws.com/x.pem", False),
        (None, False),
    ],
)
def test_cert_url_rules(url: object, ok: bool) -> None:
    assert sns.cert_url_allowed(url) is ok


def test_subscribe_url_rule_needs_no_pem_and_a_port_pattern_allows_a_port() -> None:
    url = "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=t"
    assert sns.cert_url_allowed(url, pem=False)
    assert not sns.cert_url_allowed(url)
    assert sns.cert_url_allowed("https://127.0.0.1:4443/c.pem", ["127.0.0.1:*"])
    assert not sns.cert_url_allowed("https://127.0.0.1:4443/c.pem", ["127.0.0.1"])
