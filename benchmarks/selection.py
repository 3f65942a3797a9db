"""Which response tokens the paper's attention measure selects, and where each kind of token looks.

Why: the paper's measure (docs/method.md, "The attention reward") averages the region share over
the top-ρ response tokens by entropy, and GRPO changes which tokens those are. On the ablation's
runs the selected tokens' lift and the looking behaviour disagreed (docs/method.md, "Where the
answer looks"). This script measures why, on the checkpoints an ablation already trained: for the
SFT warm start and each arm × seed of one warm start, greedy answers to its held-out samples, and
per response token its role, whether the measure selected it, and its own lift (region share minus
the region's area fraction; `sayo.looking`).

Token roles. Generic (any grounded dataset): `format` (the template's tags and separators),
`answer` (between the answer tags), `reasoning` (between the think tags). Task-specific (the
synthetic `search` task, whose reasoning is a path of steps "<colour> <attribute>" and whose
question names the asked object's colour last): a reasoning token belongs to the `target` step
when its step names the asked object, else to an `other` step, and within its step it is the
`name` (the colour word) or the `attribute` (the word read off that object); an answer "names the
asked object first" when the first step of its reasoning is the asked object's.

Per checkpoint group (the warm start; each arm, its seeds pooled; mean over seeds with the seeds'
range): accuracy, the selected tokens' lift (the paper's measure), the lift at the answer step,
the share of answers naming the asked object first, and for each role the share of the selected
tokens that fall in it, the mean lift of its selected tokens and of all its tokens, and its share
of all response tokens. The selected lift is the selected shares times the selected lifts, summed.

    python benchmarks/selection.py --config ablation_warm_starts --warm ws-d0-s0 \\
        --arms accuracy_format sayo --samples 128       # writes benchmarks/results/selection.md
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from sayo.answering import AnswerOptions, answer_batch
from sayo.atomic import write_text
from sayo.attention_capture import AttentionCapture
from sayo.data.schema import Sample
from sayo.data.synthetic.search import asked_object, names_asked_first
from sayo.evaluate.benchmarks import load_benchmark
from sayo.evaluate.config import BenchmarkConfig
from sayo.experiment.config import AblationConfig, WarmStart, load_ablation
from sayo.experiment.steps import base_recipe, pick_warm_start, warm_dir, warm_starts
from sayo.models import load_policy
from sayo.runtime import resolve_device, seed_everything

ROLES = ("format", "answer", "target name", "target attribute", "other name", "other attribute")
TAGS = ("<think>", "</think>", "<answer>", "</answer>")


def _spans(tokenizer: Any, ids: Sequence[int]) -> tuple[str, list[tuple[int, int]]]:
    """The decoded text and each token's character span in it (by cumulative decoding, so it holds
    for word-level and byte-level tokenizers alike)."""
    spans, previous = [], 0
    text = ""
    for n in range(1, len(ids) + 1):
        text = tokenizer.decode(list(ids[:n]), skip_special_tokens=False)
        spans.append((previous, len(text)))
        previous = len(text)
    return text, spans


def token_roles(text: str, spans: list[tuple[int, int]], asked: str) -> list[str]:
    """Each token's role (module docstring)."""
    think = (text.find("<think>"), text.find("</think>"))
    answer = (text.find("<answer>"), text.find("</answer>"))
    steps: list[tuple[int, int, bool]] = []  # char span of each reasoning step, names `asked`?
    if think[0] >= 0 and think[1] > think[0]:
        start = think[0] + len("<think>")
        for part in text[start : think[1]].split(","):
            words = part.strip(" .").split(" ")
            steps.append((start, start + len(part), bool(words) and words[0] == asked))
            start += len(part) + 1
    roles = []
    for begin, end in spans:
        piece = text[begin:end]
        if not piece.strip(" .,") or any(tag in piece for tag in TAGS):
            roles.append("format")
        elif answer[0] >= 0 and begin >= answer[0] + len("<answer>") and (answer[1] < 0 or end <= answer[1]):
            roles.append("answer")
        elif think[0] >= 0 and begin >= think[0] and (think[1] < 0 or end <= think[1]):
            step = next((s for s in steps if s[0] <= begin < s[1] or s[0] < end <= s[1]), None)
            which = "target" if step is not None and step[2] else "other"
            named = step is not None and not text[step[0] : begin].strip(" .")  # nothing before it: the name
            roles.append(f"{which} {'name' if named else 'attribute'}")
        else:
            roles.append("format")  # outside the template
    return roles


