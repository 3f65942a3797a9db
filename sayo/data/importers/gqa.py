"""Importer for GQA: questions JSON + scene-graph JSON → one sample per question, with its object's box.

Schema (docs/data.md, "gqa"): the questions file maps a question id to {"imageId", "question",
"answer", "fullAnswer", "semanticStr", "types", ...}; the scene-graph file maps an image id to
{"width", "height", "objects": {object id: {"name", "x", "y", "w", "h", ...}}}; images are
`<images>/<imageId>.jpg`.

The referenced object is resolved as the authors' writer does (docs/data.md): the object id is
the first "(digits)" in `semanticStr` after which no further parenthesised group closes the string
(in practice the id of the last step that names an object). A question without one is dropped and
counted (`no_referent`), as they skip it; an id that the image's scene graph lacks, an unknown
image or a box with w or h ≤ 0 is an input error (their script would stop with a KeyError).

The answer is GQA's short `answer` ("exact" match); `columns: {answer: fullAnswer}` takes the full
sentence instead, as the authors' parquet stores it. All questions of one image share a split
(their `group`), so no image is seen in training and again in evaluation. Many questions share an
image: it is read once per run of consecutive questions on it and stored once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sayo.data.config import DataConfig, SourceConfig
from sayo.data.importers.files import image_root, load_json, read_image
from sayo.data.validate import Candidate, Dropped, Problem

OBJECT_ID = re.compile(r"\((\d+)\)")
LATER_GROUP = re.compile(r"[^(]*\([^()]*\)[^)]*")  # a later "(...)" with no ")" after it up to the end
FIELDS = ("imageId", "question", "semanticStr")


def referent(semantic: str) -> str | None:
    """The object id a GQA `semanticStr` refers to (see the module docstring), or None."""
    for match in OBJECT_ID.finditer(semantic):
        if LATER_GROUP.fullmatch(semantic, match.end()) is None:
            return match.group(1)
    return None


def import_gqa(source: SourceConfig, config: DataConfig) -> Iterator[Candidate | Problem | Dropped]:
    """One candidate per question of `source.path` whose referent resolves, in file order."""
    del config
    questions, graphs = load_json(source.path), load_json(source.scene_graphs)
    for loaded, file in ((questions, source.path), (graphs, source.scene_graphs)):
        if isinstance(loaded, Problem):
            yield loaded
        elif not isinstance(loaded, dict):
            yield Problem(
                file, 0, "<json>", f"must be a JSON object keyed by id, got {type(loaded).__name__}"
            )
    if not isinstance(questions, dict) or not isinstance(graphs, dict):
        return
    reader = _Images(image_root(source.path, source.images))
    answer = source.columns.get("answer", "answer")
    question_key = source.columns.get("question", "question")
    for number, (qid, entry) in enumerate(questions.items(), start=1):
        yield _question(source, graphs, reader, number, str(qid), entry, (question_key, answer))


class _Images:
    """Reads `<root>/<imageId>.jpg`, keeping the last one (questions on one image come together)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.last: tuple[str, bytes | Problem] | None = None

    def read(self, image_id: str, file: str, number: int, field: str) -> bytes | Problem:
        if self.last is None or self.last[0] != image_id:
            self.last = (image_id, read_image(self.root, f"{image_id}.jpg", file, number, field))
        return self.last[1]


def _question(
    source: SourceConfig,
    graphs: dict[str, Any],
    images: _Images,
    number: int,
    qid: str,
    entry: Any,
    keys: tuple[str, str],
) -> Candidate | Problem | Dropped:
    file = source.path
    if not isinstance(entry, dict):
        return Problem(file, number, qid, f"must be an object, got {type(entry).__name__}")
    missing = [key for key in (*FIELDS, *keys) if not isinstance(entry.get(key), str)]
    if missing:
        return Problem(file, number, f"{qid}.{missing[0]}", f"missing or not a string (fields {missing})")
    object_id = referent(entry["semanticStr"])
    if object_id is None:
        detail = f"no object id in semanticStr {entry['semanticStr']!r}"
        return Dropped(file, number, "no_referent", f"{qid}: {detail}", source.label)
    box = _object_box(source.scene_graphs, graphs, entry["imageId"], object_id)
    if isinstance(box, tuple) and isinstance(box[0], str):  # the question's fault: name its row
        return Problem(file, number, f"{qid}.{box[0]}", box[1])
    if isinstance(box, Problem):
        return box
    image = images.read(entry["imageId"], file, number, f"{qid}.imageId")
    if isinstance(image, Problem):
        return image
    fields = {
        "id": f"{source.label}-{qid}",
        "question": entry[keys[0]],
        "answer": entry[keys[1]],
        "answer_type": "exact",
        "regions": [{"bbox": box[0], "label": box[1]}],
        "source": source.label,
        "category": str((entry.get("types") or {}).get("semantic", "")),
    }
    return Candidate(
        fields=fields, image=image, file=file, line=number, group=f"{source.label}-{entry['imageId']}"
    )


def _object_box(
    file: str, graphs: dict[str, Any], image_id: str, object_id: str
) -> tuple[list[float], str] | tuple[str, str] | Problem:
    """(box [x1, y1, x2, y2], object name); or (question field, message) when the question refers to
    what the scene graphs lack; or the scene graph's own problem."""
    graph = graphs.get(image_id)
    if not isinstance(graph, dict) or not isinstance(graph.get("objects"), dict):
        return "imageId", f"image {image_id!r} has no scene graph in {Path(file).name}"
    obj = graph["objects"].get(object_id)
    if not isinstance(obj, dict):
        return "semanticStr", f"object id {object_id!r} is not in the scene graph of image {image_id!r}"
    where = f"{image_id}.objects.{object_id}"
    values = [obj.get(k) for k in ("x", "y", "w", "h")]
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
        return Problem(file, 0, where, f"x, y, w, h must be numbers, got {values}")
    x, y, w, h = (float(v) for v in values)  # type: ignore[arg-type]  # checked just above
    if w <= 0 or h <= 0:
        return Problem(file, 0, where, f"box (x, y, w, h) = {values} has w or h <= 0")
    return [x, y, x + w, y + h], str(obj.get("name", ""))
