"""The paper's fourteen evaluation sets as tiny local copies, each in its published layout (no downloads).

Column names and cell types follow what the authors' loader reads (Cratileo/Sayo
`eval/utils/data_loaders.py`) and the datasets' cards (docs/evaluation.md, "The paper's suite", cites
each). Every set is written as `hf download` leaves a dataset repository (`data/<split>-*.parquet`,
or a README `configs:` block for a named configuration), except V* Bench (a JSONL with image paths
relative to the repository) and MME-RealWorld-Lite (the authors' JSON file with an image folder).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
from hf_fixtures import png

COLOURS = ("red", "green", "blue", "yellow")


def _image(i: int) -> dict[str, Any]:
    return {"bytes": png(COLOURS[i % 4], (56, 56)), "path": None}


def _write_parquet(target: Path, split: str, records: list[dict[str, Any]], images: tuple[str, ...]) -> None:
    data = datasets.Dataset.from_list(records)
    for column in images:
        data = data.cast_column(column, datasets.Image())
    (target / "data").mkdir(parents=True, exist_ok=True)
    data.to_parquet(str(target / "data" / f"{split}-00000-of-00001.parquet"))


def chartqa(i: int) -> dict[str, Any]:  # lmms-lab/ChartQA: type, question, answer, image
    return {"type": "human_test", "question": f"What is the value of bar {i}?", "answer": str(10 + i),
            "image": _image(i)}  # fmt: skip


def mmstar(i: int) -> dict[str, Any]:  # Lin-Chen/MMStar: index, question (options inside), image, answer, ...
    question = "What colour is the square?\nOptions: A: red, B: green, C: blue, D: yellow"
    return {"index": i, "question": question, "image": _image(i), "answer": "ABCD"[i % 4],
            "category": "coarse perception", "l2_category": "image scene and topic", "meta_info": {"source": "x"}}  # fmt: skip


def ai2d(
    i: int,
) -> dict[str, Any]:  # lmms-lab/ai2d: question, options (list), answer (an index as text), image
    return {"question": "Which colour fills the picture?", "options": list(COLOURS), "answer": str(i % 4),
            "image": _image(i)}  # fmt: skip


def vstar(
    i: int,
) -> dict[str, Any]:  # craigwu/vstar_bench: image (a relative path), text, label, question_id, category
    text = "What is the colour of the square?\n(A) red\n(B) green\nAnswer with the option's letter from the given choices directly."
    return {"image": f"direct_attributes/sa_{i}.png", "text": text, "label": "AB"[i % 2], "question_id": i,
            "category": "direct_attributes"}  # fmt: skip


def charxiv(i: int) -> dict[str, Any]:  # princeton-nlp/CharXiv (validation): reasoning_q, reasoning_a, ...
    return {"image": _image(i), "category": "bar", "original_id": f"2401.{i:05d}", "reasoning_q": "How many bars?",
            "reasoning_a": str(i + 2), "reasoning_a_type": 3, "figure_path": f"images/{i}.jpg"}  # fmt: skip


def mme_realworld_lite(
    i: int,
) -> dict[str, Any]:  # the authors' JSON: Question_id, Image, Text, Answer choices, ...
    return {"Question_id": f"perception/{i}", "Image": f"remote_sensing/{i}.png", "Text": "What colour is it?",
            "Answer choices": ["(A) red", "(B) green", "(C) blue", "(D) yellow", "(E) black"],
            "Ground truth": "ABCD"[i % 4], "Task": "Perception", "Subtask": "Remote Sensing", "Category": "color"}  # fmt: skip


def wemath(
    i: int,
) -> dict[str, Any]:  # We-Math/We-Math (testmini): ID, key, question, option, answer, image_path
    keys = ("2steps_1", "2steps_2", "2steps_multi")
    return {"ID": "2steps_7", "split": "testmini", "knowledge concept": "Area", "question": f"Step {i}: what area?",
            "option": "A. 3; B. 4; C. 5; D. 6", "answer": "ABCD"[i % 4], "key": keys[i % 3],
            "question number": 7, "image_path": _image(i)}  # fmt: skip


def mathvista(i: int) -> dict[str, Any]:  # AI4Math/MathVista (testmini)
    choice = i % 2 == 0
    return {"pid": str(i + 1), "question": "What is the value?", "image": f"images/{i + 1}.jpg",
            "decoded_image": _image(i), "choices": ["3", "4", "5"] if choice else None, "unit": None,
            "precision": None if choice else 1.0, "answer": "4" if choice else "1.5",
            "question_type": "multi_choice" if choice else "free_form",
            "answer_type": "text" if choice else "float", "metadata": {"task": "figure question answering"},
            "query": "Hint: Please answer the question.\nQuestion: What is the value?"}  # fmt: skip


def mathverse(i: int) -> dict[str, Any]:  # AI4Math/MathVerse, configuration and split testmini
    return {"sample_index": str(i + 1), "problem_index": "1", "problem_version": "Text Dominant",
            "question": "Find x.", "image": _image(i), "answer": "B" if i % 2 else "12",
            "question_type": "multi-choice" if i % 2 else "free-form", "metadata": {"subject": "Plane Geometry"},
            "query_wo": "Find x.", "query_cot": "Find x. First conduct reasoning, then answer.",
            "question_for_eval": "Find x."}  # fmt: skip


def mathvision(
    i: int,
) -> dict[str, Any]:  # MathLLMs/MathVision (test): id, question, options, image, decoded_image, ...
    options = ["1", "2", "3", "4", "5"] if i % 2 == 0 else []
    return {"id": str(i + 1), "question": "How many triangles?", "options": options, "image": f"images/{i + 1}.jpg",
            "decoded_image": _image(i), "answer": "C" if options else "7", "solution": None, "level": 2,
            "subject": "counting"}  # fmt: skip


def hallusionbench(i: int) -> dict[str, Any]:  # lmms-lab/HallusionBench (split image)
    return {"category": "VD", "subcategory": "illusion", "visual_input": "1", "set_id": "0",
            "figure_id": str(i % 2), "sample_note": "circle", "question_id": str(i // 2),
            "question": "Is the square red? Please answer yes or no.", "gt_answer_details": "",
            "gt_answer": "1" if i % 2 == 0 else "0", "filename": f"./VD/illusion/0_{i}.png", "image": _image(i)}  # fmt: skip


def tablevqa(
    i: int,
) -> dict[str, Any]:  # terryoo/TableVQA-Bench (split vwtq): qa_id, question, gt, image, ...
    return {"qa_id": f"nu-{i}", "question": "which year had the most wins?", "gt": "2004|2005" if i % 2 else "2004",
            "image": _image(i), "text_html_table": "<table></table>"}  # fmt: skip


def realworldqa(i: int) -> dict[str, Any]:  # lmms-lab/RealWorldQA: image, question, answer
    question = ("Which way is the car facing?\nA. left\nB. right\nPlease answer directly with only the letter of "
                "the correct option and nothing else." if i % 2 == 0 else "How many cars are there?")  # fmt: skip
    return {"image": _image(i), "question": question, "answer": "A" if i % 2 == 0 else "2"}


def m3cot(
    i: int,
) -> dict[str, Any]:  # LightChen2333/M3CoT: id, category, question, choices, context, answer, image, ...
    return {"id": f"physical-{i}", "category": "physical-commonsense", "image_id": str(i), "question": "Which is hot?",
            "choices": ["ice", "fire"], "context": "", "answer": "B", "rationale": "", "split": "test",
            "image": _image(i), "domain": "commonsense", "topic": "physical"}  # fmt: skip


# directory under the suite root, split, row builder, image columns (sayo.evaluate.suite.SAYO_PAPER)
PARQUET_SETS: dict[str, tuple[str, str, Callable[[int], dict[str, Any]], tuple[str, ...]]] = {
    "ChartQA": ("ChartQA", "test", chartqa, ("image",)),
    "MMStar": ("MMStar", "val", mmstar, ("image",)),
    "AI2D": ("ai2d", "test", ai2d, ("image",)),
    "CharXiv_reasoning": ("CharXiv", "validation", charxiv, ("image",)),
    "WeMath": ("We-Math", "testmini", wemath, ("image_path",)),
    "MathVista": ("MathVista", "testmini", mathvista, ("decoded_image",)),
    "MathVision": ("MathVision", "test", mathvision, ("decoded_image",)),
    "HallusionBench": ("HallusionBench", "image", hallusionbench, ("image",)),
    "TableVQA_vwtq": ("TableVQA-Bench", "vwtq", tablevqa, ("image",)),
    "RealWorldQA": ("RealWorldQA", "test", realworldqa, ("image",)),
    "M3CoT": ("M3CoT", "test", m3cot, ("image",)),
}
SETS = (*PARQUET_SETS, "VStarBench", "MathVerse", "MME-RealWorld-Lite")


def write_suite(root: Path, n: int = 4, skip: tuple[str, ...] = ()) -> Path:
    """Every set of the paper's suite with `n` rows under `root` (sets named in `skip` left out)."""
    for name, (directory, split, row, images) in PARQUET_SETS.items():
        if name not in skip:
            _write_parquet(root / directory, split, [row(i) for i in range(n)], images)
    if "VStarBench" not in skip:
        _write_vstar(root / "vstar_bench", n)
    if "MathVerse" not in skip:
        _write_mathverse(root / "MathVerse", n)
    if "MME-RealWorld-Lite" not in skip:
        _write_mme_realworld(root / "MME-RealWorld-Lite" / "data", n)
    return root


