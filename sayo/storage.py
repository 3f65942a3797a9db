"""Directories to and from S3 (`s3://bucket/prefix`): datasets, checkpoints, reports.

Why boto3 directly (besides DVC): Kubeflow components and CI need to move a directory without a
git checkout. The endpoint comes from `AWS_ENDPOINT_URL` (MinIO in the cluster, moto in tests),
credentials only from boto3's usual chain (environment, profile, instance role) and are never
logged. Large files go up in multipart chunks; throttling and 5xx answers are retried with
exponential backoff by botocore's "standard" retry mode; every object carries the sha256 of its
bytes in its metadata and each download is checked against it before it is moved into place.

A directory whose readers must never see half of it (a mirrored checkpoint) names its completion
marker in `upload_dir(..., last=[marker])`: the marker goes up after every other file, and
`delete_prefix(..., first=[marker])` takes it away before anything else, so "marker present"
means "every file present". boto3 is imported when a client is made, so modules that only may
use S3 (training with `checkpoint.mirror`) import this one without it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger(__name__)

SHA_KEY = "sha256"  # object metadata key (x-amz-meta-sha256)
MiB = 1024 * 1024


class ChecksumMismatchError(OSError):
    """A downloaded object's sha256 differs from the one recorded at upload."""


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key prefix (no leading or trailing slash)."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """`s3://bucket/some/prefix` → S3Location("bucket", "some/prefix")."""
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"expected an s3://bucket/prefix URL, got {url!r}")
        return cls(parts.netloc, parts.path.strip("/"))

    def key(self, relpath: str) -> str:
        """The object key of a file at `relpath` under this prefix."""
        return f"{self.prefix}/{relpath}" if self.prefix else relpath


@dataclass(frozen=True)
class TransferSettings:
    """Multipart and retry knobs (defaults suit MinIO and S3)."""

    multipart_threshold: int = 64 * MiB  # files at least this large are uploaded in parts
    multipart_chunksize: int = 16 * MiB  # part size (S3 needs >= 5 MiB except the last part)
    max_concurrency: int = 4
    max_attempts: int = 8  # total tries per request, throttling and 5xx included


def redact(url: str | None) -> str:
    """`url` without any user:password part, safe to log."""
    if not url:
        return "<default endpoint>"
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def make_client(endpoint_url: str | None = None, settings: TransferSettings | None = None) -> Any:
    """An S3 client for `endpoint_url` (default: `AWS_ENDPOINT_URL`, else AWS) with standard retries."""
    import boto3
    from botocore.config import Config

    settings = settings or TransferSettings()
    endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
    config = Config(
        retries={"total_max_attempts": settings.max_attempts, "mode": "standard"},
        s3={"addressing_style": "path"} if endpoint else None,
    )
    log.info("S3 client for %s", redact(endpoint))
    return boto3.client("s3", endpoint_url=endpoint, config=config)


def sha256_file(path: Path, block: int = 4 * MiB) -> str:
    """Hex sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def _transfer(settings: TransferSettings) -> Any:
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(
        multipart_threshold=settings.multipart_threshold,
        multipart_chunksize=settings.multipart_chunksize,
        max_concurrency=settings.max_concurrency,
    )


