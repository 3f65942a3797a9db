"""The paper's benchmark layouts: which columns hold what, and the prompt as the authors built it.

Why presets: the paper's numbers (docs/evaluation.md, "The paper's suite") come from prompts its
authors assembled per benchmark — AI2D's options appended as "A: …" lines after "Choices:",
HallusionBench's question cut at its first "?" and followed by a yes/no instruction, MathVista's
ready-made `query` — from Hugging Face layouts whose columns differ per set. A preset names those
columns (for the `hf` reader) and rebuilds the authors' prompt and answer from what was read, so a
number computed here is asked the same question. Sources: the authors' `eval/utils/data_loaders.py`
(Cratileo/Sayo) and the datasets' cards, cited per preset in docs/evaluation.md.

A preset works on what an importer read: the question, the answer, the options (if the layout has
an options column) and the other columns as text (`extra`). It returns the prompt text, the answer
(an option letter for multiple choice) and the options used for scoring. `options_in_prompt`: the
prompt already shows the options, so the model is asked the prompt as it is (no second options
line from `sayo.prompts`).
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

Extra = Mapping[str, str]


@dataclass(frozen=True)
class Asked:
    """One row as the paper asks and scores it."""

    prompt: str  # the user text as the authors built it
    answer: str  # an option letter for multiple choice
    choices: list[str] | None  # option texts (A, B, … order) used by the metric, or None


@dataclass(frozen=True)
class Preset:
    """A known set's layout and prompt."""

    name: str
    columns: dict[
        str, str
    ]  # sample field -> the dataset's column (image, question, answer, options, id, category)
    build: Callable[[str, str, list[str] | None, Extra], Asked]  # (question, answer, options, extra) -> Asked
    meta: tuple[str, ...] = ()  # extra columns the metric reads (We-Math's ID/key, HallusionBench's ids)
    options_in_prompt: bool = True  # the prompt shows the options (asked as it is)
    split: str = "test"  # the split the authors evaluate
    notes: str = ""  # deviations, shown in docs/evaluation.md
    keep: tuple[str, ...] = field(default_factory=tuple)  # extra columns the prompt reads


LETTERS = "ABCDEFGHIJ"


def lettered(choices: list[str], sep: str = ": ", end: str = "\n") -> str:
    """``["3", "4"]`` -> ``"A: 3\\nB: 4\\n"``: options appended as the authors' loaders append them."""
    return "".join(f"{LETTERS[i]}{sep}{c}{end}" for i, c in enumerate(choices))


def to_letter(answer: str, choices: list[str] | None) -> str:
    """The option letter of `answer`: a letter as it is, an option index ("0" -> "A", AI2D), or an
    option's text (MathVista stores the text); unchanged when it is none of these."""
    text = answer.strip()
    if not choices:
        return text
    if text.upper() in LETTERS[: len(choices)] and len(text) == 1:
        return text.upper()
    if text.isdigit() and int(text) < len(choices):
        return LETTERS[int(text)]
    if text in choices:
        return LETTERS[choices.index(text)]
    return text


_INLINE = re.compile(r"(?:^|\n|,\s|\s)\(?([A-J])[:.)]\s")


def options_in_text(text: str) -> list[str] | None:
    """Option texts written inside a question, lettered from A in order, or None.

    Three layouts occur in the paper's sets: "Options: A: x, B: y" (MMStar), "(A) x\\n(B) y"
    (V* Bench) and "A. x\\nB. y" (RealWorldQA). The letters must run A, B, C, … without gaps; the
    text after the last option ends at the first line that is not part of it.
    """
    found: list[re.Match[str]] = []
    for mark in _INLINE.finditer(text):
        if len(found) < len(LETTERS) and mark.group(1) == LETTERS[len(found)]:
            found.append(mark)
    if len(found) < 2:
        return None
    options = []
    for i, mark in enumerate(found):
        end = found[i + 1].start() if i + 1 < len(found) else len(text)
        option = text[mark.end() : end]
        option = option.split("\n")[0] if i + 1 == len(found) else option
        options.append(option.strip().rstrip(",").strip())
    return options


