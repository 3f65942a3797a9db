"""`sayo.rewards.official`: each case states what the reference evaluation does with that input.

References (docs/evaluation.md): pix2struct's `relaxed_correctness` (used unchanged by VLMEvalKit's
ChartQA scoring, `process_line(method="relaxed_accuracy")`), VLMEvalKit's `can_infer` /
`can_infer_option` / `can_infer_text`, MME-RealWorld's `extract_characters_regex`, We-Math's
`processed_answer` rule and MATH-Vision's `is_equal`.
"""

from __future__ import annotations

import pytest

from sayo.rewards.official import (
    answer_list,
    arithmetic_value,
    can_infer,
    can_infer_option,
    can_infer_text,
    chartqa_relaxed,
    exact_accuracy,
    mme_realworld_choice,
    official_float,
    official_prediction,
    options_by_letter,
    relaxed_correctness,
    split_think,
    value_equal,
    wemath_choice,
)

# (target, prediction, official result); comments: what `relaxed_correctness` does
RELAXED_CASES = [
    # --- percent: a trailing "%" divides by 100, on either side independently
    ("12%", "0.12", True),  # 12% -> 0.12, equal
    ("0.12", "12%", True),  # prediction 12% -> 0.12
    ("12%", "12", False),  # percent on one side only: 0.12 vs 12, change 99 > 0.05
    ("12", "12%", False),  # 12 vs 0.12
    ("96%", "100%", True),  # 0.96 vs 1.00: change 0.0417 (pix2struct's own test case)
    ("94%", "100%", False),  # 0.94 vs 1.00: change 0.0638 (pix2struct's own test case)
    ("50%", "50 %", True),  # "50 " after the "%" is removed: float() ignores the space
    ("5%", "5%%", True),  # every trailing "%" is removed, then one division by 100
    ("%", "%", True),  # "" is no number: strings compared, equal
    # --- thousands separators: float() rejects "1,234", so strings are compared
    ("1,234", "1234", False),  # target is no number: "1234" != "1,234"
    ("1234", "1,234", False),  # prediction is no number: "1,234" != "1234"
    ("1,234", "1,234", True),  # the same string
    ("1234", "1_234", True),  # float() reads digit-group underscores: 1234 == 1234
    # --- negative numbers: relative change uses |target|
    ("-5", "-5.2", True),  # |(-5.2) - (-5)| / 5 = 0.04
    ("-5", "5", False),  # 10 / 5 = 2
    ("-5", "−5", False),  # U+2212 minus is not read by float(): strings differ
    # --- zero target: a falsy float falls through to the string comparison
    ("0", "0", True),  # same string
    ("0", "0.0", False),  # numerically equal, but "0.0" != "0"
    ("0.0", "0", False),  # same the other way round
    ("0", "0.001", False),  # strings differ
    ("-0", "0", False),  # -0.0 is falsy too: "0" != "-0"
    # --- units and other text: no number unless float() reads the whole string
    ("12 kg", "12", False),  # target is no number: "12" != "12 kg"
    ("12", "12 kg", False),  # prediction is no number
    ("12 kg", "12 KG", True),  # strings equal ignoring case
    ("$5", "5", False),  # currency is no number
    ("Abc", "abc", True),  # case-insensitive (pix2struct's own test case)
    ("Won't", "Don't", False),  # different strings (pix2struct's own test case)
    ("New York", "New York.", False),  # no normalisation of punctuation
    ("five", "5", False),  # words are not numbers
    # --- tolerance edges: inclusive 5 %
    ("100", "105", True),  # change exactly 0.05
    ("100", "105.1", False),  # 0.051
    ("100", "95", True),  # 0.05 below
    ("100", " 104 ", True),  # float() strips whitespace
    ("1e3", "1000", True),  # exponent notation is a float
    (".5", "0.5", True),  # leading decimal point
    ("12", "١٢", True),  # float() reads Unicode decimal digits (Arabic-Indic 12)
    # --- nan and inf: a NaN relative change is never <= 0.05
    ("nan", "nan", False),  # nan is truthy; |nan - nan| / nan is nan
    ("inf", "inf", False),  # inf - inf is nan
    ("5", "inf", False),  # inf / 5 = inf
]


@pytest.mark.parametrize(("target", "prediction", "expected"), RELAXED_CASES)
def test_relaxed_correctness_matches_the_official_definition(
    target: str, prediction: str, expected: bool
) -> None:
    assert relaxed_correctness(target, prediction) is expected


