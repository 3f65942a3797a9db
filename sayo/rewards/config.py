"""The recipe's `rewards:` section: reward weights, and the one definition of attention on region.

`rewards.attention` says how "attention on the region" is measured — which decoder layers, how
heads are reduced, which response tokens count, and the reward's form — and is the only such
definition: the GRPO reward, the training probes and the `evaluate` stage all read it, so a
number from any of them means the same thing (docs/method.md, "The attention reward").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from sayo.config import check

HeadReduce = Literal["mean", "max"]
TokenSelection = Literal["entropy", "vision", "entropy_x_vision"]
Query = Literal["predicting", "own"]
RewardForm = Literal["share", "area_normalized", "tanh_log_ratio"]
Aggregation = Literal["mean_of_ratios", "ratio_of_means"]
SelectionCount = Literal["per_row", "batch_width"]
FormatForm = Literal["template", "official"]


@dataclass
class AttentionConfig:
    """How attention on the region is measured and turned into a reward (docs/method.md)."""

    layers: str | int | list[int] = (
        "last_half"  # decoder layers: last_half | last | all | k (last k) | [indices]
    )
    heads: HeadReduce = "mean"  # reduce attention over heads: mean | max
    query: Query = (
        "predicting"  # token t's attention: the position predicting t | t's own (the official code)
    )
    select: TokenSelection = (
        "entropy"  # rank tokens by entropy | vision (sensitivity to the image) | the product
    )
    ratio: float = 0.2  # ρ: share of response tokens selected (1.0 = every token, the full-token ablation)
    exclude_last: bool = False  # never select a response's last token (the official code's choice)
    count: SelectionCount = (
        "per_row"  # k: ⌈ρ·valid⌉ per row | batch_width: ⌊ρ·padded width⌋, after-EOS tokens too (official)
    )
    form: RewardForm = "share"  # share | area_normalized | tanh_log_ratio (the official reward)
    aggregation: Aggregation = "mean_of_ratios"  # per-token forms averaged, or the form of averaged attention
    max_normalized: float = 5.0  # area_normalized: clip of share / area fraction, then divided by it

    def __post_init__(self) -> None:
        check(0 < self.ratio <= 1, "rewards.attention.ratio", self.ratio, "must be in (0, 1]")
        check(
            0 < self.max_normalized < math.inf,
            "rewards.attention.max_normalized",
            self.max_normalized,
            "must be a positive finite number",
        )
        if isinstance(self.layers, str):
            check(
                self.layers in ("last_half", "last", "all"),
                "rewards.attention.layers",
                self.layers,
                "must be last_half, last, all, an int k (the last k layers) or a list of indices",
            )


@dataclass
class FormatConfig:
    """Which format reward r_fmt is (docs/method.md, "Total reward and optimisation")."""

    form: FormatForm = (
        "template"  # template: <think>…</think><answer>…</answer> | official: last answer × length factors
    )


@dataclass
class RewardConfig:
    """The weighted reward r = Σ w·r_i and how each part is computed."""

    weights: dict[str, float] = field(  # component -> weight (accuracy, format, region_attention)
        default_factory=lambda: {"accuracy": 1.0, "format": 0.5, "region_attention": 1.0}
    )
    numeric_tolerance: float = 0.05  # relative tolerance of numeric answers (ChartQA's relaxed accuracy)
    attention: AttentionConfig = field(default_factory=AttentionConfig)  # the region-attention term
    format: FormatConfig = field(default_factory=FormatConfig)  # the format term's form

    def __post_init__(self) -> None:
        check(
            self.numeric_tolerance >= 0, "rewards.numeric_tolerance", self.numeric_tolerance, "must be >= 0"
        )
        for name, weight in self.weights.items():
            check(0 <= weight < math.inf, f"rewards.weights.{name}", weight, "must be a finite number >= 0")
