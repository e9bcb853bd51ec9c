"""The AWS credential chain through botocore (``bulkmail[aws]``), against local servers on
127.0.0.1: ECS/EKS container credentials, EC2 instance metadata (IMDSv2), a profile with
``credential_process``, and a refresh of expiring container credentials. Every test runs with
an empty environment and home, so nothing of the machine's own AWS set-up is read."""

from __future__ import annotations

import asyncio
import datetime
import json
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import botocore  # noqa: F401  (a test extra: make test installs it; never skipped)
import pytest

from bulkmail.credentials import aws_credential_source
from bulkmail.errors import CredentialsError


def _expiry(seconds: float) -> str:
    when = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


class Server:
    """A threaded HTTP server whose answers come from ``route(method, path, headers)``."""

    def __init__(self, route: Callable[[str, str, Any], tuple[int, str]]) -> None:
        self.calls: list[tuple[str, str, dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                outer.calls.append((self.command, self.path, dict(self.headers)))
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, body = route(self.command, self.path, self.headers)
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                return None

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def clean_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    import os

    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    yield tmp_path


def _role(n: int, lifetime: float) -> str:
    return json.dumps(
        {
            "Code": "Success",
            "Type": "AWS-HMAC",
            "AccessKeyId": f"ASIACONTAINER{n:07d}",
            "SecretAccessKey": f"secret-{n}",
            "Token": f"token-{n}",
            "Expiration": _expiry(lifetime),
        }
    )


def test_container_credentials_with_their_authorization_token(
    clean_aws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = iter(range(1, 100))

    def route(method: str, path: str, headers: Any) -> tuple[int, str]:
        if path != "/v2/credentials/abc" or headers.get("Authorization") != "pod-token":
            return 403, "{}"
        return 200, _role(next(served), 6 * 3600)

    with Server(route) as server:
        monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", server.url + "/v2/credentials/abc")
        token_file = clean_aws / "eks-pod-identity-token"
        token_file.write_text("pod-token")
        monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", str(token_file))
        source = aws_credential_source()
    creds = source.current()
    assert (creds.access_key_id, creds.session_token) == ("ASIACONTAINER0000001", "token-1")
    assert source.method == "container-role" and source.expires_at is not None


def test_instance_metadata_with_an_imdsv2_token(
    clean_aws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def route(method: str, path: str, headers: Any) -> tuple[int, str]:
        if method == "PUT" and path == "/latest/api/token":
            return 200, "imds-session-token"
        if headers.get("X-aws-ec2-metadata-token") != "imds-session-token":
            return 401, ""  # IMDSv2 only: every read needs the session token
        if path == "/latest/meta-data/iam/security-credentials/":
            return 200, "bulkmail-role"
        if path == "/latest/meta-data/iam/security-credentials/bulkmail-role":
            return 200, _role(7, 6 * 3600)
        return 404, ""

    with Server(route) as server:
        monkeypatch.delenv("AWS_EC2_METADATA_DISABLED")
        monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", server.url + "/")
        source = aws_credential_source()
    assert source.current().access_key_id == "ASIACONTAINER0000007"
    assert source.method == "iam-role"
    assert ("PUT", "/latest/api/token") in [(m, p) for m, p, _ in server.calls]


def test_a_profile_with_credential_process(
    clean_aws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = clean_aws / "issue.py"
    script.write_text(
        "import json\n"
        "print(json.dumps({'Version': 1, 'AccessKeyId': 'ASIAPROCESS', "
        f"'SecretAccessKey': 'process-secret', 'SessionToken': 'process-token', "
        f"'Expiration': '{_expiry(3 * 3600)}'}}))\n"
    )
    (clean_aws / "config").write_text(
        f"[profile mailer]\ncredential_process = {sys.executable} {script}\n"
    )
    monkeypatch.setenv("AWS_PROFILE", "mailer")
    source = aws_credential_source()
    assert source.current().access_key_id == "ASIAPROCESS"
    assert source.current().session_token == "process-token"


def test_nothing_found_says_where_it_looked_without_values(clean_aws: Path) -> None:
    with pytest.raises(CredentialsError, match="AWS_ACCESS_KEY_ID.*instance metadata"):
        aws_credential_source()


async def test_expiring_container_credentials_are_refreshed_in_the_background(
    clean_aws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = iter(range(1, 100))
    lifetime = 12 * 60  # inside botocore's 15-minute advisory window: it refreshes on ask

    def route(method: str, path: str, headers: Any) -> tuple[int, str]:
        return 200, _role(next(served), lifetime)

    import time

    offset = [0.0]
    with Server(route) as server:
        monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", server.url + "/creds")
        source = aws_credential_source(clock=lambda: time.time() + offset[0])
        first = source.current()
        fetched = len(server.calls)
        assert source.current() is first and len(server.calls) == fetched  # cheap
        offset[0] = lifetime - 200  # under five minutes left on our clock
        assert source.current() is first  # still the old ones while the refresh runs
        for _ in range(500):
            if source.current() is not first:
                break
            await asyncio.sleep(0.01)
    assert source.current().access_key_id != first.access_key_id
    assert len(server.calls) > fetched and source.refreshes == 1


@pytest.fixture(scope="module")
def moto_sts() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def _assume_role_profile(home: Path, monkeypatch: pytest.MonkeyPatch, sts: str) -> None:
    (home / "credentials").write_text(
        "[base]\naws_access_key_id = AKIABASE0000EXAMPLE\naws_secret_access_key = base-secret\n"
    )
    (home / "config").write_text(
        "[profile mailer]\n"
        "role_arn = arn:aws:iam::123456789012:role/bulkmail-sender\n"
        "source_profile = base\n"
        "region = us-east-1\n"
    )
    monkeypatch.setenv("AWS_PROFILE", "mailer")
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts)


def test_assume_role_from_a_source_profile_against_moto_sts(
    clean_aws: Path, monkeypatch: pytest.MonkeyPatch, moto_sts: str
) -> None:
    _assume_role_profile(clean_aws, monkeypatch, moto_sts)
    source = aws_credential_source()
    creds = source.current()
    assert source.method == "assume-role"
    assert creds.session_token and creds.access_key_id != "AKIABASE0000EXAMPLE"
    assert source.expires_at is not None


def test_a_refused_role_is_a_credentials_error_at_start_up(
    clean_aws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def route(method: str, path: str, headers: Any) -> tuple[int, str]:
        return 403, (
            "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>"
            "<Message>not authorized to perform: sts:AssumeRole</Message></Error>"
            "<RequestId>r</RequestId></ErrorResponse>"
        )

    with Server(route) as server:
        _assume_role_profile(clean_aws, monkeypatch, server.url)
        with pytest.raises(CredentialsError, match="AccessDenied") as info:
            aws_credential_source()
    assert "base-secret" not in str(info.value)
