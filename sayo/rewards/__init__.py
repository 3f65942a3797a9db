"""SAYO rewards: accuracy, format and region attention, and how they are combined (docs/method.md).

The names below load on first use (PEP 562): `sayo.rewards.config` is read by every recipe, and
importing this package must not pull in torch for a command that only reads recipes (`sayo recipes`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sayo.lazy import lazy_exports

if TYPE_CHECKING:
    from sayo.rewards.accuracy import (
        ANSWER_TYPES,
        accuracy_reward,
        extract_answer,
        extract_choice,
        normalize_text,
        parse_number,
        relaxed_match,
        score_answer,
    )
    from sayo.rewards.attention import (
        official_attention_reward,
        region_area_fraction,
        region_attention_reward,
        region_share,
    )
    from sayo.rewards.combine import REWARD_NAMES, combine_rewards
    from sayo.rewards.format import format_reward
    from sayo.rewards.selection import select_high_entropy_tokens

# module -> the public names it defines
_HOMES = {
    "sayo.rewards.accuracy": (
        "ANSWER_TYPES",
        "accuracy_reward",
        "extract_answer",
        "extract_choice",
        "normalize_text",
        "parse_number",
        "relaxed_match",
        "score_answer",
    ),
    "sayo.rewards.attention": (
        "official_attention_reward",
        "region_area_fraction",
        "region_attention_reward",
        "region_share",
    ),
    "sayo.rewards.combine": ("REWARD_NAMES", "combine_rewards"),
    "sayo.rewards.format": ("format_reward",),
    "sayo.rewards.selection": ("select_high_entropy_tokens",),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "ANSWER_TYPES",
    "REWARD_NAMES",
    "accuracy_reward",
    "combine_rewards",
    "extract_answer",
    "extract_choice",
    "format_reward",
    "normalize_text",
    "official_attention_reward",
    "parse_number",
    "region_area_fraction",
    "region_attention_reward",
    "region_share",
    "relaxed_match",
    "score_answer",
    "select_high_entropy_tokens",
]


__getattr__ = lazy_exports(__name__, _HOME_OF)
