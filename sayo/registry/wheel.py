"""A wheel of the sayo code that registers a model, logged with the model (docs/architecture.md, "Registry").

Why: the served model imports sayo (`served.py` → `sayo.registry.model`), and no package index
holds sayo, so a requirement `sayo==0.1.0` cannot be installed by `mlflow models serve` or by
another project loading the model. The model therefore carries the sayo it was registered with as
a wheel among its artifacts, and its requirements.txt names that file (a path relative to the model
directory, where MLflow runs `pip install -r`); sayo's own dependencies come from the wheel's
metadata like any package's.

The wheel is packed from the imported `sayo` package itself (its files, the installed
distribution's metadata), so it works for an editable checkout and for an image that installed
sayo without its source tree alike. Its version carries a local label of the code's sha256
(`0.1.0+c0de12345678`): two models registered from different code never share a cached serving
environment (MLflow keys those by the requirement lines).
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from email.message import Message
from importlib import metadata
from pathlib import Path
from typing import cast

DIST = "sayo"
TAG = "py3-none-any"
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the imported sayo package (sayo/registry/..)
EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed zip timestamps: the same code gives the same wheel bytes


def _package_files(package_dir: Path) -> list[Path]:
    """The package's files, without bytecode caches, in a stable order."""
    return sorted(
        p
        for p in package_dir.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
    )


def code_digest(package_dir: Path) -> str:
    """sha256 of the package's relative paths and bytes (12 hex digits)."""
    digest = hashlib.sha256()
    for path in _package_files(package_dir):
        digest.update(path.relative_to(package_dir).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _metadata_text(version: str) -> str:
    """The installed distribution's core metadata with `Version` set to `version`.

    Read as parsed metadata, not as a file: an editable checkout is found through its
    `sayo.egg-info` (PKG-INFO, no METADATA file) when the working directory is the checkout.
    """
    message = cast(Message, metadata.metadata(DIST))  # [ours] email-style headers and the long description
    if message.get("Version") is None:
        raise RuntimeError(f"the installed {DIST} distribution's metadata has no Version field")
    message.replace_header("Version", version)
    return message.as_string()


def build_wheel(out_dir: str | Path, package_dir: Path | None = None) -> Path:
    """Pack the imported sayo package into `out_dir/sayo-<version>+<digest>-py3-none-any.whl`."""
    package_dir = Path(package_dir or PACKAGE_DIR)
    version = f"{metadata.version(DIST).split('+', 1)[0]}+{code_digest(package_dir)}"
    info = f"{DIST}-{version}.dist-info"
    entries: dict[str, bytes] = {
        f"{DIST}/{p.relative_to(package_dir).as_posix()}": p.read_bytes() for p in _package_files(package_dir)
    }
    entries[f"{info}/METADATA"] = _metadata_text(version).encode()
    wheel_meta = f"Wheel-Version: 1.0\nGenerator: sayo.registry.wheel\nRoot-Is-Purelib: true\nTag: {TAG}\n"
    entries[f"{info}/WHEEL"] = wheel_meta.encode()
    entry_points = metadata.distribution(DIST).read_text("entry_points.txt")
    if entry_points:
        entries[f"{info}/entry_points.txt"] = entry_points.encode()
    record = [f"{name},{_record_hash(data)},{len(data)}" for name, data in entries.items()]
    entries[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    target = Path(out_dir) / f"{DIST}-{version}-{TAG}.whl"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            member = zipfile.ZipInfo(name, EPOCH)
            member.external_attr = 0o644 << 16  # rw-r--r-- once installed
            archive.writestr(member, data, zipfile.ZIP_DEFLATED)
    partial.replace(target)
    return target
