"""The paper's training data in miniature, in each published schema (docs/data.md cites the sources).

- GQA: `questions/train_all_questions/train_all_questions_0.json` and `sceneGraphs/train_sceneGraphs.json`
  keyed by question / image id, images `images/<imageId>.jpg` (the GQA download's layout).
- ReFocus: a dataset-repository directory `ReFocus_Data/data/train-00000-of-00001.parquet` with the
  card's features (`focus_areas_bbox` a sequence of {x1, y1, x2, y2}).
- The authors' parquet: the columns and arrow types of their writer (`focus_area` list<list<int64>>),
  written with pyarrow as they do, ranges made by `authors_ranges` (the writers' forward mapping).
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from sayo.data.importers.paper_grid import CELL, TILE, tile_counts

# image id -> (width, height, colour); objects: id -> (name, x, y, w, h)
GQA_IMAGES = {"2354786": (500, 375, "skyblue"), "2407890": (320, 240, "wheat"), "2375429": (448, 448, "grey")}
GQA_OBJECTS = {
    "2354786": {"2486325": ("sky", 0, 0, 500, 120), "2486330": ("tree", 40, 150, 100, 200)},
    "2407890": {"1087189": ("television", 284, 193, 30, 37), "1087191": ("table", 10, 100, 200, 120)},
    "2375429": {"3922137": ("pillow", 30, 60, 90, 50), "5191264": ("bed", 0, 40, 400, 300)},
}
# question id -> (image, question, answer, fullAnswer, semanticStr)
GQA_QUESTIONS = {
    "02930152": (
        "2354786",
        "Is the sky dark?",
        "yes",
        "Yes, the sky is dark.",
        "select: sky (2486325)->verify color: dark [0]",
    ),
    "02930160": (
        "2354786",
        "What is in front of the sky?",
        "tree",
        "The tree is in front of the sky.",
        "select: sky (2486325)->relate: _,in front of,s (2486330) [0]->query: name [1]",
    ),
    "07333408": (
        "2407890",
        "What is on the table?",
        "television",
        "The television is on the table.",
        "select: table (1087191)->relate: _,on,s (1087189) [0]->query: name [1]",
    ),
    "07333409": (
        "2407890",
        "Which room is it?",
        "living room",
        "It is a living room.",
        "select: scene->query: room [0]",
    ),
    "13151559": (
        "2375429",
        "What color is the pillow on the bed?",
        "white",
        "The pillow is white.",
        "select: bed (5191264)->relate: pillow,on,s (3922137) [0]->query: color [1]",
    ),
    "13151560": (
        "2375429",
        "Is the bed large?",
        "yes",
        "Yes, the bed is large.",
        "select: bed (5191264)->verify size: large [0]",
    ),
}


def jpeg(size: tuple[int, int], colour: str) -> bytes:
    """A JPEG of `size` in `colour`."""
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def write_gqa(root: Path, questions: dict[str, tuple] | None = None) -> dict[str, Path]:
    """GQA questions, scene graphs and images under `root`; returns their paths."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    for image_id, (width, height, colour) in GQA_IMAGES.items():
        (root / "images" / f"{image_id}.jpg").write_bytes(jpeg((width, height), colour))
    graphs = {
        image_id: {
            "width": GQA_IMAGES[image_id][0],
            "height": GQA_IMAGES[image_id][1],
            "location": "",
            "weather": "none",
            "objects": {
                oid: {"name": name, "x": x, "y": y, "w": w, "h": h, "attributes": [], "relations": []}
                for oid, (name, x, y, w, h) in objects.items()
            },
        }
        for image_id, objects in GQA_OBJECTS.items()
    }
    entries = {
        qid: {
            "semantic": [],
            "entailed": [],
            "equivalent": [qid],
            "question": question,
            "imageId": image_id,
            "isBalanced": True,
            "groups": {"global": None, "local": ""},
            "answer": answer,
            "semanticStr": semantic,
            "annotations": {"answer": {}, "question": {}, "fullAnswer": {}},
            "types": {"detailed": "", "semantic": "rel", "structural": "query"},
            "fullAnswer": full,
        }
        for qid, (image_id, question, answer, full, semantic) in (questions or GQA_QUESTIONS).items()
    }
    paths = {
        "questions": root / "questions" / "train_all_questions" / "train_all_questions_0.json",
        "scene_graphs": root / "sceneGraphs" / "train_sceneGraphs.json",
        "images": root / "images",
    }
    for key, data in (("questions", entries), ("scene_graphs", graphs)):
        paths[key].parent.mkdir(parents=True, exist_ok=True)
        paths[key].write_text(json.dumps(data))
    return paths