def upload_dir(
    local: str | Path,
    url: str,
    client: Any = None,
    settings: TransferSettings | None = None,
    last: Collection[str] = (),
    skip: Collection[str] = (),
) -> list[str]:
    """Upload every file under `local` to `url` (keys = prefix + relative path). Returns the keys.

    Files whose relative paths are in `last` (a completion marker) go up after all the others;
    those in `skip` stay behind (another node's writer uploads the marker).
    """
    local, where, settings = Path(local), S3Location.parse(url), settings or TransferSettings()
    client = client or make_client(settings=settings)
    if not local.is_dir():
        raise NotADirectoryError(f"{local} is not a directory")
    missing = [name for name in last if not (local / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{local} has no {missing} to upload last")
    files = sorted(p for p in local.rglob("*") if p.is_file() and p.relative_to(local).as_posix() not in skip)
    files.sort(key=lambda p: p.relative_to(local).as_posix() in last)  # stable: the rest, then `last`
    keys = []
    for path in files:
        key = where.key(path.relative_to(local).as_posix())
        upload_file(path, f"s3://{where.bucket}/{key}", client, settings)
        keys.append(key)
    log.info("uploaded %d file(s) to s3://%s/%s", len(keys), where.bucket, where.prefix)
    return keys


def upload_file(
    path: str | Path, url: str, client: Any = None, settings: TransferSettings | None = None
) -> None:
    """Upload one file to the object `url` (`s3://bucket/key`) with its sha256 in the metadata."""
    where, settings = S3Location.parse(url), settings or TransferSettings()
    client = client or make_client(settings=settings)
    extra = {"Metadata": {SHA_KEY: sha256_file(Path(path))}}
    client.upload_file(str(path), where.bucket, where.prefix, ExtraArgs=extra, Config=_transfer(settings))
    log.debug("uploaded %s to %s", path, url)


def list_dirs(url: str, client: Any = None) -> list[str]:
    """Names of the "directories" directly under `url` (common prefixes), sorted."""
    where = S3Location.parse(url)
    client = client or make_client()
    prefix = f"{where.prefix}/" if where.prefix else ""
    names = []
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=where.bucket, Prefix=prefix, Delimiter="/"
    )
    for page in pages:
        names += [item["Prefix"][len(prefix) :].rstrip("/") for item in page.get("CommonPrefixes", [])]
    return sorted(names)


def exists(url: str, client: Any = None) -> bool:
    """Whether the object at `url` (`s3://bucket/key`) exists."""
    from botocore.exceptions import ClientError

    where = S3Location.parse(url)
    client = client or make_client()
    try:
        client.head_object(Bucket=where.bucket, Key=where.prefix)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def delete_prefix(url: str, client: Any = None, first: Collection[str] = ()) -> int:
    """Delete every object under `url`; those at the relative paths in `first` (a completion
    marker) before the rest. Returns how many objects were deleted."""
    where = S3Location.parse(url)
    client = client or make_client()
    keys = _list_keys(client, where)
    marked = {where.key(name) for name in first}
    early, rest = [k for k in keys if k in marked], [k for k in keys if k not in marked]
    for batch in [early, *(rest[i : i + 1000] for i in range(0, len(rest), 1000))]:  # 1000: S3's limit
        if batch:
            done = client.delete_objects(
                Bucket=where.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
            )
            if done.get("Errors"):
                raise OSError(f"could not delete from s3://{where.bucket}: {done['Errors'][:3]}")
    log.info("deleted %d object(s) under s3://%s/%s", len(keys), where.bucket, where.prefix)
    return len(keys)


def _list_keys(client: Any, where: S3Location) -> list[str]:
    prefix = f"{where.prefix}/" if where.prefix else ""
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=where.bucket, Prefix=prefix):
        keys += [item["Key"] for item in page.get("Contents", [])]
    return keys


def _verify(path: Path, head: dict[str, Any], where: str) -> None:
    """Check a downloaded file against the sha256 recorded at upload, else a single-part ETag (MD5)."""
    expected = head.get("Metadata", {}).get(SHA_KEY)
    etag = str(head.get("ETag", "")).strip('"')
    if expected:
        actual, kind = sha256_file(path), "sha256"
    elif etag and "-" not in etag:  # a multipart ETag is not an MD5 of the content
        digest = hashlib.md5(usedforsecurity=False)
        with open(path, "rb") as stream:
            while chunk := stream.read(4 * MiB):
                digest.update(chunk)
        actual, expected, kind = digest.hexdigest(), etag, "md5"
    else:
        log.warning("%s has no recorded checksum; not verified", where)
        return
    if actual != expected:
        raise ChecksumMismatchError(f"{where}: {kind} {actual} != recorded {expected}")


def download_file(client: Any, bucket: str, key: str, target: Path, settings: TransferSettings) -> None:
    """Download one object to `target` atomically, verified against its recorded checksum."""
    head = client.head_object(Bucket=bucket, Key=key)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    try:
        client.download_file(bucket, key, temp, Config=_transfer(settings))
        _verify(Path(temp), head, f"s3://{bucket}/{key}")
        os.chmod(temp, 0o644)
        os.replace(temp, target)
    finally:
        Path(temp).unlink(missing_ok=True)


def download_dir(
    url: str, local: str | Path, client: Any = None, settings: TransferSettings | None = None
) -> list[Path]:
    """Download every object under `url` into `local`, verifying checksums. Returns the files."""
    local, where, settings = Path(local), S3Location.parse(url), settings or TransferSettings()
    client = client or make_client(settings=settings)
    files = []
    for key in _list_keys(client, where):
        relpath = key[len(where.prefix) :].lstrip("/") if where.prefix else key
        target = (local / relpath).resolve()
        if not target.is_relative_to(local.resolve()):
            raise ValueError(f"refusing to write {key!r} outside {local}")
        download_file(client, where.bucket, key, target, settings)
        files.append(target)
    log.info("downloaded %d file(s) from s3://%s/%s", len(files), where.bucket, where.prefix)
    return files