@dataclass
class CheckpointStats:
    """Per-checkpoint sums over the held-out answers."""

    correct: list[float] = field(default_factory=list)
    selected_lift: list[float] = field(default_factory=list)
    answer_lift: list[float] = field(default_factory=list)
    names_first: list[float] = field(default_factory=list)
    selected: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ROLES, 0))
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ROLES, 0))
    lift_sum: dict[str, float] = field(default_factory=lambda: dict.fromkeys(ROLES, 0.0))
    selected_lift_sum: dict[str, float] = field(default_factory=lambda: dict.fromkeys(ROLES, 0.0))

    def summary(self) -> dict[str, float]:
        nan = float("nan")

        def mean(values: list[float]) -> float:
            kept = [v for v in values if not math.isnan(v)]
            return sum(kept) / len(kept) if kept else nan

        chosen, total = sum(self.selected.values()), sum(self.tokens.values())
        out = {
            "accuracy": mean(self.correct),
            "selected lift": mean(self.selected_lift),
            "answer-step lift": mean(self.answer_lift),
            "names asked first": mean(self.names_first),
        }
        for role in ROLES:
            out[f"selected in {role}"] = self.selected[role] / chosen if chosen else nan
            out[f"lift of {role}"] = self.lift_sum[role] / self.tokens[role] if self.tokens[role] else nan
            picked = self.selected[role]
            out[f"selected lift of {role}"] = self.selected_lift_sum[role] / picked if picked else nan
            out[f"tokens in {role}"] = self.tokens[role] / total if total else nan
        return out


@torch.no_grad()
def measure_checkpoint(
    path: Path, recipe: Any, samples: list[Sample], images: list[Any], batch: int
) -> CheckpointStats:
    """Greedy answers of one checkpoint and the per-token tallies of the module docstring."""
    model, processor = load_policy(
        str(path),
        dtype=recipe.model.dtype,
        device=resolve_device(recipe.device),
        attn_implementation=recipe.model.attn_implementation,
    )
    attention = recipe.rewards.attention
    capture = AttentionCapture(model, attention.layers, attention.heads)
    options = AnswerOptions(
        max_new_tokens=recipe.evaluate.max_new_tokens, attention=attention, prompt=recipe.prompt
    )
    stats = CheckpointStats()
    for start in range(0, len(samples), batch):
        chunk = samples[start : start + batch]
        answers = answer_batch(
            model, processor, chunk, images[start : start + batch], options, capture=capture
        )
        assert answers.looking is not None and answers.selected is not None
        assert answers.attention_lift is not None and answers.completion_ids is not None
        for row, sample in enumerate(chunk):
            ids = [int(i) for i in answers.completion_ids[row] if i >= 0]
            text, spans = _spans(processor.tokenizer, ids)
            roles = token_roles(text, spans, asked_object(sample.question))
            first = names_asked_first(sample.question, text)
            stats.correct.append(float(answers.correct[row]))
            stats.selected_lift.append(float(answers.attention_lift[row]))
            stats.answer_lift.append(float(answers.looking.answer_lift[row]))
            stats.names_first.append(math.nan if first is None else float(first))
            for t, role in enumerate(roles):
                lift = float(answers.looking.token_lift[row, t])
                if math.isnan(lift):
                    continue
                stats.tokens[role] += 1
                stats.lift_sum[role] += lift
                chosen = bool(answers.selected[row, t])
                stats.selected[role] += int(chosen)
                stats.selected_lift_sum[role] += lift if chosen else 0.0
    del model
    return stats


def _cell(values: list[float], sign: bool = False) -> str:
    """Mean over seeds, with the seeds' range when there are several; `sign` writes +/−."""
    kept = [v for v in values if not math.isnan(v)]
    if not kept:
        return "–"
    fmt = "{:+.3f}" if sign else "{:.3f}"
    mean = fmt.format(statistics.fmean(kept))
    return mean if len(kept) == 1 else f"{mean} ({fmt.format(min(kept))}..{fmt.format(max(kept))})"


