"""Checks of sayo.rewards.accuracy on tricky answers: extraction, numbers, choices, tolerance."""

from __future__ import annotations

import pytest

from sayo.rewards import (
    accuracy_reward,
    extract_answer,
    extract_choice,
    normalize_text,
    parse_number,
    relaxed_match,
    score_answer,
)

EXTRACT_CASES = [
    ("<think>hm</think><answer> 42 </answer>", "42"),  # tags, whitespace stripped
    ("<answer>1</answer> wait <answer>2</answer>", "2"),  # multiple tags: the last wins
    ("<ANSWER>red</ANSWER>", "red"),  # tags are matched case-insensitively
    ("I counted carefully.\nAnswer: 12.5%", "12.5%"),  # no tags: after the final "Answer:"
    ("so the answer is 7.", "7"),  # "answer is", trailing full stop dropped
    ("answer: 3\nno wait, the final answer is B", "B"),  # the last phrase wins
    ("just some reasoning with no conclusion", None),  # nothing to extract
    ("<answer>   </answer>", None),  # empty answer counts as none
    ("<answer>1</answer> then <answer></answer>", None),  # the last (empty) answer wins
]


@pytest.mark.parametrize(("completion", "expected"), EXTRACT_CASES)
def test_extract_answer(completion: str, expected: str | None) -> None:
    assert extract_answer(completion) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The  Eiffel Tower!", "eiffel tower"),  # article, punctuation, double space
        ("  A cat, an owl  ", "cat owl"),  # articles in the middle
        ("Theatre", "theatre"),  # 'the' inside a word is kept
    ],
)
def test_normalize_text(text: str, expected: str) -> None:
    assert normalize_text(text) == expected


PARSE_CASES = [
    ("12.5%", 12.5),  # percent sign dropped, not divided by 100
    ("$1,200", 1200.0),  # currency and thousands separator
    ("3.0 kg", 3.0),  # unit word
    ("-4", -4.0),  # sign
    ("1,234", 1234.0),  # comma thousands
    ("1,234,567.5", 1234567.5),  # several groups and decimals
    ("−2.5", -2.5),  # unicode minus
    ("-$3", -3.0),  # sign before currency
    (".5", 0.5),  # leading decimal point
    ("1e3", 1000.0),  # exponent
    ("42.", 42.0),  # trailing full stop
    ("1,2", None),  # not a thousands group: not a number
    ("12 apples in 2019", None),  # more than one number
    ("red", None),  # not a number at all
    ("", None),  # empty
]


@pytest.mark.parametrize(("text", "expected"), PARSE_CASES)
def test_parse_number(text: str, expected: float | None) -> None:
    assert parse_number(text) == expected


RELAXED_CASES = [
    ("104.9", "100", True),  # 4.9 % off: inside the 5 % tolerance
    ("105.1", "100", False),  # 5.1 % off: outside
    ("95.1", "100", True),  # 4.9 % below
    ("94.9", "100", False),  # 5.1 % below
    ("105", "100", True),  # exactly 5 %: inclusive
    ("0", "0", True),  # target 0 needs exactly 0
    ("0.001", "0", False),  # any non-zero is wrong for a target of 0
    ("1,234", "1234", True),  # comma formatting
    ("12.5%", "12.5", True),  # percent sign
    ("$1,200", "1200", True),  # currency
    ("3 kg", "3.0", True),  # unit
    ("New York.", "new york", True),  # strings: normalised equality
    ("York", "new york", False),  # strings: partial is wrong
    ("five", "5", False),  # words are not parsed as numbers
]


@pytest.mark.parametrize(("pred", "target", "expected"), RELAXED_CASES)
def test_relaxed_match(pred: str, target: str, expected: bool) -> None:
    assert relaxed_match(pred, target) is expected


def test_relaxed_match_custom_tolerance_and_bad_tolerance() -> None:
    assert relaxed_match("110", "100", tolerance=0.1)  # 10 % off with a 10 % tolerance
    assert not relaxed_match("101", "100", tolerance=0.0)  # strict
    with pytest.raises(ValueError, match="tolerance"):
        relaxed_match("1", "1", tolerance=-0.1)


CHOICES = ["red", "green", "blue", "yellow"]
CHOICE_CASES = [
    ("B", 1),  # bare letter
    ("(B)", 1),  # parenthesised
    ("b)", 1),  # lowercase with closing parenthesis
    ("Answer: b", 1),  # prefix
    ("The answer is (C).", 2),  # prefix, parentheses and full stop
    ("B. green", 1),  # letter then text
    ("C. green", 2),  # letter wins over a contradicting text
    ("Blue", 2),  # the option text itself
    ("the yellow", 3),  # option text after normalisation
    ("I pick D here", 3),  # a single standalone capital option letter
    ("A or B", None),  # ambiguous
    ("E", None),  # letter outside the options
    ("purple", None),  # names no option
]


@pytest.mark.parametrize(("text", "expected"), CHOICE_CASES)
def test_extract_choice(text: str, expected: int | None) -> None:
    assert extract_choice(text, CHOICES) == expected


def test_extract_choice_with_labelled_options() -> None:
    # some datasets keep the label inside the option text
    assert extract_choice("green", ["A. red", "B. green"]) == 1


SCORE_CASES = [
    ("B", "B", "choice", CHOICES, 1.0),  # letter vs letter
    ("green", "B", "choice", CHOICES, 1.0),  # text vs letter
    ("(B)", "green", "choice", CHOICES, 1.0),  # letter vs option text as the answer
    ("C", "green", "choice", CHOICES, 0.0),  # wrong option
    ("b", "B", "choice", None, 1.0),  # no option list: letters only
    ("1,234", "1234", "number", None, 1.0),  # number formatting
    ("1,300", "1234", "number", None, 0.0),  # 5.3 % off
    ("the Cat", "cat", "exact", None, 1.0),  # normalised equality
    ("100.5", "100", "exact", None, 0.0),  # exact has no numeric tolerance
    ("100.5", "100", "open", None, 1.0),  # open uses relaxed matching
    (None, "cat", "exact", None, 0.0),  # no extracted answer
]


@pytest.mark.parametrize(("pred", "answer", "answer_type", "choices", "expected"), SCORE_CASES)
def test_score_answer(
    pred: str | None, answer: str, answer_type: str, choices: list[str] | None, expected: float
) -> None:
    assert score_answer(pred, answer, answer_type, choices) == expected


def test_unknown_answer_type_is_named() -> None:
    with pytest.raises(ValueError, match="'boolean'"):
        score_answer("yes", "yes", "boolean", None)


def test_accuracy_reward_batch() -> None:
    completions = [
        "<think>…</think><answer>$1,200</answer>",  # number with currency: correct
        "<answer>(B)</answer>",  # choice letter: correct
        "the answer is 3 kg",  # no tags, fallback phrase: correct
        "<answer>12</answer><answer>15</answer>",  # last answer 15 is wrong
        "no answer here",  # nothing extracted
    ]
    answers = ["1200", "green", "3", "12", "x"]
    types = ["number", "choice", "number", "number", "exact"]
    choices = [None, CHOICES, None, None, None]
    reward = accuracy_reward(completions, answers, types, choices)
    assert reward.tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]


def test_accuracy_reward_length_mismatch() -> None:
    with pytest.raises(ValueError, match="same length"):
        accuracy_reward(["a"], ["a", "b"], ["exact"])
