"""Where the ablation's steps run (sayo.experiment.steps): one after the other in this process
(`run_serial`), or on `jobs` spawned processes, each step as soon as what it needs is done
(`run_parallel`): every warm start's SFT first, then its arms × seeds, then its evaluation. A failed
step stops the others.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from typing import Any

import torch
from tqdm.auto import tqdm

from sayo.experiment.config import AblationConfig
from sayo.experiment.steps import (
    ArmRun,
    Log,
    Prepared,
    WarmStartRun,
    finish_warm_start,
    prepare_warm_start,
    train_arm,
    warm_starts,
)


def _add(times: dict[str, float], more: dict[str, float]) -> None:
    for step, seconds in more.items():
        times[step] = times.get(step, 0.0) + seconds


def run_serial(cfg: AblationConfig, quick: bool, parent: str | None, log: Log, times: dict[str, float],
            started: Callable[[Prepared], None]) -> list[WarmStartRun]:  # fmt: skip
    """Every warm start's steps in this process, one after the other."""
    done = []
    for index in range(len(warm_starts(cfg, quick))):
        ready = prepare_warm_start(cfg, quick, index, parent, log)
        _add(times, ready.seconds)
        started(ready)
        runs = [train_arm(cfg, quick, ready, arm, seed, parent, log) for arm, seed in _items(cfg, quick)]
        _add(times, {"grpo": sum(r.seconds for r in runs)})
        warm, seconds = finish_warm_start(cfg, quick, ready, runs, parent)
        _add(times, {"evaluate": seconds})
        done.append(warm)
    return done


def _items(cfg: AblationConfig, quick: bool) -> list[tuple[str, int]]:
    return [(arm, seed) for arm in cfg.arms for seed in (cfg.quick_seeds if quick else cfg.seeds)]


def _worker(threads: int) -> None:
    """A job process takes its share of the cores."""
    torch.set_num_threads(threads)


@contextmanager
def _quiet_children() -> Iterator[None]:
    """No progress bars in the job processes (this one shows one for all): a spawned process inherits
    the environment it starts with, and reads `TQDM_DISABLE` (tqdm, `distributed.shows_progress`)."""
    before = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"
    try:
        yield
    finally:
        if before is None:
            del os.environ["TQDM_DISABLE"]
        else:
            os.environ["TQDM_DISABLE"] = before


def run_parallel(cfg: AblationConfig, quick: bool, parent: str | None, log: Log, times: dict[str, float],
              started: Callable[[Prepared], None], jobs: int) -> list[WarmStartRun]:  # fmt: skip
    """The same steps as `run_serial` on `jobs` processes, each step as soon as what it needs is done:
    every warm start's SFT first, then its arms × seeds, then its evaluation."""
    count, items = len(warm_starts(cfg, quick)), _items(cfg, quick)
    context = multiprocessing.get_context("spawn")  # never fork a process that has started torch's threads
    threads = max(1, default_jobs() // jobs)
    ready: dict[int, Prepared] = {}
    runs: dict[int, dict[tuple[str, int], ArmRun]] = {i: {} for i in range(count)}
    done: dict[int, WarmStartRun] = {}
    bar = tqdm(total=count * (len(items) + 2), desc="ablation", unit="step")
    with _quiet_children():
        pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=_worker, initargs=(threads,))
        pending: dict[Future[Any], tuple[str, int]] = {
            pool.submit(prepare_warm_start, cfg, quick, i, parent, print): ("prepare", i)
            for i in range(count)
        }
        try:
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    step, index = pending.pop(future)
                    result = future.result()
                    bar.update()
                    if step == "prepare":
                        ready[index] = result
                        _add(times, result.seconds)
                        started(result)
                        for arm, seed in items:
                            job = pool.submit(train_arm, cfg, quick, result, arm, seed, parent, print)
                            pending[job] = ("grpo", index)
                    elif step == "grpo":
                        runs[index][(result.arm, result.seed)] = result
                        _add(times, {"grpo": result.seconds})
                        if len(runs[index]) == len(items):
                            ordered = [runs[index][item] for item in items]
                            last = pool.submit(finish_warm_start, cfg, quick, ready[index], ordered, parent)
                            pending[last] = ("evaluate", index)
                    else:
                        done[index], seconds = result
                        _add(times, {"evaluate": seconds})
                        log(f"{done[index].spec.name()}: evaluated")
        except BaseException:  # a failed step (or ^C): stop the others, no half-finished step goes on
            processes = list(
                (getattr(pool, "_processes", None) or {}).values()
            )  # no terminate_workers() < 3.14
            pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                process.terminate()
            raise
        finally:
            bar.close()
        pool.shutdown()
    return [done[i] for i in range(count)]


def default_jobs() -> int:
    """Processes for `sayo experiment ablation`: the usable CPU cores, one when there is a GPU to share."""
    if torch.cuda.is_available():
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