def listed(cell: str) -> list[str] | None:
    """A list column read back from its text (JSON as the `hf` importer writes it, or a Python
    literal as a TSV holds it), or None."""
    try:
        value = json.loads(cell)
    except ValueError:
        try:
            value = ast.literal_eval(cell.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else None


def _plain(question: str, answer: str, options: list[str] | None, extra: Extra) -> Asked:
    """The question as the dataset has it."""
    return Asked(question, answer.strip(), options or None)


def _inline(question: str, answer: str, options: list[str] | None, extra: Extra) -> Asked:
    """The question as the dataset has it, its options written inside it (read back for scoring)."""
    choices = options or options_in_text(question)
    letter = to_letter(answer, choices)
    return Asked(question, letter, choices if letter in LETTERS[: len(choices or [])] else None)


def _question_choices(question: str, answer: str, options: list[str] | None, extra: Extra) -> Asked:
    """AI2D, M3CoT: "Question:{q}\\nChoices:A: x\\nB: y\\n"."""
    choices = options or []
    return Asked(f"Question:{question}\nChoices:{lettered(choices)}", to_letter(answer, choices), choices)


def _mathvision(question: str, answer: str, options: list[str] | None, extra: Extra) -> Asked:
    """MATH-Vision: the question, and with options "\\nOptions: A: x\\nB: y\\n"."""
    prompt = f"{question}\nOptions: {lettered(options)}" if options else question
    return Asked(prompt, to_letter(answer, options), options or None)


def _wemath(question: str, answer: str, options: list[str] | None, extra: Extra) -> Asked:
    """We-Math: the option column is one text ("A. 3; B. 4; …"), appended as it is."""
    option = extra.get("option", "")
    choices = options or wemath_options(option)
    prompt = f"{question}\n\nOptions: {option}\nYour final answer must be one of A, B, C, or D."
    return Asked(prompt, to_letter(answer, choices), choices)


_WEMATH_OPTION = re.compile(r"(?:^|;\s*)([A-H])\.\s*")


def wemath_options(option: str) -> list[str] | None:
    """We-Math's "A. 3; B. 4; C. 5" as ["3", "4", "5"] (letters in order from A), or None."""
    parts = _WEMATH_OPTION.split(option.strip())
    letters, texts = parts[1::2], parts[2::2]
    if len(letters) < 2 or "".join(letters) != LETTERS[: len(letters)]:
        return None
    return [t.strip() for t in texts]


def _mathvista(question: str, answer: str, options: list[str] | None, extra: Extra) -> Asked:
    """MathVista: the dataset's own `query` (question, options and hint), as the authors ask it."""
    return Asked(extra.get("query") or question, to_letter(answer, options), options or None)


def _mathverse(question: str, answer: str, options: list[str] | None, extra: Extra) -> Asked:
    """MathVerse: the `query_cot` prompt; a multiple-choice answer is already a letter."""
    return Asked(extra.get("query_cot") or question, answer.strip(), None)


def _hallusion(question: str, answer: str, options: list[str] | None, extra: Extra) -> Asked:
    """HallusionBench: the question up to its first "?", then the authors' yes/no instruction (sic)."""
    head = question.split("?")[0] if "?" in question else question
    gold = {"1": "yes", "0": "no"}.get(answer.strip(), answer.strip().lower())
    return Asked(f"{head}? You final answer can only be \\boxed{{yes}} or \\boxed{{no}}.", gold, None)


def _mme_realworld(question: str, answer: str, options: list[str] | None, extra: Extra) -> Asked:
    """MME-RealWorld-Lite: "Question:{Text}\\nChoices:{the choices list as Python prints it}"."""
    raw = options or listed(extra.get("Answer choices", "")) or []
    texts = [re.sub(r"^\([A-J]\)\s*", "", c) for c in raw]
    return Asked(f"Question:{question}\nChoices:{raw}", to_letter(answer, texts), texts)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("chartqa", {"image": "image", "question": "question", "answer": "answer", "category": "type"},
               _plain),
        Preset("mmstar", {"image": "image", "question": "question", "answer": "answer", "id": "index",
                          "category": "category"}, _inline, split="val"),
        Preset("ai2d", {"image": "image", "question": "question", "answer": "answer", "options": "options"},
               _question_choices),
        Preset("vstar", {"image": "image", "question": "text", "answer": "label", "id": "question_id",
                         "category": "category"}, _inline),
        Preset("charxiv", {"image": "image", "question": "reasoning_q", "answer": "reasoning_a",
                           "id": "original_id", "category": "category"}, _plain, split="validation"),
        Preset("mme_realworld_lite", {"image": "Image", "question": "Text", "answer": "Ground truth",
                                      "id": "Question_id", "category": "Subtask"}, _mme_realworld,
               keep=("Answer choices",), split="train"),
        Preset("wemath", {"image": "image_path", "question": "question", "answer": "answer"}, _wemath,
               meta=("ID", "key"), keep=("option",), split="testmini"),
        Preset("mathvista", {"image": "decoded_image", "question": "question", "answer": "answer",
                             "options": "choices", "id": "pid"}, _mathvista,
               meta=("question_type", "answer_type", "precision"), keep=("query",), split="testmini"),
        Preset("mathverse", {"image": "image", "question": "question", "answer": "answer",
                             "id": "sample_index", "category": "problem_version"}, _mathverse,
               keep=("query_cot",), split="testmini"),
        Preset("mathvision", {"image": "decoded_image", "question": "question", "answer": "answer",
                              "options": "options", "id": "id", "category": "subject"}, _mathvision),
        Preset("hallusionbench", {"image": "image", "question": "question", "answer": "gt_answer",
                                  "category": "category"}, _hallusion,
               meta=("category", "subcategory", "set_id", "figure_id", "question_id"), split="image"),
        Preset("tablevqa_vwtq", {"image": "image", "question": "question", "answer": "gt", "id": "qa_id"},
               _plain, split="vwtq"),
        Preset("realworldqa", {"image": "image", "question": "question", "answer": "answer"}, _inline),
        Preset("m3cot", {"image": "image", "question": "question", "answer": "answer", "options": "choices",
                         "id": "id", "category": "category"}, _question_choices),
    )
}  # fmt: skip