REFOCUS_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "question": datasets.Value("string"),
        "answer": datasets.Value("string"),
        "image": datasets.Image(),
        "thoughts": datasets.Sequence(datasets.Value("string")),
        "edited_image": datasets.Image(),
        "focus_areas_bbox": datasets.Sequence({k: datasets.Value("int32") for k in ("x1", "y1", "x2", "y2")}),
        "source": datasets.Value("string"),
        "split": datasets.Value("string"),
    }
)


def refocus_rows(n: int = 8) -> list[dict[str, Any]]:
    """`n` chart rows: row 3 has no focus area, row 5 two; charts 600x400 (wider than 448 px)."""
    rows = []
    for i in range(n):
        areas = (
            []
            if i == 3
            else [(20 + 10 * i, 30, 200 + 10 * i, 90)] + ([(300, 200, 560, 380)] if i == 5 else [])
        )
        image = {"bytes": jpeg((600, 400), ("white", "ivory", "linen")[i % 3]), "path": None}
        rows.append(
            {
                "id": f"chartqa_{i:04d}",
                "question": f"What is the value of bar {i}?",
                "answer": str(10 + i),
                "image": image,
                "thoughts": ["look at the bar"],
                "edited_image": image,
                "focus_areas_bbox": {
                    k: [a[j] for a in areas] for j, k in enumerate(("x1", "y1", "x2", "y2"))
                },
                "source": "chartqa",
                "split": "train",
            }
        )
    return rows


def write_refocus(root: Path, n: int = 8) -> Path:
    """The ReFocus_Data repository layout under `root`; returns the dataset directory."""
    directory = root / "ReFocus_Data"
    (directory / "data").mkdir(parents=True, exist_ok=True)
    table = datasets.Dataset.from_list(refocus_rows(n), features=REFOCUS_FEATURES)
    table.to_parquet(str(directory / "data" / "train-00000-of-00001.parquet"))
    return directory


def authors_ranges(box: list[float], width: int, height: int, writer: str) -> list[list[int]]:
    """The writers' forward mapping of a pixel box to `focus_area` ranges (docs/data.md)."""
    if writer == "multiple_processor":
        grid_w = grid_h = TILE
        scale = (TILE / width, TILE / height)
    else:
        i, j = tile_counts(width, height)
        grid_w, grid_h, scale = TILE * i, TILE * j, (float(i), float(j))
    x1, y1, x2, y2 = (
        max(0, min(v, limit - 1)) * s
        for v, limit, s in zip(box, (grid_w, grid_h, grid_w, grid_h), (*scale, *scale), strict=True)
    )
    cols = grid_w // CELL
    c1, c2, r1, r2 = (math.floor(v / CELL) for v in (x1, x2, y1, y2))
    return [[r * cols + c1, r * cols + c2] for r in range(r1, r2 + 1)]


def write_paper_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    """`rows` as the authors' writers store them (schema of their parquet writer)."""
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("type", pa.string()),
            ("question", pa.string()),
            ("answer", pa.string()),
            ("short_answer", pa.string()),
            ("image", pa.binary()),
            ("focus_area", pa.list_(pa.list_(pa.int64()))),
        ]
    )
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), str(path))
    return path
