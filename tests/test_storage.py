"""Tests of `sayo.storage` against a real moto S3 server on loopback: round trip, multipart, checksums, retries."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from moto_s3 import DUMMY_ENV, moto_server

from sayo.storage import (
    ChecksumMismatchError,
    MiB,
    S3Location,
    TransferSettings,
    download_dir,
    make_client,
    redact,
    upload_dir,
)

SMALL_PARTS = TransferSettings(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_attempts=4)


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Endpoint URL of a fresh moto server with an empty bucket 'sayo-test'."""
    with moto_server(monkeypatch) as endpoint:
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="sayo-test")
        yield endpoint


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [
        ("s3://b/p/q", "b", "p/q"),  # nested prefix
        ("s3://b/p/q/", "b", "p/q"),  # trailing slash dropped
        ("s3://b", "b", ""),  # whole bucket
    ],
)
def test_parse_location(url: str, bucket: str, prefix: str) -> None:
    assert S3Location.parse(url) == S3Location(bucket, prefix)


@pytest.mark.parametrize("url", ["http://b/p", "s3:///p", "b/p"])
def test_parse_location_rejects_non_s3(url: str) -> None:
    with pytest.raises(ValueError, match="s3://bucket/prefix"):
        S3Location.parse(url)


def test_redact_drops_user_info() -> None:
    assert redact("http://user:secret@minio.local:9000/x") == "http://minio.local:9000/x"
    assert redact(None) == "<default endpoint>"


def test_round_trip_with_multipart_file(s3: str, tmp_path: Path) -> None:
    source = tmp_path / "up"
    (source / "images").mkdir(parents=True)
    (source / "manifest.jsonl").write_text('{"id": "a"}\n')
    (source / "images" / "x.png").write_bytes(b"\x89PNG fake")
    (source / "big.bin").write_bytes(os.urandom(12 * MiB + 123))  # 3 parts of 5 MiB
    client = make_client(settings=SMALL_PARTS)
    keys = upload_dir(source, "s3://sayo-test/datasets/v1", client=client, settings=SMALL_PARTS)
    assert sorted(keys) == ["datasets/v1/big.bin", "datasets/v1/images/x.png", "datasets/v1/manifest.jsonl"]
    etag = client.head_object(Bucket="sayo-test", Key="datasets/v1/big.bin")["ETag"]
    assert etag.strip('"').endswith("-3"), f"big.bin was not uploaded in 3 parts: ETag {etag}"
    target = tmp_path / "down"
    download_dir("s3://sayo-test/datasets/v1", target, client=client, settings=SMALL_PARTS)
    assert _tree(target) == _tree(source)


def test_download_detects_corruption(s3: str, tmp_path: Path) -> None:
    client = make_client()
    good = hashlib.sha256(b"good bytes").hexdigest()
    client.put_object(Bucket="sayo-test", Key="d/f.txt", Body=b"bad bytes", Metadata={"sha256": good})
    with pytest.raises(ChecksumMismatchError, match="sha256"):
        download_dir("s3://sayo-test/d", tmp_path / "out", client=client)
    assert not (tmp_path / "out" / "f.txt").exists()
    assert [p.name for p in (tmp_path / "out").iterdir()] == []  # no temp file left behind


def _inject_503(client: object, failures: int) -> list[str]:
    """Make the first `failures` PutObject requests answer 503 SlowDown; returns a log of attempts."""
    attempts: list[str] = []

    class _Body:
        def stream(self, **_: object) -> Iterator[bytes]:
            yield b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"

    def before_send(request: object, **_: object) -> AWSResponse | None:
        attempts.append("503" if len(attempts) < failures else "sent")
        if attempts[-1] == "503":
            return AWSResponse(getattr(request, "url", ""), 503, {}, _Body())
        return None

    client.meta.events.register("before-send.s3.PutObject", before_send)  # type: ignore[attr-defined]
    return attempts


def test_retries_on_injected_503(s3: str, tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("hello")
    client = make_client(settings=SMALL_PARTS)
    attempts = _inject_503(client, failures=2)
    upload_dir(tmp_path, "s3://sayo-test/r", client=client)
    assert attempts == ["503", "503", "sent"]
    assert client.get_object(Bucket="sayo-test", Key="r/f.txt")["Body"].read() == b"hello"


def test_gives_up_after_max_attempts(s3: str, tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("hello")
    client = make_client(settings=TransferSettings(max_attempts=2))
    attempts = _inject_503(client, failures=10)
    with pytest.raises(Exception) as info:
        upload_dir(tmp_path, "s3://sayo-test/r", client=client)
    assert "SlowDown" in str(info.value) or isinstance(info.value.__cause__, ClientError)
    assert attempts == ["503", "503"]


def test_credentials_never_logged(s3: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "f.txt").write_text("x")
    with caplog.at_level(logging.DEBUG, logger="sayo"):
        upload_dir(tmp_path, "s3://sayo-test/c")
        download_dir("s3://sayo-test/c", tmp_path / "back")
    sayo_text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("sayo"))
    assert "uploaded 1 file(s)" in sayo_text
    assert DUMMY_ENV["AWS_SECRET_ACCESS_KEY"] not in sayo_text
    assert DUMMY_ENV["AWS_ACCESS_KEY_ID"] not in sayo_text
