"""SAYO rewards: accuracy, format and region attention, and how they are combined (docs/method.md)."""

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
    "token_entropy",
    "token_logprobs",
]
