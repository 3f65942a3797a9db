"""Validating imported candidates in worker processes, in order, with a bounded number in flight.

Why: for a file source the import is cheap (a parquet stream, a JSON lookup) and the check is not
(every image is decoded in full, hashed and written to the content-addressed store), so checks run
in worker processes as the synthetic source draws in them (`sayo.data.importers.synthetic`). A
worker writes the image itself (temp file, then rename: two workers storing the same image are
harmless) and returns only the sample and its copy count, so image bytes cross a pipe once. At most
`2 × workers` chunks are in flight, so memory does not grow with the number of rows. The first
`PARALLEL_FROM` items of a source are checked in-process (a pool costs about a second to start).

A worker memoises the last images it decoded by content hash: GQA asks about ten questions per
image, and those arrive close together.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import tempfile
from collections import OrderedDict, deque
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sayo.data.mixing import copies
from sayo.data.schema import Sample
from sayo.data.validate import Candidate, Dropped, Problem, StoredImage, check_candidate, inspect_image

CHUNK = 64  # candidates per worker task
PARALLEL_FROM = 512  # items checked in-process before a pool is started
MEMO = 1024  # decoded images remembered per process (hash -> name and size)


@dataclass(frozen=True)
class Checked:
    """A valid candidate: its sample (image already stored), where it came from, and its copies."""

    sample: Sample
    file: str
    line: int
    group: str
    copies: int


Item = Candidate | Problem | Dropped
Result = Checked | Problem | Dropped


@dataclass(frozen=True)
class Job:
    """What a worker needs besides the candidates: where images go and how copies are counted."""

    staging: str  # the dataset being written; images go to staging/images/
    weight: float
    seed: int


_memo: OrderedDict[str, tuple[str, tuple[int, int]]] = OrderedDict()


def _inspect_memoised(data: bytes) -> StoredImage:
    digest = hashlib.sha256(data).hexdigest()
    known = _memo.get(digest)
    if known is not None:
        _memo.move_to_end(digest)
        return StoredImage(known[0], data, known[1])
    image = inspect_image(data)
    _memo[digest] = (image.relpath, image.size)
    if len(_memo) > MEMO:
        _memo.popitem(last=False)
    return image


def _store(staging: Path, image: StoredImage) -> None:
    target = staging / image.relpath
    if target.exists():
        return
    fd, pending = tempfile.mkstemp(prefix=".img.", dir=target.parent)
    with os.fdopen(fd, "wb") as stream:
        stream.write(image.data)
    os.replace(pending, target)


def check_chunk(job: Job, chunk: list[Item]) -> list[Result]:
    """Check every candidate of `chunk` (storing the images of those kept); pass the rest through."""
    out: list[Result] = []
    for item in chunk:
        if not isinstance(item, Candidate):
            out.append(item)
            continue
        checked = check_candidate(item, _inspect_memoised)
        if isinstance(checked, list):
            out.extend(checked)
            continue
        sample, image = checked
        n = copies(job.weight, job.seed, sample.source, sample.id)
        if n:
            _store(Path(job.staging), image)
        out.append(Checked(sample, item.file, item.line, item.group, n))
    return out


def _chunks(items: Iterable[Item]) -> Iterator[list[Item]]:
    chunk: list[Item] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def check_all(items: Iterable[Item], job: Job, workers: int) -> Generator[Result, None, None]:
    """The results of `items` in their order: checked in-process first, then in `workers` processes."""
    chunks = _chunks(items)
    done = 0
    for chunk in chunks:
        yield from check_chunk(job, chunk)
        done += len(chunk)
        if done >= PARALLEL_FROM and workers > 1:
            break
    else:
        return
    context = multiprocessing.get_context("spawn")  # no fork: the parent may hold threads
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        flight: deque[Future[list[Result]]] = deque()
        try:
            for chunk in chunks:
                flight.append(pool.submit(check_chunk, job, chunk))
                if len(flight) >= 2 * workers:
                    yield from flight.popleft().result()
            while flight:
                yield from flight.popleft().result()
        finally:  # a consumer that stops early (fill_to, an error) does not wait for the rest
            for future in flight:
                future.cancel()
