"""Answer matching exactly as the benchmarks' own evaluations define it (docs/evaluation.md).

Why a second matcher beside `sayo.rewards.accuracy`: the training reward is deliberately lenient
("1,234", "12.5%" and "3 kg" all parse as numbers, any single capital letter can name an option), so
that a correct answer is not scored 0 for its spelling. A benchmark number must instead be the one
the benchmark's authors would compute, or it cannot be compared with published tables. These
functions re-implement, from their definitions, the matchers of the reference evaluations: the
ChartQA relaxed accuracy of pix2struct (also used by VLMEvalKit), VLMEvalKit's multiple-choice
matching (`can_infer`), MME-RealWorld's letter extraction, We-Math's answer rule and
MATH-Vision's value comparison. Every quirk of the originals is kept on purpose and tested case by
case (tests/test_rewards_official.py); the deviations that remain are listed in docs/evaluation.md.

All functions are pure and take the *prediction* a reference evaluation would see:
`official_prediction` turns a sayo completion into it (the answer-tag content, else the text after
the reasoning).
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Mapping

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_THINK_END = "</think>"


def split_think(completion: str) -> str:
    """The text after the last ``</think>`` (stripped), or the whole completion without one.

    This is what VLMEvalKit scores when reasoning is split off (`SPLIT_THINK=1`): the reasoning
    would otherwise feed letters and numbers to the matchers.
    """
    _, found, tail = completion.rpartition(_THINK_END)
    return (tail if found else completion).strip()


def official_prediction(completion: str) -> str:
    """The prediction the official matchers read: the last ``<answer>…</answer>`` content, else
    `split_think(completion)`.

    The answer tag is sayo's output template; taking its content is what a VLMEvalKit model wrapper
    for a tagged-answer model does before scoring. Without a tag, the content of the last
    ``\\boxed{}`` after the reasoning (the paper's answer template) plays the same part. Unlike
    the training reward, no "Answer:" phrase is searched: the official matchers get the untagged
    text as it is (and handle such phrases themselves where their definition does).
    """
    tagged = _ANSWER_TAG.findall(completion)
    if tagged and tagged[-1].strip():
        return str(tagged[-1]).strip()
    tail = split_think(completion)
    boxed = boxed_content(tail)
    return boxed.strip() if boxed is not None and boxed.strip() else tail


def boxed_content(text: str) -> str | None:
    """The content of the last ``\\boxed{…}`` in `text` (braces balanced), or None without one.

    The paper's evaluation prompt asks for the final answer in ``\\boxed{}`` (docs/evaluation.md,
    "The paper's suite"), and its scorer reads the last box first; an unclosed box is no answer.
    """
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, begin = 0, start + len("\\boxed{")
    for index in range(begin, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            if depth == 0:
                return text[begin:index]
            depth -= 1
    return None


def answer_list(answer: str) -> list[str]:
    """The reference answers of one row: a Python list literal gives several, anything else one.

    VLMEvalKit's VQA scoring treats an answer cell that evaluates to a list as several acceptable
    answers (the best match counts); a literal evaluator is used here instead of `eval`.
    """
    text = answer.strip()
    if text.startswith("[") and text.endswith("]"):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return [answer]
        if isinstance(value, list) and value:
            return [str(v) for v in value]
    return [answer]


# --- ChartQA relaxed accuracy ----------------------------------------------------------------------


def official_float(text: str) -> float | None:
    """A number as the relaxed-accuracy definition reads it, or None.

    Python's `float` on the text, after turning a trailing "%" into a division by 100 (every
    trailing "%" is removed first). So "1,234", "12 kg", "$5" and "−5" (Unicode minus) are not
    numbers, while " 12 ", "1_000", "1e3", "inf" and "nan" are.
    """
    percent = text.endswith("%")
    body = text.rstrip("%") if percent else text
    try:
        value = float(body)
    except ValueError:
        return None
    return value / 100.0 if percent else value


def relaxed_correctness(target: str, prediction: str, max_relative_change: float = 0.05) -> bool:
    """ChartQA relaxed correctness of one prediction against one target.

    When the prediction reads as a number and the target reads as a *non-zero* number, the
    relative change |pred − target| / |target| must be ≤ `max_relative_change` (inclusive; a NaN
    change, from "nan" or "inf", fails). Otherwise — a zero target included — the two strings must
    be equal ignoring case (no stripping, no normalisation).
    """
    if not max_relative_change >= 0.0:
        raise ValueError(f"max_relative_change must be >= 0, got {max_relative_change!r}")
    predicted, expected = official_float(prediction), official_float(target)
    if predicted is not None and expected:  # None and 0.0 (and -0.0) fall through to strings
        return abs(predicted - expected) / abs(expected) <= max_relative_change
    return prediction.lower() == target.lower()


def chartqa_relaxed(prediction: str, answer: str, max_relative_change: float = 0.05) -> bool:
    """VLMEvalKit's ChartQA scoring of one row: the stripped prediction, the best of the answers."""
    pred = prediction.strip()
    return any(relaxed_correctness(t, pred, max_relative_change) for t in answer_list(answer))


