"""Signal checks before spending compute: does each reward term vary *within* a GRPO group?

GRPO learns only from differences between the G rollouts of one prompt: a reward term that
differs between prompts but not between one prompt's rollouts gives every rollout the same
advantage, and with group normalisation its tiny within-group noise can even be blown up into
unit-size advantages (docs/method.md, "Total reward and optimisation"). `diagnose` samples G
rollouts for a set of prompts from a checkpoint, exactly as a GRPO step would (same sampling,
scoring forward and rewards, `sayo.train.grpo_step`), and reports for every reward component the
mean within-group std next to the std of the group means, plus where the answers look (the
attention share and its lift over uniform). It warns when the region term has no within-group
signal, before a run is spent on it, and (`sayo.train.reading`) when the policy does not answer by
looking, naming the link that fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from sayo.attention_capture import AttentionCapture
from sayo.data.dataset import GroundedDataset
from sayo.loss import advantage_parts
from sayo.models import load_policy
from sayo.runtime import resolve_device, seed_everything
from sayo.train.config import TrainRecipe
from sayo.train.grpo_step import compute_rewards, group_spread, make_chunks, sample, score
from sayo.train.reading import ReadingReport, reading_check

NO_SIGNAL = 1e-3  # within-group std of a reward term below this is noise, whatever its scale

# Advantage schemes compared by `diagnose` (docs/method.md, "Total reward and optimisation"):
# name (a valid MLflow metric name part) -> (grpo.advantage_per_component, grpo.advantage_scale,
# grpo.advantage_std_floor). "total-group" is the paper's: the weighted total over its group std.
SCHEMES: dict[str, tuple[bool, str, float]] = {
    "total-group": (False, "group", 0.0),
    "total-group-floor0.1": (False, "group", 0.1),
    "component-batch": (True, "batch", 0.0),
}


@dataclass
class SignalReport:
    """What `diagnose` measured over `groups` prompts × `group_size` rollouts."""

    checkpoint: str
    groups: int
    group_size: int
    spread: dict[str, tuple[float, float]]  # component -> (mean within-group std, std of group means)
    means: dict[str, float]  # component -> mean over all rollouts
    attention_share: float  # share of the selected tokens' visual attention on the region
    attention_lift: float  # that share minus the region's area fraction (0 = uniform attention)
    warnings: list[str] = field(default_factory=list)
    # scheme -> component -> std over the batch of its additive part of the advantages
    advantages: dict[str, dict[str, float]] = field(default_factory=dict)
    reading: ReadingReport | None = None  # does the policy answer by looking (`sayo.train.reading`)

    def as_dict(self) -> dict[str, Any]:
        """Flat numbers for MLflow and JSON (`signal/<component>_within` ...)."""
        out: dict[str, Any] = {"signal/groups": self.groups, "signal/group_size": self.group_size}
        for name, (within, between) in self.spread.items():
            out[f"signal/{name}_within"] = within
            out[f"signal/{name}_between"] = between
            out[f"signal/{name}_mean"] = self.means[name]
        out["signal/attention_share"] = self.attention_share
        out["signal/attention_lift"] = self.attention_lift
        for scheme, parts in self.advantages.items():
            for name, std in parts.items():
                out[f"signal/advantage/{scheme}/{name}"] = std
        if self.reading is not None:
            out.update({f"signal/{k}": v for k, v in self.reading.as_dict().items()})
        return out


def signal_warnings(spread: dict[str, tuple[float, float]], weights: dict[str, float]) -> list[str]:
    """A warning for each weighted reward term whose within-group spread is noise.

    No signal: a within-group std under `NO_SIGNAL`, or under a tenth of the between-group std
    (the term mostly tells prompts apart, not the rollouts of one prompt).
    """
    warnings = []
    for name, (within, between) in spread.items():
        if weights.get(name, 0.0) <= 0 or name == "total":
            continue
        if within < NO_SIGNAL or within < 0.1 * between:
            warnings.append(
                f"{name}: within-group std {within:.4f} vs between-group std {between:.4f}: the rollouts "
                "of one prompt barely differ in this term, so GRPO gets almost no signal from it"
            )
    return warnings


@torch.no_grad()
def diagnose(
    recipe: TrainRecipe,
    checkpoint: str,
    prompts: int = 32,
    group_size: int | None = None,
    reading_samples: int = 256,
) -> SignalReport:
    """Sample `group_size` (default `grpo.group_size`) rollouts for `prompts` prompts of the training
    split from `checkpoint` and measure each reward term's within- and between-group spread; check
    on `reading_samples` training samples (0: skip) whether the policy answers by looking."""
    grpo, attention = recipe.grpo, recipe.rewards.attention
    size = group_size or grpo.group_size
    seed_everything(recipe.seed)
    device = resolve_device(recipe.device)
    model, processor = load_policy(
        checkpoint,
        dtype=recipe.model.dtype,
        device=device,
        attn_implementation=recipe.model.attn_implementation,
    )
    data = GroundedDataset.load(recipe.data.path, recipe.data.train_split, recipe.data.max_samples)
    capture = AttentionCapture(model, attention.layers, attention.heads)
    picks = list(range(min(prompts, len(data))))
    samples, images = data.batch(picks)
    image_token_id = model.config.image_token_id
    chunks = make_chunks(
        processor, samples, images, size, grpo.micro_batch_size, image_token_id, device, recipe.prompt
    )
    sampled = sample(model, processor, chunks, grpo)
    scored = score(
        model,
        None,
        sampled,
        capture,
        recipe.rewards,
        grpo.temperature,
        image_token_id,
        pack_groups=grpo.pack_groups,
    )
    rewards = compute_rewards(scored, recipe.rewards)
    parts = {**rewards.components, "total": rewards.total}
    spread = {name: group_spread(values, size) for name, values in parts.items()}
    measured = [c.attention for c in scored if c.attention is not None]
    share = float(torch.cat([m.share for m in measured]).float().mean()) if measured else float("nan")
    lift = float(torch.cat([m.lift for m in measured]).float().mean()) if measured else float("nan")
    reading = None
    if reading_samples > 0:
        read = data.batch(list(range(min(reading_samples, len(data)))))
        reading = reading_check(model, processor, recipe, *read, batch_size=grpo.micro_batch_size)
    warnings = signal_warnings(spread, recipe.rewards.weights)
    if reading is not None and reading.warning() is not None:
        warnings.append(str(reading.warning()))
    return SignalReport(
        checkpoint=checkpoint,
        groups=len(picks),
        group_size=size,
        spread=spread,
        means={name: float(values.float().mean()) for name, values in parts.items()},
        attention_share=share,
        attention_lift=lift,
        warnings=warnings,
        advantages=advantage_spreads(rewards.components, recipe.rewards.weights, size, recipe.grpo),
        reading=reading,
    )


def advantage_spreads(
    components: dict[str, torch.Tensor], weights: dict[str, float], group_size: int, grpo: Any
) -> dict[str, dict[str, float]]:
    """For the recipe's advantage scheme and each of `SCHEMES`: the std over the batch of each
    weighted component's part of the advantages (`sayo.loss.advantage_parts`)."""
    own = (grpo.advantage_per_component, grpo.advantage_scale, grpo.advantage_std_floor)
    schemes = {"recipe": own, **{name: s for name, s in SCHEMES.items() if s != own}}
    out = {}
    for name, (per_component, scale, floor) in schemes.items():
        parts = advantage_parts(components, weights, group_size, scale, floor, per_component)
        out[name] = {part: float(values.std()) for part, values in parts.items()}
    return out


def report_lines(report: SignalReport) -> Sequence[str]:
    """The report as a small text table."""
    lines = [
        f"{report.groups} prompts × {report.group_size} rollouts from {report.checkpoint}",
        f"{'reward term':<18} {'mean':>8} {'within-group std':>17} {'between-group std':>18}",
    ]
    for name, (within, between) in report.spread.items():
        lines.append(f"{name:<18} {report.means[name]:>8.4f} {within:>17.4f} {between:>18.4f}")
    lines.append(
        f"attention on region: share {report.attention_share:.4f}, lift over uniform {report.attention_lift:+.4f}"
    )
    if report.advantages:
        names = list(next(iter(report.advantages.values())))
        lines.append("advantage std from each term, by scheme:")
        lines.append(f"  {'scheme':<30} " + " ".join(f"{n:>17}" for n in names))
        for scheme, parts in report.advantages.items():
            lines.append(f"  {scheme:<30} " + " ".join(f"{parts.get(n, 0.0):>17.4f}" for n in names))
    if report.reading is not None:
        lines.append(f"does it read? {report.reading.line()}")
    lines += [f"warning: {w}" for w in report.warnings]
    return lines