def test_pix2struct_reference_example_gives_62_5_percent() -> None:
    """pix2struct's metrics test: these 8 pairs have relaxed accuracy 62.5."""
    predictions = ["abc", "abc", "Abc", "100%", "100%", "100%", "100%", "Don't"]
    targets = ["abc", "Abc", "abc", "96%", "94%", "0.96", "0.94", "Won't"]
    hits = [relaxed_correctness(t, p) for t, p in zip(targets, predictions, strict=True)]
    assert 100.0 * sum(hits) / len(hits) == 62.5


def test_relaxed_tolerance_is_a_parameter() -> None:
    assert relaxed_correctness("100", "110", max_relative_change=0.1)
    assert not relaxed_correctness("100", "100.5", max_relative_change=0.0)
    with pytest.raises(ValueError, match="max_relative_change"):
        relaxed_correctness("1", "1", max_relative_change=-0.1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12%", 0.12),
        ("1,234", None),
        ("12 kg", None),
        (" 7 ", 7.0),
        ("1_000", 1000.0),
        ("%", None),
        ("x%", None),
    ],
)
def test_official_float(text: str, expected: float | None) -> None:
    assert official_float(text) == expected


CHARTQA_ROW_CASES = [
    ("  42 ", "42", True),  # VLMEvalKit strips the prediction before scoring
    ("42", " 42", True),  # an unstripped numeric target still reads as a float
    ("yes", " yes", False),  # ... but a text target is compared unstripped
    ("13", "[12, 13]", True),  # a list-literal answer: the best of its answers counts
    ("14", "[12, 13]", False),
    ("[12", "[12", True),  # not a list literal: one answer
]


@pytest.mark.parametrize(("prediction", "answer", "expected"), CHARTQA_ROW_CASES)
def test_chartqa_row_scoring(prediction: str, answer: str, expected: bool) -> None:
    assert chartqa_relaxed(prediction, answer) is expected


def test_answer_list_and_exact_accuracy() -> None:
    assert (
        answer_list("['a', 'b']") == ["a", "b"] and answer_list("[]") == ["[]"] and answer_list("a") == ["a"]
    )
    assert exact_accuracy(" Red ", "red")  # VLMEvalKit `accuracy`: strip and lower-case both sides
    assert not exact_accuracy("red.", "red")  # no punctuation removal
    assert exact_accuracy("b", "['a', 'B']")


OPTIONS = {"A": "red", "B": "green", "C": "blue", "D": "yellow"}
# (prediction, what VLMEvalKit's can_infer returns; None = not inferred, scored wrong)
CAN_INFER_CASES = [
    ("B", "B"),  # the one option letter, as a word
    ("(B)", "B"),  # brackets become spaces
    ("B. green", "B"),  # "." becomes a space; "green" is not consulted
    ("The answer is C.", "C"),  # one letter among the last four words
    ("**D**", "D"),  # "*" becomes a space
    ("b", None),  # letters are case-sensitive words; "b" is no option text either
    ("Answer: b", None),  # same
    ("A or B", None),  # two option letters: ambiguous; no "answer is X"; "A or B" names no text
    ("I think B is right because of how it looks", None),  # one letter, not among the last four words
    ("B is right, it is the colour of grass in spring", None),  # same: "B" is the first of 11 words
    ("Looking closely the correct answer is **A** and not the others at all", "A"),  # "answer is **A**"
    ("the answer is a", "A"),  # "answer is X" ignores case
    ("the answer is apple", "A"),  # ... and needs no word boundary: "a" of "apple"
    ("green", "B"),  # option text, case-insensitive substring
    ("It is Green.", "B"),  # substring of a longer answer
    ("blue-green", None),  # two option texts occur: ambiguous
    ("purple", None),  # nothing
    ("E", None),  # not an option letter
    ("Z", "Z"),  # no option letter but "Z": VLMEvalKit's "no answer"
    ("Cannot determine the answer", "Z"),  # a refusal sentence
    ("x" * 50 + " green", None),  # longer than twice the options' total length (2 * 19): no text match
]


@pytest.mark.parametrize(("prediction", "expected"), CAN_INFER_CASES)
def test_can_infer_matches_vlmevalkit(prediction: str, expected: str | None) -> None:
    assert can_infer(prediction, OPTIONS) == expected