def exact_accuracy(prediction: str, answer: str) -> bool:
    """VLMEvalKit's `accuracy` VQA method: equal after stripping and lower-casing, best answer."""
    pred = prediction.strip().lower()
    return any(t.strip().lower() == pred for t in answer_list(answer))


# --- VLMEvalKit multiple choice ----------------------------------------------------------------------

NO_ANSWER = "Z"  # what VLMEvalKit records for a refusal; it never equals an answer letter
_REFUSALS = (
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
)
_SEPARATORS = str.maketrans({c: " " for c in ".()[],:;!*#{}"})
_ANSWER_IS = re.compile(r"(?:correct\s+)?answer\s+is\s+\**([ABCD])\**", re.IGNORECASE)


def can_infer_option(prediction: str, letters: list[str]) -> str | None:
    """The option letter a prediction names, VLMEvalKit's way; None when it names none.

    - a known refusal sentence anywhere → ``"Z"`` (no answer);
    - the text is cut into words at whitespace after turning each of ``.()[],:;!*#{}`` into a
      space; if exactly one option letter (case-sensitive) is a word, and its first occurrence is
      among the last four words, that letter;
    - if no option letter is a word but "Z" is → ``"Z"``;
    - else "answer is X" / "correct answer is **X**" (any case, X in A–D) names X if X is an option;
    - else None (ambiguous or absent).
    """
    if any(refusal in prediction for refusal in _REFUSALS):
        return NO_ANSWER
    words = prediction.translate(_SEPARATORS).split()
    present = [letter for letter in letters if letter in words]
    if len(present) == 1:
        letter = present[0]
        if words.index(letter) > len(words) - 5:
            return letter
    elif not present and NO_ANSWER in words:
        return NO_ANSWER
    match = _ANSWER_IS.search(prediction)
    if match and match.group(1).upper() in letters:
        return match.group(1).upper()
    return None


def can_infer_text(prediction: str, options: Mapping[str, str]) -> str | None:
    """The option whose text occurs in the prediction (case-insensitive substring), if exactly one.

    A prediction longer than twice the options' total length is not matched at all.
    """
    text = prediction.lower()
    if len(text) > 2 * sum(len(str(v)) for v in options.values()):
        return None
    found = [letter for letter, option in options.items() if str(option).lower() in text]
    return found[0] if len(found) == 1 else None


def can_infer(prediction: str, options: Mapping[str, str]) -> str | None:
    """VLMEvalKit's exact-matching answer of a multiple-choice prediction: a letter, "Z" or None.

    `options` maps letters ("A", "B", …) to option texts. The letter rules come first
    (`can_infer_option`), then the option texts (`can_infer_text`).
    """
    return can_infer_option(prediction, list(options)) or can_infer_text(prediction, options)


def options_by_letter(choices: list[str]) -> dict[str, str]:
    """``["red", "blue"]`` → ``{"A": "red", "B": "blue"}`` (the column layout of VLMEvalKit TSVs)."""
    if len(choices) > 26:
        raise ValueError(f"at most 26 options can be lettered, got {len(choices)}")
    return {chr(ord("A") + i): choice for i, choice in enumerate(choices)}


