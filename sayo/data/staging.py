"""Where a dataset build writes before it swaps in, and how the next build clears what a killed one left.

A build writes its dataset into a hidden *staging root* next to the output,
`.<output name>.<random>.tmp/`, and renames it into place at the very end, so readers never see
half a dataset. A build killed with SIGKILL (OOM killer, preempted node, `kill -9`) runs no clean-up
and leaves that root behind; at 10k samples it holds hundreds of MB of images. The next build of
the same output removes such roots before it starts.

Stale or live: the root holds `build.lock`, a small JSON file (output name, pid, host, start
time) on which the build holds an exclusive `flock` for its whole life. The kernel drops the lock
when the process dies, however it dies, so "the lock can be taken" means "its build is gone" —
unlike a pid file, whose pid may have been reused, may belong to another container's pid
namespace, or to another machine on a shared volume. On NFS, Linux emulates `flock` with POSIX
locks, which the server releases when the dead client's lease expires, so two pods building onto
one volume still see each other's live builds. Only roots of *this* output are candidates: the
name must be `.<output name>.<random>.tmp` with no dot in the random part (so the output
`processed` never matches the roots of `processed.v2`), and the lock file must name the output.
A root without a lock file (written by an older sayo, or by a build killed in the microseconds
before it published its lock) is never removed automatically; the sweep logs it for an operator.

The lock file is written and locked under a temporary name and renamed to `build.lock`, so a
visible lock file is always complete and already locked. The root also receives the previous
dataset during the swap (`old/`): a build killed between the two renames leaves the output
missing and the previous dataset inside its root, and the sweep puts it back.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LOCK = "build.lock"  # inside a staging root: owner JSON, flock-ed while its build runs
DATA = "data"  # inside a staging root: the dataset being written (renamed to the output at the end)
RETIRED = "old"  # inside a staging root: the previous dataset, between the two renames of the swap


def _root_pattern(out: Path) -> re.Pattern[str]:
    # tempfile's random part is letters, digits and "_", never ".": the output name is unambiguous
    return re.compile(rf"\.{re.escape(out.name)}\.[^.]+\.tmp")


def _owner(out: Path) -> dict[str, Any]:
    return {"output": out.name, "pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}


@contextmanager
def staging_root(out: Path) -> Iterator[Path]:
    """A fresh locked staging root next to `out`; removed on exit, whatever happened.

    The build writes into `root / DATA` and calls `swap_in(root, out)` once it is complete.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    handle = None
    try:
        fd, pending = tempfile.mkstemp(prefix=".lock.", dir=root)
        handle = os.fdopen(fd, "r+", encoding="utf-8")
        fcntl.flock(handle, fcntl.LOCK_EX)  # blocks only if a sweeper is reading it right now
        json.dump(_owner(out), handle)
        handle.flush()
        os.replace(pending, root / LOCK)  # published complete and already locked
        (root / DATA).mkdir()
        yield root
    finally:
        _remove(root)
        if handle is not None:
            handle.close()  # releases the lock, after the root is gone


def _remove(root: Path) -> None:
    """Delete a staging root, its lock file last: a removal cut short still leaves a sweepable root."""
    for child in root.iterdir() if root.is_dir() else ():
        if child.name == LOCK:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
    (root / LOCK).unlink(missing_ok=True)
    try:
        root.rmdir()
    except OSError:
        shutil.rmtree(root, ignore_errors=True)


def swap_in(root: Path, out: Path) -> None:
    """Replace `out` by `root / DATA`; the previous dataset waits in `root / RETIRED` meanwhile."""
    staged = root / DATA
    os.chmod(staged, 0o755)
    if out.exists():
        out.rename(root / RETIRED)
        try:
            staged.rename(out)
        except BaseException:
            (root / RETIRED).rename(out)
            raise
    else:
        staged.rename(out)


def _is_stale(root: Path, out: Path, handle: Any) -> bool:
    """With the lock of `root` held: is it a root of `out` (and still the file we locked)?"""
    try:
        if os.fstat(handle.fileno()).st_ino != os.stat(root / LOCK).st_ino:
            return False  # removed and recreated since we opened it: another sweeper got there first
        owner = json.loads(handle.read() or "null")
    except (OSError, ValueError):
        return False
    return isinstance(owner, dict) and owner.get("output") == out.name


def sweep_stale(out: Path) -> list[Path]:
    """Remove the staging roots of `out` whose build is dead; return the ones removed.

    Roots of other outputs, roots of live builds (their lock is held) and roots without a lock
    file are left alone. If a dead build had already moved the previous dataset aside and `out`
    is missing, the previous dataset is moved back first.
    """
    if not out.parent.is_dir():
        return []
    pattern = _root_pattern(out)
    removed = []
    for root in sorted(out.parent.iterdir()):
        if not pattern.fullmatch(root.name) or not root.is_dir() or root.is_symlink():
            continue
        try:
            # read-write: exclusive locks on NFS (POSIX locks underneath) need a writable descriptor
            handle = open(root / LOCK, "r+", encoding="utf-8")  # noqa: SIM115 - held across the checks below
        except FileNotFoundError:
            log.warning("left %s alone: it has no %s (an older sayo's, or not a build); remove it by hand "
                        "once no build of %s runs", root, LOCK, out)  # fmt: skip
            continue
        except OSError as error:
            log.warning("left %s alone: cannot open its lock: %s", root, error)
            continue
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.debug("left %s alone: its build is running", root)
                continue
            if not _is_stale(root, out, handle):
                continue
            if (root / RETIRED).is_dir() and not out.exists():
                (root / RETIRED).rename(out)
                log.warning("restored the previous dataset %s from the killed build's %s", out, root)
            _remove(root)
            log.warning("removed %s, left by a killed build of %s", root, out)
            removed.append(root)
    return removed