def test_can_infer_parts() -> None:
    assert can_infer_option("A B", ["A", "B"]) is None  # ambiguous letters
    assert can_infer_option("pick C", ["A", "B"]) is None  # "C" is not an option here
    assert can_infer_text("a cat", {"A": "cat", "B": "category"}) == "A"  # "category" is not in "a cat"
    assert can_infer_text("category", {"A": "cat", "B": "category"}) is None  # both occur
    assert options_by_letter(["x", "y"]) == {"A": "x", "B": "y"}


# (raw prediction, MME-RealWorld's letter; "" = scored wrong)
MME_CASES = [
    ("B", "B"),
    ("The best answer is C", "C"),  # prefix removed, then the first capital A-E
    ("(D) a dog", "D"),
    ("<answer>c</answer>", "C"),  # the answer tag's content, upper-cased
    ("<answer>The best answer is B</answer>", "E"),  # upper-cased first, so the prefix stays: "E" of "THE"
    ("Because of the light, A", "B"),  # the first capital A-E anywhere: "B" of "Because"
    ("a", "A"),  # no capital A-E: "a" is found in "(a)"
    ("", "A"),  # the empty string is in "(a)" too
    ("(", "A"),  # so is "("
    ("there are eleven words here but none of them is a capital letter", ""),  # > 10 words, no A-E
    ("xyz", ""),  # nothing
]


@pytest.mark.parametrize(("prediction", "expected"), MME_CASES)
def test_mme_realworld_choice(prediction: str, expected: str) -> None:
    assert mme_realworld_choice(prediction) == expected


# (prediction, We-Math's letter; None = scored wrong)
WEMATH_CASES = [
    ("B", "B"),
    ("Answer: C", "C"),  # the text after the last "Answer", ":" removed
    ("Answer: <B>.", "B"),  # "<", ">" and "." removed
    ("answer: C", None),  # "Answer" is case-sensitive: "a" is not A-H
    ("I think Answer: D", "D"),
    ("H", "H"),  # A-H
    ("I", None),  # not A-H
    ("", None),
]


@pytest.mark.parametrize(("prediction", "expected"), WEMATH_CASES)
def test_wemath_choice(prediction: str, expected: str | None) -> None:
    assert wemath_choice(prediction) == expected


# (prediction, answer, MATH-Vision's is_equal without its LaTeX step)
VALUE_CASES = [
    ("3/4", "0.75", True),  # both evaluate to 0.75
    (" 0.75 ", "3/4", True),
    ("2^3", "8", False),  # Python's "^" is xor: 2 ^ 3 = 1
    ("2**3", "8", True),
    ("Yes", "yes", True),  # lower-cased string equality
    ("1,2", "1, 2", False),  # tuples are not numbers (the reference's abs() fails)
    ("1/0", "1/0", True),  # equal strings, before any arithmetic
    ("1/0", "0", False),  # division by zero: not equal
    ("\\frac{3}{4}", "0.75", False),  # LaTeX needs latex2sympy: not implemented
    ("9**9**9", "1", False),  # refused (the reference gives up after a 30 s timeout)
]


@pytest.mark.parametrize(("prediction", "answer", "expected"), VALUE_CASES)
def test_value_equal(prediction: str, answer: str, expected: bool) -> None:
    assert value_equal(prediction, answer) is expected


def test_arithmetic_value_runs_no_code() -> None:
    assert arithmetic_value("-(2 + 3) * 2") == -10.0
    assert arithmetic_value("__import__('os').getcwd()") is None
    assert arithmetic_value("True") is None and arithmetic_value("[1]") is None


# (completion, the prediction the official matchers read)
PREDICTION_CASES = [
    ("<think>B or C?</think><answer> C </answer>", "C"),  # the answer tag's content
    ("<answer>A</answer><answer>B</answer>", "B"),  # the last tag
    ("<think>B or C?</think> C", "C"),  # no tag: the text after the reasoning (VLMEvalKit's SPLIT_THINK)
    ("Answer: 12", "Answer: 12"),  # no "Answer:" search: the official matcher gets the text as is
    ("<answer> </answer> 7", "<answer> </answer> 7"),  # an empty tag is no answer
]


@pytest.mark.parametrize(("completion", "expected"), PREDICTION_CASES)
def test_official_prediction(completion: str, expected: str) -> None:
    assert official_prediction(completion) == expected


def test_split_think() -> None:
    assert split_think("<think>a</think>b</think> c ") == "c" and split_think(" plain ") == "plain"