# --- MME-RealWorld ---------------------------------------------------------------------------------------

_MME_PREFIXES = (
    "The best answer is",
    "The correct answer is",
    "The answer is",
    "The answer",
    "The best option is",
    "The correct option is",
    "Best answer:",
    "Best option:",
)
_MME_LETTER = re.compile(r"[ABCDE]")
_MME_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)  # case-sensitive, the first one
_MME_OPTIONS = ("(A)", "(B)", "(C)", "(D)", "(E)")


def mme_realworld_choice(prediction: str) -> str:
    """MME-RealWorld's letter for a raw prediction; "" when none (scored wrong).

    The evaluation takes the first ``<answer>…</answer>`` content upper-cased when there is one,
    removes answer prefixes ("The best answer is", …, case-sensitive), gives up on more than ten
    words without any of A–E, and otherwise returns the *first* capital A–E anywhere in the text.
    Without one, the text (lower-cased) is looked up inside "(a)" … "(e)", so "a" or even an empty
    answer reads as "A".
    """
    tagged = _MME_ANSWER_TAG.search(prediction)
    text = tagged.group(1).strip().upper() if tagged else prediction
    text = text.strip()
    for prefix in _MME_PREFIXES:
        text = text.replace(prefix, "")
    if len(text.split()) > 10 and not _MME_LETTER.search(text):
        return ""
    found = _MME_LETTER.search(text)
    if found is not None:
        return found.group(0)
    for option in _MME_OPTIONS:
        if text.lower() in option.lower():
            return option[1]
    return ""


# --- We-Math ----------------------------------------------------------------------------------------------

_WEMATH_DROP = re.compile(r"[><:.]")


def wemath_choice(prediction: str) -> str | None:
    """We-Math's answer letter: the first character of what follows the last "Answer" (case-
    sensitive), with ``<``, ``>``, ``:`` and ``.`` removed, if it is one of A–H; else None."""
    tail = prediction.split("Answer")[-1].strip()
    tail = _WEMATH_DROP.sub("", tail).strip()
    return tail[0] if tail and tail[0] in "ABCDEFGH" else None


# --- MATH-Vision value comparison -----------------------------------------------------------------------

Number = int | float
_BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.BitXor: operator.xor,  # "2^3" is Python's xor (= 1), as in the reference's eval
}
_UNARY: dict[type[ast.unaryop], Callable[[Number], Number]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_MAX_EXPONENT = 1000  # and at most 10^6 result bits: the reference gives up after a 30 s timeout


def arithmetic_value(text: str) -> float | None:
    """The value of a plain arithmetic expression ("3/4", "-2**3", "1e-3"), or None.

    The reference evaluation calls Python's `eval` on both strings; this evaluates the same
    numeric expressions (number literals, + − * / // % ** ^, parentheses) without executing code.
    """
    try:
        value = _evaluate(ast.parse(text.strip(), mode="eval").body)
        return float(value)
    except (SyntaxError, ValueError, TypeError, ZeroDivisionError, OverflowError, RecursionError):
        return None


def _evaluate(node: ast.AST) -> Number:
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, (int, float))
        and not isinstance(node.value, bool)
    ):
        return node.value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and (
            abs(right) > _MAX_EXPONENT or (isinstance(left, int) and left.bit_length() * abs(right) > 10**6)
        ):
            raise ValueError("power too large to evaluate")
        return _BINARY[type(node.op)](left, right)
    raise ValueError(f"not plain arithmetic: {ast.dump(node)}")


def value_equal(prediction: str, answer: str) -> bool:
    """MATH-Vision's `is_equal` without its LaTeX step: equal after lower-casing and stripping, or
    both arithmetic expressions with values within 1e-6."""
    pred, target = prediction.lower().strip(), answer.lower().strip()
    if pred == target:
        return True
    a, b = arithmetic_value(target), arithmetic_value(pred)
    return a is not None and b is not None and abs(a - b) < 1e-6


# --- yes/no (HallusionBench) ------------------------------------------------------------------------

_PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`",
                ",", "?", "!")  # fmt: skip
_COMMA_IN_NUMBER = re.compile(r"(\d)(,)(\d)")
_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")  # sic: a lookahead, so every "." not before a digit matches


def process_punctuation(text: str) -> str:
    """The VQA evaluation's punctuation rule, as VLMEvalKit applies it before yes/no matching.

    Each listed mark is deleted when it touches a space anywhere in the text (or the text has a
    comma between digits), else replaced by a space; then at most 32 periods not followed by a
    digit are deleted (the reference passes `re.UNICODE`, 32, as the count).
    """
    out = text
    glued = _COMMA_IN_NUMBER.search(text) is not None
    for mark in _PUNCTUATION:
        out = out.replace(mark, "" if glued or f"{mark} " in text or f" {mark}" in text else " ")
    return _PERIOD.sub("", out, count=32)


def yes_no(prediction: str) -> str:
    """VLMEvalKit's `YOrN_Extraction`: "Yes" if the word "yes" occurs and "no" does not, "No" the
    other way round, else "Unknown" (case-insensitive, words after `process_punctuation`)."""
    words = process_punctuation(prediction.lower()).split()
    if "yes" in words and "no" not in words:
        return "Yes"
    if "no" in words and "yes" not in words:
        return "No"
    return "Unknown"


def yes_no_answer(answer: str) -> str:
    """A yes/no reference as "Yes"/"No": HallusionBench's `gt_answer` is "1"/"0", its TSV "Yes"/"No"."""
    text = answer.strip().lower()
    return {"1": "Yes", "yes": "Yes", "0": "No", "no": "No"}.get(text, answer.strip())


# --- MathVista (rule-based extraction, no GPT) ------------------------------------------------------------

_QUICK = re.compile(r'The answer is "(.*)"\.')
_PAREN_LETTER = re.compile(r"\(([a-zA-Z])\)")


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions), as MathVista's `get_most_similar` uses."""
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i]
        for j, char_b in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]


def mathvista_extract(response: str, choices: list[str], answer_type: str) -> str:
    """MathVista's `extract_answer` without its GPT step: a response that is an option's text, an
    integer (`int`) or a float (`float`) is taken as it is; `The answer is "x".` gives x; anything
    else is returned unchanged (the GPT extraction would rewrite it; sayo's answer tag plays that part).
    """
    if response == "" or (choices and response in choices):
        return response
    converters = {"integer": lambda t: str(int(t)), "float": lambda t: str(float(t))}
    if answer_type in converters:
        try:
            return converters[answer_type](response)
        except ValueError:
            pass
    quick = _QUICK.search(response)
    return quick.group(1) if quick else response


def mathvista_normalize(extraction: str, choices: list[str], answer_type: str, precision: str) -> str | None:
    """MathVista's `normalize_extracted_answer`: an option letter ("B", "(B) text") becomes the
    option's text, other text the most similar option (edit distance, first on ties); an integer
    answer `str(int(float(x)))`, a float `str(round(float(x), precision))`, a list `str(x)`."""
    if choices:
        text = extraction.strip()
        letters = _PAREN_LETTER.findall(text)
        if letters:
            text = letters[0].upper()
        options = [chr(ord("A") + i) for i in range(len(choices))]
        if text in options:
            return choices[options.index(text)]
        distances = [levenshtein(text, choice) for choice in choices]
        return choices[distances.index(min(distances))]
    try:
        if answer_type == "integer":
            return str(int(float(extraction)))
        if answer_type == "float":
            return str(round(float(extraction), int(float(precision or 0))))
    except (ValueError, OverflowError):
        return None
    return extraction


def mathvista_correct(
    response: str, answer: str, choices: list[str], answer_type: str, precision: str
) -> bool:
    """MathVista's score of one response: extraction, normalisation, then `safe_equal` (==).

    `answer` is the reference as MathVista stores it: the option's text for multiple choice.
    """
    extraction = mathvista_extract(response, choices, answer_type)
    return mathvista_normalize(extraction, choices, answer_type, precision) == answer
