"""Test helpers: an SNS look-alike that signs messages, and the HTTPS host serving its cert.

``CertHost`` is a real HTTPS server on 127.0.0.1 (certificate from a trustme CA) that serves
the signing certificate at ``/SimpleNotificationService-test.pem`` and records every
``/confirm`` (SubscribeURL) hit. ``Signer`` builds SNS documents signed with version 1 or 2.
"""

from __future__ import annotations

import datetime as dt
import ssl
import uuid
from typing import Any

import orjson
import trustme
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from bulkmail.signing import sns

TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-events"
OTHER_TOPIC = "arn:aws:sns:us-east-1:123456789012:someone-else"


def self_signed(key: rsa.RSAPrivateKey, cn: str = "sns.amazonaws.com") -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


class CertHost:
    """HTTPS on 127.0.0.1:port: the signing cert and the SubscribeURL."""

    def __init__(self, pem: bytes) -> None:
        self.pem = pem
        self.ca = trustme.CA()
        self.confirmed: list[str] = []
        self.cert_fetches = 0
        self._runner: web.AppRunner | None = None
        self.base = ""

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx

    async def _cert(self, request: web.Request) -> web.Response:
        self.cert_fetches += 1
        return web.Response(body=self.pem)

    async def _confirm(self, request: web.Request) -> web.Response:
        self.confirmed.append(request.query.get("Token", ""))
        return web.Response(text="<ConfirmSubscriptionResponse/>")

    async def __aenter__(self) -> CertHost:
        app = web.Application()
        app.router.add_get("/SimpleNotificationService-test.pem", self._cert)
        app.router.add_get("/confirm", self._confirm)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=server_ctx)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base = f"https://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    @property
    def cert_url(self) -> str:
        return self.base + "/SimpleNotificationService-test.pem"


class Signer:
    """Builds signed SNS documents the way SNS does."""

    def __init__(self, cert_url: str, key: rsa.RSAPrivateKey | None = None) -> None:
        self.key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.cert_url = cert_url

    def notification(
        self,
        ses_event: dict[str, Any],
        *,
        version: str = "2",
        topic: str = TOPIC,
        subject: str | None = None,
    ) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "TopicArn": topic,
            "Message": orjson.dumps(ses_event).decode(),
            "Timestamp": "2026-12-01T20:00:00.000Z",
            "SignatureVersion": version,
            "SigningCertURL": self.cert_url,
            "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
        }
        if subject is not None:
            doc["Subject"] = subject
        doc["Signature"] = sns.sign(doc, self.key, version)
        return doc

    def confirmation(
        self, subscribe_url: str, *, version: str = "1", kind: str = "SubscriptionConfirmation"
    ) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "Type": kind,
            "MessageId": str(uuid.uuid4()),
            "Token": "tok-123",
            "TopicArn": TOPIC,
            "Message": "You have chosen to subscribe to the topic.",
            "SubscribeURL": subscribe_url,
            "Timestamp": "2026-12-01T20:00:00.000Z",
            "SignatureVersion": version,
            "SigningCertURL": self.cert_url,
        }
        doc["Signature"] = sns.sign(doc, self.key, version)
        return doc


def bounce(
    message_id: str, *emails: str, kind: str = "Permanent", shape: str = "notification"
) -> dict[str, Any]:
    field = "notificationType" if shape == "notification" else "eventType"
    return {
        field: "Bounce",
        "bounce": {
            "bounceType": kind,
            "bounceSubType": "General" if kind == "Permanent" else "MailboxFull",
            "bouncedRecipients": [
                {"emailAddress": e, "diagnosticCode": "smtp; 550 5.1.1 user unknown"}
                for e in emails
            ],
            "timestamp": "2026-12-01T20:00:00.000Z",
            "feedbackId": "fb-1",
        },
        "mail": {"messageId": message_id, "destination": list(emails)},
    }


def complaint(message_id: str, *emails: str, shape: str = "notification") -> dict[str, Any]:
    field = "notificationType" if shape == "notification" else "eventType"
    return {
        field: "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": e} for e in emails],
            "complaintFeedbackType": "abuse",
            "timestamp": "2026-12-01T20:00:00.000Z",
        },
        "mail": {"messageId": message_id, "destination": list(emails)},
    }
