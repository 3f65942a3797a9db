"""A killed data build's staging directory is swept by the next build of the same output, and only that."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sayo.data.build import build
from sayo.data.config import DataConfig, SourceConfig
from sayo.data.staging import LOCK, RETIRED, staging_root, swap_in, sweep_stale
from sayo.data.synthetic import SyntheticConfig

ROOT = Path(__file__).resolve().parents[1]


def _config(out: Path, samples: int) -> DataConfig:
    return DataConfig(
        sources=[SourceConfig(type="synthetic")],
        path=str(out),
        synthetic=SyntheticConfig(num_samples=samples),
    )


def _roots(parent: Path, name: str) -> list[Path]:
    return sorted(p for p in parent.iterdir() if p.name.startswith(f".{name}.") and p.name.endswith(".tmp"))


def _fake_root(parent: Path, name: str, output: str) -> Path:
    """A staging root whose build is dead: its lock file exists and nobody holds it."""
    root = parent / name
    (root / "data" / "images").mkdir(parents=True)
    (root / "data" / "images" / "x.png").write_bytes(b"png")
    (root / LOCK).write_text(json.dumps({"output": output, "pid": 1, "host": "h", "started": 0}))
    return root


def _assert_complete(out: Path, samples: int) -> None:
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == samples and json.loads((out / "stats.json").read_text())["num_samples"] == samples
    assert all((out / row["image"]).is_file() for row in rows)
    assert (out / "preview.png").is_file() and not (out / LOCK).exists()


def test_killed_build_is_swept_by_the_next_build(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    script = textwrap.dedent(
        f"""
        from sayo.data.build import build
        from sayo.data.config import DataConfig, SourceConfig
        from sayo.data.synthetic import SyntheticConfig
        build(DataConfig(sources=[SourceConfig(type="synthetic")], path={str(out)!r},
                         synthetic=SyntheticConfig(num_samples=5000)), progress=False)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # its own process group: SIGKILL takes the importer's worker processes down with it, like an OOM kill
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not any(any((r / "data" / "images").glob("*.png")) for r in _roots(tmp_path, "ds")):
            assert proc.poll() is None, "the build ended before it could be killed"
            assert time.monotonic() < deadline, "no staging directory with images after 120 s"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    [stale] = _roots(tmp_path, "ds")  # what the issue is about: SIGKILL runs no clean-up
    assert (stale / LOCK).is_file() and not out.exists()
    other = tmp_path / ".other.tmp"  # not a staging root at all
    other.mkdir()
    other_output = _fake_root(tmp_path, ".ds2.abcd1234.tmp", "ds2")  # a dead build of another output
    dotted = _fake_root(tmp_path, ".ds.v2.abcd1234.tmp", "ds.v2")  # output "ds.v2", not "ds"

    build(_config(out, 24), progress=False)

    assert not stale.exists()
    _assert_complete(out, 24)
    assert other.is_dir() and other_output.is_dir() and dotted.is_dir()
    assert _roots(tmp_path, "ds") == [dotted]  # nothing of this output's builds is left


def test_live_build_is_left_alone(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    with staging_root(out) as live:  # its lock is held until the block ends (another open file: conflicts)
        assert sweep_stale(out) == [] and live.is_dir()
        build(_config(out, 12), progress=False)  # a concurrent build of the same output
        assert live.is_dir()
    assert not live.exists()
    _assert_complete(out, 12)


@pytest.mark.parametrize(
    ("name", "owner", "swept"),
    [
        (".ds.k3j_9x0a.tmp", "ds", True),  # dead, ours
        (".ds.k3j_9x0a.tmp", "other", False),  # the lock names another output
        (".ds.k3j_9x0a.tmp", None, False),  # no lock file: an older sayo's, or not a build
        (".ds.x.k3j_9x0a.tmp", "ds", False),  # the output "ds.x"'s name pattern
        ("ds.k3j_9x0a.tmp", "ds", False),  # not hidden
        (".ds.k3j_9x0a.old", "ds", False),  # not a staging suffix
    ],
)
def test_only_dead_roots_of_this_output_are_swept(
    tmp_path: Path, name: str, owner: str | None, swept: bool, caplog: pytest.LogCaptureFixture
) -> None:
    root = _fake_root(tmp_path, name, owner or "ds")
    if owner is None:
        (root / LOCK).unlink()
    with caplog.at_level(logging.WARNING, logger="sayo.data.staging"):
        assert sweep_stale(tmp_path / "ds") == ([root] if swept else [])
    assert root.exists() is not swept
    if owner is None:
        assert "has no build.lock" in caplog.text  # an operator learns about it


def test_killed_between_the_two_renames_restores_the_previous_dataset(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    build(_config(out, 12), progress=False)
    before = (out / "manifest.jsonl").read_bytes()
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from sayo.data.staging import RETIRED, staging_root
        out = Path({str(out)!r})
        with staging_root(out) as root:
            out.rename(root / RETIRED)  # the first rename of the swap, then the node dies
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == -signal.SIGKILL and not out.exists()
    [root] = _roots(tmp_path, "ds")
    assert (root / RETIRED / "manifest.jsonl").is_file()
    assert sweep_stale(out) == [root]
    assert (out / "manifest.jsonl").read_bytes() == before and not root.exists()


def test_swap_in_replaces_and_keeps_the_old_one_until_the_root_goes(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    out.mkdir()
    (out / "v").write_text("1")
    with staging_root(out) as root:
        (root / "data" / "v").write_text("2")
        swap_in(root, out)
        assert (out / "v").read_text() == "2" and (root / RETIRED / "v").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