def _write_vstar(target: Path, n: int) -> None:
    records = [vstar(i) for i in range(n)]
    for i, record in enumerate(records):
        (target / record["image"]).parent.mkdir(parents=True, exist_ok=True)
        (target / record["image"]).write_bytes(png(COLOURS[i % 4], (56, 56)))
    (target / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (target / "README.md").write_text(
        "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: test\n    path: test.jsonl\n---\n"
    )


def _write_mathverse(target: Path, n: int) -> None:
    data = datasets.Dataset.from_list([mathverse(i) for i in range(n)]).cast_column("image", datasets.Image())
    (target / "testmini").mkdir(parents=True, exist_ok=True)
    data.to_parquet(str(target / "testmini" / "testmini-00000-of-00001.parquet"))
    (target / "README.md").write_text(
        "---\nconfigs:\n- config_name: testmini\n  data_files:\n  - split: testmini\n"
        "    path: testmini/*.parquet\n---\n"
    )


def _write_mme_realworld(target: Path, n: int) -> None:
    records = [mme_realworld_lite(i) for i in range(n)]
    for i, record in enumerate(records):
        (target / "imgs" / record["Image"]).parent.mkdir(parents=True, exist_ok=True)
        (target / "imgs" / record["Image"]).write_bytes(png(COLOURS[i % 4], (56, 56)))
    (target / "MME-RealWorld-Lite.json").write_text(json.dumps(records))
