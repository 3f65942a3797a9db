"""Which configured sets are present, and what to say about the ones that are not.

Why a separate step before any model is loaded: the paper's suite names fourteen sets that each
have to be downloaded once; finding out after an hour of answering that the last one is missing
wastes the hour. All sets are checked first. A missing set stops the stage with where it was
looked for and how to get it (exit 2), unless `evaluate.allow_missing` (`--allow-missing`) is
set: then it is skipped, listed in `not_run.json`, and the report's table marks it "not run".
Sets that are present but invalid always stop the stage (`sayo.evaluate.benchmarks`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sayo.evaluate.benchmarks import Benchmark, load_benchmark, missing
from sayo.evaluate.config import BenchmarkConfig, EvalConfig
from sayo.evaluate.suite import suite_set


@dataclass
class NotRun:
    """A set that was skipped: its name, where it was looked for, and how to get it."""

    name: str
    reason: str
    how: str

    def row(self) -> tuple[str, str, str]:
        return self.name, self.reason, self.how


class MissingBenchmarkError(ValueError):
    """Configured sets are missing and `evaluate.allow_missing` is off (the CLI exits with 2)."""

    def __init__(self, absent: list[NotRun]) -> None:
        self.absent = absent
        lines = [f"{n.name}: {n.reason}; to get it: {n.how}" for n in absent]
        super().__init__(
            f"{len(absent)} benchmark set(s) not found:\n" + "\n".join(lines)
            + "\npass --allow-missing (evaluate.allow_missing=true) to skip them and mark them 'not run'"
        )  # fmt: skip


def how_to_get(ev: EvalConfig, config: BenchmarkConfig) -> str:
    """The suite's download command for one of its sets, else what to fix in the recipe."""
    entry = suite_set(ev.suite, config.name) if ev.suite else None
    if entry is not None:
        return entry.where_to_get(ev.suite_root)
    return f"put the {config.type} set at {config.path} or fix evaluate.benchmarks[{config.name}].path"


def scoring_note(ev: EvalConfig, name: str) -> str:
    """For a suite set scored by a rule-based fallback: what the official scoring uses instead."""
    entry = suite_set(ev.suite, name) if ev.suite else None
    if entry is None or not entry.judge:
        return ""
    return f"rule-based fallback; the official scoring uses {entry.judge}"


def load_present(ev: EvalConfig) -> tuple[list[Benchmark], list[NotRun]]:
    """The sets that are present, loaded, and the ones skipped as missing (only with `allow_missing`)."""
    configs = ev.all_benchmarks()
    absent = []
    for config in configs:
        reason = missing(config)
        if reason is not None:
            absent.append(NotRun(config.name, reason, how_to_get(ev, config)))
    if absent and not ev.allow_missing:
        raise MissingBenchmarkError(absent)
    skipped = {n.name for n in absent}
    present = [c for c in configs if c.name not in skipped]
    if not present:
        raise MissingBenchmarkError(absent) if absent else ValueError("no benchmark configured")
    loaded = []
    for config in present:
        bench = load_benchmark(config)
        bench.note = scoring_note(ev, config.name)
        loaded.append(bench)
    return loaded, absent
