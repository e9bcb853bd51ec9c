"""Shared fixtures: real peers started by the tests themselves on 127.0.0.1.

``moto_ses`` runs moto's server in a subprocess with its SigV4 checking turned on: an IAM
user with an ``ses:*`` policy is created while auth is still off, the sender identity is
verified, then ``POST /moto-api/reset-auth`` makes every later request need a valid
signature from that user's key.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bulkmail.signing import AwsCredentials

SENDER = "news@example.com"

# botocore's credential chain (bulkmail[aws]) ends with the EC2 instance metadata service on
# a link-local address: never let a test (or a CLI it starts) reach for it. The IMDS tests
# point it at a server of their own on 127.0.0.1.
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class MotoSes:
    url: str
    credentials: AwsCredentials

    def data(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/moto-api/data.json") as response:
            result: dict[str, Any] = json.loads(response.read())
            return result

    def messages(self) -> list[dict[str, Any]]:
        ses = self.data().get("ses", {})
        return [
            *ses.get("Message", []),
            *ses.get("RawMessage", []),
            *ses.get("TemplateMessage", []),
        ]

    def recipients(self, domain: str) -> list[str]:
        """Every To address (across simple, raw and templated sends) in ``domain``."""
        found: list[str] = []
        for message in self.messages():
            destinations = message.get("destinations") or {}
            if isinstance(destinations, dict):
                addresses = destinations.get("ToAddresses", [])
            else:
                addresses = destinations
            found.extend(a for a in addresses if a.endswith("@" + domain))
        return found


@pytest.fixture(scope="session")
def moto_ses() -> Iterator[MotoSes]:
    import botocore.session

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/moto-api/data.json").close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        session = botocore.session.get_session()

        def client(service: str) -> Any:
            return session.create_client(
                service,
                region_name="us-east-1",
                endpoint_url=url,
                aws_access_key_id="admin",
                aws_secret_access_key="admin",
            )

        iam = client("iam")
        iam.create_user(UserName="bulkmail")
        iam.put_user_policy(
            UserName="bulkmail",
            PolicyName="ses-send",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "ses:*", "Resource": "*"}],
                }
            ),
        )
        key = iam.create_access_key(UserName="bulkmail")["AccessKey"]
        client("ses").verify_email_identity(EmailAddress=SENDER)
        request = urllib.request.Request(
            url + "/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        urllib.request.urlopen(request).close()
        yield MotoSes(url, AwsCredentials(key["AccessKeyId"], key["SecretAccessKey"]))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


CampaignFactory = Callable[..., Path]


@pytest.fixture
def make_campaign(tmp_path: Path) -> CampaignFactory:
    """Write a campaign folder and return the campaign file's path.

    ``rows`` are CSV rows after the header ``email,first_name``; ``extra`` is appended YAML.
    """

    def factory(
        *,
        rows: list[str] | None = None,
        count: int = 10,
        domain: str = "example.org",
        provider: str = "name: ses\n  region: us-east-1\n  endpoint: sandbox",
        rate: float | str = 1000,
        extra: str = "",
        name: str = "campaign",
    ) -> Path:
        if rows is None:
            rows = [f"user{i:06d}@{domain},Name{i}" for i in range(count)]
        (tmp_path / "list.csv").write_text(
            "email,first_name\n" + "".join(r + "\n" for r in rows), encoding="utf-8"
        )
        (tmp_path / "body.txt").write_text("Hello {{ first_name }}!\n", encoding="utf-8")
        path = tmp_path / f"{name}.yaml"
        path.write_text(
            f"name: {name}\n"
            f"provider:\n  {provider}\n"
            f"rate: {rate}\n"
            f'from: "News <{SENDER}>"\n'
            'subject: "Hi {{ first_name }}"\n'
            "text: {file: body.txt}\n"
            'html: "<p>Hello {{ first_name }}</p>"\n'
            "recipients: list.csv\n" + extra,
            encoding="utf-8",
        )
        return path

    return factory


from tests.fleet_conftest import valkey  # noqa: E402,F401  (the fleet tests' real server)
