"""Importers for COCO-style instances JSON and RefCOCO-style referring expressions.

Why these questions *[ours]*: COCO boxes come without questions, so the `coco` source asks one
counting question per (image, category) — "How many <category> are in the image?" — with every
box of that category as the regions: it cannot be answered without looking at them. The `refcoco`
source asks, for each referring expression, which category the described object is, with the
referred box as the region; all expressions of one ref share a split (their `group`).
Boxes are COCO `[x, y, w, h]` and are converted to `[x1, y1, x2, y2]`. JSON has no lines, so a
problem names the array and index (`annotations[12].bbox`) in its field.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sayo.data.config import DataConfig, SourceConfig
from sayo.data.importers.files import image_root, load_json, read_image
from sayo.data.validate import Candidate, Problem, bbox_problem


def xywh_to_xyxy(box: Any) -> Any:
    """COCO [x, y, w, h] → [x1, y1, x2, y2]; anything that is not 4 numbers is returned unchanged."""
    if isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box):
        x, y, w, h = box
        return [x, y, x + w, y + h]
    return box


class CocoIndex:
    """Images, categories and annotations of one instances JSON, with the problems found indexing it."""

    def __init__(self, file: str, data: Any) -> None:
        self.file = file
        self.problems: list[Problem] = []
        self.images: dict[Any, dict[str, Any]] = {}
        self.categories: dict[Any, str] = {}
        self.anns: dict[Any, tuple[int, dict[str, Any]]] = {}
        if not isinstance(data, dict) or not isinstance(data.get("images"), list):
            self._problem("images", "a COCO instances file needs an 'images' list")
            return
        for i, image in enumerate(data["images"]):
            if not isinstance(image, dict) or "id" not in image or "file_name" not in image:
                self._problem(f"images[{i}]", "needs 'id' and 'file_name'")
            else:
                self.images[image["id"]] = image
        for category in data.get("categories", []):
            self.categories[category.get("id")] = str(category.get("name", ""))
        for i, ann in enumerate(data.get("annotations", [])):
            self._index_annotation(i, ann)

    def _problem(self, field: str, message: str) -> None:
        self.problems.append(Problem(self.file, 0, field, message))

    def _index_annotation(self, i: int, ann: Any) -> None:
        where = f"annotations[{i}]"
        if not isinstance(ann, dict):
            self._problem(where, "must be an object")
        elif ann.get("image_id") not in self.images:
            self._problem(f"{where}.image_id", f"unknown image id {ann.get('image_id')!r}")
        elif ann.get("category_id") not in self.categories:
            self._problem(f"{where}.category_id", f"unknown category id {ann.get('category_id')!r}")
        else:
            self.anns[ann.get("id", f"#{i}")] = (i, ann)

    def box(self, i: int, ann: dict[str, Any]) -> list[float] | Problem:
        """The annotation's box as [x1, y1, x2, y2], or the problem with it (size from the image entry)."""
        image = self.images[ann["image_id"]]
        size = (image["width"], image["height"]) if "width" in image and "height" in image else None
        xyxy = xywh_to_xyxy(ann.get("bbox"))
        why = bbox_problem(xyxy, size)
        if why:
            return Problem(
                self.file, 0, f"annotations[{i}].bbox", f"{why} (COCO [x, y, w, h] = {ann.get('bbox')!r})"
            )
        return [float(v) for v in xyxy]


def _load(source: SourceConfig) -> tuple[CocoIndex | None, list[Problem]]:
    data = load_json(source.path)
    if isinstance(data, Problem):
        return None, [data]
    index = CocoIndex(source.path, data)
    return index, list(index.problems)


def import_coco(source: SourceConfig, config: DataConfig) -> Iterator[Candidate | Problem]:
    """One counting question per (image, category) present in the annotations."""
    del config
    index, problems = _load(source)
    yield from problems
    if index is None:
        return
    groups: dict[tuple[Any, Any], list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for i, ann in index.anns.values():
        groups[(ann["image_id"], ann["category_id"])].append((i, ann))
    root = image_root(source.path, source.images)
    for (image_id, category_id), anns in sorted(groups.items(), key=lambda kv: str(kv[0])):
        boxes = [index.box(i, ann) for i, ann in anns]
        bad = [box for box in boxes if isinstance(box, Problem)]
        if bad:  # a sample with a wrong box would get a wrong count: reject it whole
            yield from bad
            continue
        name = index.categories[category_id]
        fields = {
            "id": f"{source.label}-{image_id}-{category_id}",
            "question": f"How many {name} are in the image? Answer with a number.",
            "answer": str(len(boxes)),
            "answer_type": "number",
            "regions": [{"bbox": box, "label": name} for box in boxes],
            "source": source.label,
            "category": name,
        }
        yield _candidate(index, root, image_id, fields, source.path, "")


def _candidate(
    index: CocoIndex, root: Path, image_id: Any, fields: dict[str, Any], file: str, group: str
) -> Candidate | Problem:
    image = index.images[image_id]
    where = f"images[id={image_id}].file_name"
    data = read_image(root, image.get("file_name"), file, 0, where)
    if isinstance(data, Problem):
        return data
    return Candidate(fields=fields, image=data, file=file, line=0, group=group)


def import_refcoco(source: SourceConfig, config: DataConfig) -> Iterator[Candidate | Problem]:
    """One "which category is <expression>?" question per referring expression."""
    del config
    index, problems = _load(source)
    yield from problems
    refs = load_json(source.refs)
    if isinstance(refs, Problem):
        yield refs
        return
    if index is None:
        return
    if not isinstance(refs, list):
        yield Problem(source.refs, 0, "<json>", "a refs file must be a JSON list of refs")
        return
    root = image_root(source.path, source.images)
    for r, ref in enumerate(refs):
        yield from _ref_samples(index, root, source, r, ref)


def _ref_samples(
    index: CocoIndex, root: Path, source: SourceConfig, r: int, ref: Any
) -> Iterator[Candidate | Problem]:
    file, where = source.refs, f"refs[{r}]"
    ann_id = ref.get("ann_id") if isinstance(ref, dict) else None
    if ann_id not in index.anns:
        yield Problem(file, 0, f"{where}.ann_id", f"unknown annotation id {ann_id!r}")
        return
    i, ann = index.anns[ann_id]
    box = index.box(i, ann)
    sentences = ref.get("sentences")
    if isinstance(box, Problem) or not isinstance(sentences, list) or not sentences:
        yield box if isinstance(box, Problem) else Problem(file, 0, f"{where}.sentences", "no sentences")
        return
    name, ref_id = index.categories[ann["category_id"]], ref.get("ref_id", r)
    for s, sentence in enumerate(sentences):
        text = (sentence.get("sent") or sentence.get("raw") or "") if isinstance(sentence, dict) else ""
        if not str(text).strip():
            yield Problem(file, 0, f"{where}.sentences[{s}].sent", "empty referring expression")
            continue
        fields = {
            "id": f"{source.label}-{ref_id}-{s}",
            "question": f'What kind of object is "{text.strip()}"? Answer with its category.',
            "answer": name,
            "answer_type": "exact",
            "regions": [{"bbox": box, "label": text.strip()}],
            "source": source.label,
            "category": name,
        }
        yield _candidate(index, root, ann["image_id"], fields, file, f"{source.label}-{ref_id}")
