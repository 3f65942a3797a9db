"""Regenerate the importer fixtures: `good/` (valid sources of every format) and `bad/` (one fault each).

Why generated: every fixture is tiny and derived from two 64x48 PNGs, so the intent of each bad
file is readable here; the files themselves are committed so tests need no generation step.

    python tests/data/make_fixtures.py
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

from PIL import Image

HERE = Path(__file__).resolve().parent
GOOD, BAD, IMAGES = HERE / "good", HERE / "bad", HERE / "images"


def png(colour: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def sample(**changes: Any) -> dict[str, Any]:
    row = {"id": "s1", "image": "../images/red.png", "question": "What colour is the box?", "answer": "red"}
    row["regions"] = [{"bbox": [4, 4, 20, 20], "label": "box"}]
    return {**row, **changes}


def write_jsonl(path: Path, rows: list[Any]) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def tsv(
    rows: list[dict[str, str]], columns: tuple[str, ...] = ("index", "image", "question", "answer", "bbox")
) -> str:
    lines = ["\t".join(columns)] + ["\t".join(row.get(c, "") for c in columns) for row in rows]
    return "\n".join(lines) + "\n"


def tsv_row(**changes: str) -> dict[str, str]:
    row = {
        "index": "1",
        "image": base64.b64encode(png("red")).decode(),
        "question": "Colour?",
        "answer": "red",
    }
    return {**row, "bbox": "[4, 4, 20, 20]", **changes}


def coco(**changes: Any) -> dict[str, Any]:
    doc = {
        "images": [{"id": 1, "file_name": "red.png", "width": 64, "height": 48}],
        "categories": [{"id": 7, "name": "box"}],
        "annotations": [{"id": 10, "image_id": 1, "category_id": 7, "bbox": [4, 4, 16, 16]}],
    }
    return {**doc, **changes}


def ann(**changes: Any) -> list[dict[str, Any]]:
    return [{"id": 10, "image_id": 1, "category_id": 7, "bbox": [4, 4, 16, 16], **changes}]


def mmbench() -> str:
    """MMBench's layout: an image cell may hold another row's index instead of the image.

    Row 2 refers back to row 1, row 3 forward to row 4, and row 5 to row 2, itself a reference
    (a chain). Rows 1, 2 and 5 show the red image, rows 3 and 4 the blue one.
    """
    columns = ("index", "image", "question", "answer", "A", "B", "category", "l2-category")
    red, blue = base64.b64encode(png("red")).decode(), base64.b64encode(png("blue")).decode()
    rows = [
        {"index": "1", "image": red, "question": "Colour?", "answer": "A", "A": "red", "B": "blue"},
        {"index": "2", "image": "1", "question": "Is it warm?", "answer": "A", "A": "yes", "B": "no"},
        {"index": "3", "image": "4", "question": "Colour?", "answer": "B", "A": "red", "B": "blue"},
        {"index": "4", "image": blue, "question": "Is it warm?", "answer": "B", "A": "yes", "B": "no"},
        {"index": "5", "image": "2", "question": "Shape?", "answer": "B", "A": "circle", "B": "square"},
    ]
    for row in rows:
        row.update(category="colour", **{"l2-category": "perception"})
    return tsv(rows, columns)


def make_good() -> None:
    write_jsonl(
        GOOD / "samples.jsonl", [sample(), sample(id="s2", image="../images/blue.png", answer="blue")]
    )
    two = tsv([tsv_row(), tsv_row(index="2", image=base64.b64encode(png("blue")).decode(), answer="blue")])
    (GOOD / "bench.tsv").write_text(two)
    options = ("index", "image", "question", "answer", "A", "B", "C", "D")
    (GOOD / "choice.tsv").write_text(tsv([tsv_row(answer="b", A="blue", B="red", C="green")], options))
    (GOOD / "mmbench.tsv").write_text(mmbench())
    doc = coco()
    doc["annotations"].append({"id": 11, "image_id": 1, "category_id": 7, "bbox": [30, 20, 10, 10]})
    (GOOD / "instances.json").write_text(json.dumps(doc))
    refs = [
        {"ref_id": 5, "ann_id": 11, "image_id": 1, "sentences": [{"sent": "the lower box"}, {"sent": "box"}]}
    ]
    (GOOD / "refs.json").write_text(json.dumps(refs))


BAD_JSONL: dict[str, list[Any]] = {
    "jsonl_bad_json": [sample(), '{"id": "s2", "question": '],
    "jsonl_missing_image": [sample(image="../images/nowhere.png")],
    "jsonl_unreadable_image": [sample(image="../images/not_an_image.png")],
    "jsonl_truncated_image": [sample(image="../images/truncated.png")],
    "jsonl_bbox_outside": [sample(regions=[{"bbox": [40, 30, 70, 40]}])],
    "jsonl_bbox_inverted": [sample(regions=[{"bbox": [20, 4, 4, 20]}])],
    "jsonl_bbox_nan": [
        '{"id": "s1", "image": "../images/red.png", "question": "Q?", "answer": "a", "regions": [{"bbox": [1, NaN, 5, 5]}]}'
    ],
    "jsonl_bbox_zero_area": [sample(regions=[{"bbox": [4, 4, 4, 20]}])],
    "jsonl_bbox_wrong_length": [sample(regions=[{"bbox": [4, 4, 20]}])],
    "jsonl_empty_question": [sample(question="   ")],
    "jsonl_empty_answer": [sample(answer="")],
    "jsonl_duplicate_id": [sample(), sample(image="../images/blue.png")],
    "jsonl_unknown_answer_type": [sample(answer_type="colour")],
    "jsonl_missing_id": [sample(id="")],
    "jsonl_choice_without_choices": [sample(answer_type="choice")],
    "jsonl_unknown_field": [sample(colour="red")],
}


def make_bad() -> None:
    for name, rows in BAD_JSONL.items():
        write_jsonl(BAD / f"{name}.jsonl", rows)
    options = ("index", "image", "question", "answer", "A", "B")
    bad_tsv = {
        "tsv_bad_base64": tsv([tsv_row(), tsv_row(index="2", image="iVBOR%%%not-base64")]),
        "tsv_not_an_image": tsv([tsv_row(image=base64.b64encode(b"just some text").decode())]),
        "tsv_missing_column": tsv([tsv_row()], ("index", "image", "question")),
        "tsv_bad_bbox_cell": tsv([tsv_row(bbox="[4, 4, 20")]),
        "tsv_bbox_outside": tsv([tsv_row(bbox="[4, 4, 100, 20]")]),
        "tsv_empty_question": tsv([tsv_row(question="")]),
        "tsv_duplicate_index": tsv([tsv_row(), tsv_row()]),
        "tsv_answer_not_an_option": tsv([tsv_row(answer="C", A="red", B="blue")], options),
        "tsv_image_ref_missing": tsv([tsv_row(), tsv_row(index="2", image="7")]),  # no row has index 7
        "tsv_image_ref_self": tsv([tsv_row(), tsv_row(index="2", image="2")]),  # row 2 refers to itself
    }
    for name, text in bad_tsv.items():
        (BAD / f"{name}.tsv").write_text(text)
    bad_coco = {
        "coco_unknown_image": coco(annotations=ann(image_id=2)),
        "coco_unknown_category": coco(annotations=ann(category_id=8)),
        "coco_zero_width_bbox": coco(annotations=ann(bbox=[4, 4, 0, 16])),
        "coco_negative_height_bbox": coco(annotations=ann(bbox=[4, 20, 16, -8])),
        "coco_bbox_outside": coco(annotations=ann(bbox=[50, 4, 20, 16])),
        "coco_missing_image_file": coco(
            images=[{"id": 1, "file_name": "gone.png", "width": 64, "height": 48}]
        ),
    }
    for name, doc in bad_coco.items():
        (BAD / f"{name}.json").write_text(json.dumps(doc))
    (BAD / "coco_invalid_json.json").write_text('{"images": [\n  {"id": 1,\n')
    (BAD / "refcoco_unknown_ann.refs.json").write_text(
        json.dumps([{"ref_id": 1, "ann_id": 99, "sentences": [{"sent": "x"}]}])
    )
    (BAD / "refcoco_empty_sentence.refs.json").write_text(
        json.dumps([{"ref_id": 1, "ann_id": 10, "sentences": [{"sent": " "}]}])
    )


def main() -> None:
    for directory in (GOOD, BAD, IMAGES):
        directory.mkdir(exist_ok=True)
    (IMAGES / "red.png").write_bytes(png("red"))
    (IMAGES / "blue.png").write_bytes(png("blue"))
    (IMAGES / "not_an_image.png").write_bytes(b"this is not a PNG\n")
    (IMAGES / "truncated.png").write_bytes(png("green")[:60])
    make_good()
    make_bad()


if __name__ == "__main__":
    main()
