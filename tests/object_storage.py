"""A real S3-compatible server for the tests: moto's standalone server, as s3fs's own tests use.

`s3_server` starts one per test session on a free loopback port; `s3` points the AWS libraries
at it for one test (endpoint, test keys, region) and gives a fresh bucket. Nothing is mocked
inside the client libraries: s3fs and boto3 talk HTTP to the server.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

KEY = "testing"  # moto accepts any key while its access control is off (the default)
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    def client(self, key: str = KEY, secret: str = KEY) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            region_name=REGION,
        )

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": KEY,
            "AWS_SECRET_ACCESS_KEY": KEY,
            "AWS_DEFAULT_REGION": REGION,
        }


@dataclass(frozen=True)
class Bucket:
    server: S3Server
    name: str

    def url(self, key: str = "") -> str:
        return f"s3://{self.name}/{key}".rstrip("/")

    def upload_folder(self, folder: Path, prefix: str) -> None:
        client = self.server.client()
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                client.upload_file(str(path), self.name, f"{prefix}/{path.relative_to(folder)}")

    def put(self, key: str, data: bytes) -> None:
        self.server.client().put_object(Bucket=self.name, Key=key, Body=data)

    def get(self, key: str) -> bytes:
        body = self.server.client().get_object(Bucket=self.name, Key=key)["Body"]
        return bytes(body.read())

    def keys(self, prefix: str = "") -> list[str]:
        pages = (
            self.server.client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.name, Prefix=prefix)
        )
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


@contextlib.contextmanager
def started_server() -> Iterator[S3Server]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield S3Server(f"http://{host}:{port}")
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    pytest.importorskip("s3fs", reason="pip install -e '.[dev]' (CI installs it)")
    with started_server() as server:
        yield server


@pytest.fixture
def s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Bucket:
    """A new bucket on the session's server, with the environment pointing at it."""
    import fsspec.config

    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(fsspec.config, "conf", {})  # a storage block's options stay in the test
    bucket = Bucket(s3_server, f"inpaint-{uuid.uuid4().hex[:12]}")
    s3_server.client().create_bucket(Bucket=bucket.name)
    return bucket