def markdown(groups: dict[str, list[dict[str, float]]], header: str) -> str:
    """The page: one row per checkpoint group, in three tables."""
    lines = [header, ""]
    first = ["accuracy", "selected lift", "answer-step lift", "names asked first"]
    tables = [
        ("What the measures say", first, {"selected lift", "answer-step lift"}),
        ("Where the selected tokens fall (share of the selected tokens by role)",
         [f"selected in {r}" for r in ROLES], set()),
        ("How the selected tokens of each role look (mean lift of the role's selected tokens)",
         [f"selected lift of {r}" for r in ROLES], {f"selected lift of {r}" for r in ROLES}),
        ("How each role's tokens look (mean lift of every token of the role)",
         [f"lift of {r}" for r in ROLES], {f"lift of {r}" for r in ROLES}),
        ("How the responses are made up (share of all response tokens by role)",
         [f"tokens in {r}" for r in ROLES], set()),
    ]  # fmt: skip
    for title, columns, signed in tables:
        lines += [f"## {title}", "", "| checkpoint | " + " | ".join(columns) + " |",
                  "| --- |" + " --- |" * len(columns)]  # fmt: skip
        for name, seeds in groups.items():
            cells = [_cell([s[c] for s in seeds], sign=c in signed) for c in columns]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def measure(
    cfg: AblationConfig, warm: str, arms: Sequence[str], samples: int, batch: int = 16, quick: bool = False
) -> tuple[WarmStart, dict[str, list[dict[str, float]]]]:
    """The warm start's SFT checkpoint and each arm's seeds, measured on its first `samples`
    held-out samples: group name -> one summary per checkpoint."""
    spec = warm_starts(cfg, quick)[pick_warm_start(cfg, warm, quick)]
    out = warm_dir(cfg, quick, spec)
    recipe = base_recipe(cfg, quick, out, spec)
    unknown = [a for a in arms if a not in cfg.arms]
    if unknown:
        raise ValueError(f"arms {unknown} are not among the experiment's arms {list(cfg.arms)}")
    seeds = cfg.quick_seeds if quick else cfg.seeds
    checkpoints: dict[str, list[Path]] = {"SFT warm start": [Path(recipe.checkpoint.dir) / "sft" / "final"]}
    for arm in arms:
        checkpoints[cfg.label(arm)] = [out / "runs" / f"{arm}-s{s}" / "grpo" / "final" for s in seeds]
    missing = [str(p) for paths in checkpoints.values() for p in paths if not (p / "config.json").is_file()]
    if missing:
        raise FileNotFoundError(
            f"no checkpoint at {missing[0]} ({len(missing)} missing): run the experiment first"
        )
    bench = load_benchmark(
        BenchmarkConfig(name="heldout", path=recipe.data.path, split="test", max_samples=samples)
    )
    asked, images = bench.prompts(0, len(bench)), bench.images
    seed_everything(0)
    groups: dict[str, list[dict[str, float]]] = {}
    with tqdm(total=sum(len(p) for p in checkpoints.values()), desc="checkpoints", unit="ckpt") as bar:
        for name, paths in checkpoints.items():
            for path in paths:
                stats = measure_checkpoint(path, recipe, asked, images, batch)
                groups.setdefault(name, []).append(stats.summary())
                bar.update()
    return spec, groups


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--config", default="ablation_warm_starts", help="the ablation's experiment file")
    parser.add_argument("--warm", default="0", help="the warm start: its name (ws-d0-s0) or index")
    parser.add_argument("--arms", nargs="+", default=None, help="arms to read (default: every arm)")
    parser.add_argument("--samples", type=int, default=128, help="held-out samples per checkpoint")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="read the experiment's --quick run")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/selection.md"))
    args = parser.parse_args(argv)
    cfg = load_ablation(args.config)
    arms = args.arms or list(cfg.arms)
    began = time.perf_counter()
    try:
        spec, groups = measure(cfg, args.warm, arms, args.samples, args.batch, args.quick)
    except (ValueError, FileNotFoundError) as err:
        print(f"selection: {err}", file=sys.stderr)
        return 2
    seeds = cfg.quick_seeds if args.quick else cfg.seeds
    header = (
        "# Which tokens the attention measure selects (generated)\n\n"
        f"`python benchmarks/selection.py --config {args.config} --warm {spec.name()} "
        f"--arms {' '.join(arms)} --samples {args.samples}` on {time.strftime('%Y-%m-%d')} "
        f"({platform.machine()}, {torch.get_num_threads()} threads, {time.perf_counter() - began:.0f} s): "
        f"warm start {spec.name()}, the first {args.samples} held-out samples, greedy; an arm's cell is "
        f"the mean over its seeds {seeds} (their range in brackets). Lift = a token's region share minus "
        "the region's area fraction (`sayo.looking`); the selected tokens are the top-ρ by entropy "
        "(`rewards.attention`; its `query` decides which step's attention counts as a token's). Roles: "
        "format, answer, and the reasoning's words by step (`target`: the step naming the asked object, "
        "`other`: the rest; search task) and place in it (`name`: the colour word, `attribute`: the "
        "word read off the object); `names asked first` (search task): the reasoning's first step is "
        "the asked object's."
    )
    print(write_text(args.out, markdown(groups, header)).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
