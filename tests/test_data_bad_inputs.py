"""The malformed-input corpus (`tests/data/bad/`): each file has one fault, and each build of it must
fail with the expected file, line and field, print it on the CLI with exit code 2, and leave the
previous dataset untouched (no partial output, no staging directory left behind).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sayo.cli import app
from sayo.data.build import build
from sayo.data.config import DataConfig, SourceConfig
from sayo.data.validate import DataValidationError

DATA = Path(__file__).parent / "data"
BAD, GOOD, IMAGES = DATA / "bad", DATA / "good", DATA / "images"

# (file in bad/, source type, line (0 = JSON document), field, expected message fragment)
CASES = [
    # our JSONL schema
    ("jsonl_bad_json.jsonl", "jsonl", 2, "<line>", "not valid JSON"),
    ("jsonl_missing_image.jsonl", "jsonl", 1, "image", "image file not found"),
    ("jsonl_unreadable_image.jsonl", "jsonl", 1, "image", "unreadable image"),
    ("jsonl_truncated_image.jsonl", "jsonl", 1, "image", "unreadable image"),
    ("jsonl_bbox_outside.jsonl", "jsonl", 1, "regions[0].bbox", "outside the 64x48 image"),
    ("jsonl_bbox_inverted.jsonl", "jsonl", 1, "regions[0].bbox", "inverted"),
    ("jsonl_bbox_nan.jsonl", "jsonl", 1, "regions[0].bbox", "NaN"),
    ("jsonl_bbox_zero_area.jsonl", "jsonl", 1, "regions[0].bbox", "zero area"),
    ("jsonl_bbox_wrong_length.jsonl", "jsonl", 1, "regions[0].bbox", "list of 4 numbers"),
    ("jsonl_empty_question.jsonl", "jsonl", 1, "question", "empty question"),
    ("jsonl_empty_answer.jsonl", "jsonl", 1, "answer", "empty answer"),
    ("jsonl_duplicate_id.jsonl", "jsonl", 2, "id", "duplicate id 's1'"),
    ("jsonl_unknown_answer_type.jsonl", "jsonl", 1, "answer_type", "unknown answer type 'colour'"),
    ("jsonl_missing_id.jsonl", "jsonl", 1, "id", "missing or empty id"),
    ("jsonl_choice_without_choices.jsonl", "jsonl", 1, "<sample>", "needs a non-empty 'choices'"),
    ("jsonl_unknown_field.jsonl", "jsonl", 1, "colour", "Extra inputs are not permitted"),
    # VLMEvalKit TSV (line 1 is the header)
    ("tsv_bad_base64.tsv", "tsv", 3, "image", "undecodable base64"),
    ("tsv_not_an_image.tsv", "tsv", 2, "image", "unreadable image"),
    ("tsv_missing_column.tsv", "tsv", 1, "<header>", "missing column(s) ['answer']"),
    ("tsv_bad_bbox_cell.tsv", "tsv", 2, "bbox", "cannot parse bbox"),
    ("tsv_bbox_outside.tsv", "tsv", 2, "regions[0].bbox", "outside the 64x48 image"),
    ("tsv_empty_question.tsv", "tsv", 2, "question", "empty question"),
    ("tsv_duplicate_index.tsv", "tsv", 3, "id", "duplicate id"),
    ("tsv_answer_not_an_option.tsv", "tsv", 2, "answer", "not one of the option letters"),
    # an image cell holding an index (MMBench's layout) that no row has, or the row's own index
    ("tsv_image_ref_missing.tsv", "tsv", 3, "image", "refers to index '7', which no row has"),
    ("tsv_image_ref_self.tsv", "tsv", 3, "image", "refers to its own index '2'"),
    # COCO instances and RefCOCO refs ([x, y, w, h] boxes)
    ("coco_unknown_image.json", "coco", 0, "annotations[0].image_id", "unknown image id 2"),
    ("coco_unknown_category.json", "coco", 0, "annotations[0].category_id", "unknown category id 8"),
    ("coco_zero_width_bbox.json", "coco", 0, "annotations[0].bbox", "zero area"),
    ("coco_negative_height_bbox.json", "coco", 0, "annotations[0].bbox", "inverted"),
    ("coco_bbox_outside.json", "coco", 0, "annotations[0].bbox", "outside the 64x48 image"),
    ("coco_missing_image_file.json", "coco", 0, "images[id=1].file_name", "image file not found"),
    ("coco_invalid_json.json", "coco", 3, "<json>", "not valid JSON"),
    ("refcoco_unknown_ann.refs.json", "refcoco", 0, "refs[0].ann_id", "unknown annotation id 99"),
    (
        "refcoco_empty_sentence.refs.json",
        "refcoco",
        0,
        "refs[0].sentences[0].sent",
        "empty referring expression",
    ),
]


def source_for(name: str, kind: str) -> SourceConfig:
    """The source config that reads bad/`name` as a `kind` source."""
    if kind == "refcoco":
        return SourceConfig(
            type="refcoco", path=str(GOOD / "instances.json"), refs=str(BAD / name), images=str(IMAGES)
        )
    images = str(IMAGES) if kind == "coco" else ""
    return SourceConfig(type=kind, path=str(BAD / name), images=images)


@pytest.fixture
def previous(tmp_path: Path) -> Path:
    """An existing dataset directory that a failed build must leave exactly as it was."""
    out = tmp_path / "dataset"
    out.mkdir()
    (out / "manifest.jsonl").write_text("previous version\n")
    return out


def test_corpus_covers_every_bad_file() -> None:
    assert sorted(case[0] for case in CASES) == sorted(p.name for p in BAD.iterdir())
    assert len(CASES) >= 15


@pytest.mark.parametrize(("name", "kind", "line", "field", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_with_position(
    name: str, kind: str, line: int, field: str, fragment: str, previous: Path
) -> None:
    config = DataConfig(sources=[source_for(name, kind)], path=str(previous))
    with pytest.raises(DataValidationError) as info:
        build(config, progress=False)
    problems = info.value.problems
    assert len(problems) == 1, [str(p) for p in problems]
    problem = problems[0]
    assert Path(problem.file).name == name
    assert (problem.line, problem.field) == (line, field)
    assert fragment in problem.message
    assert fragment in str(info.value) and name in str(info.value)
    assert [p.name for p in previous.parent.iterdir()] == ["dataset"]  # no staging directory left
    assert [p.name for p in previous.iterdir()] == ["manifest.jsonl"]
    assert (previous / "manifest.jsonl").read_text() == "previous version\n"


@pytest.mark.parametrize("name", ["jsonl_bbox_outside.jsonl", "tsv_bad_base64.tsv"])
def test_cli_exits_2_and_lists_problems(name: str, previous: Path) -> None:
    kind = name.split("_")[0]
    config = previous.parent / "config.yaml"
    config.write_text(f"data:\n  path: {previous}\n  sources:\n    - {{type: {kind}, path: {BAD / name}}}\n")
    result = CliRunner().invoke(app, ["data", "build", "--config", str(config), "--no-progress"])
    assert result.exit_code == 2, result.output
    assert f"{name}:" in result.output and "nothing was written" in result.output
    assert (previous / "manifest.jsonl").read_text() == "previous version\n"


def test_tsv_reference_cycles_and_empty_targets_name_every_row(tmp_path: Path) -> None:
    """Rows 2 and 3 refer to each other; row 5 refers to row 4, whose image cell is empty."""
    red = (GOOD / "bench.tsv").read_text().splitlines()[1].split("\t")[1]
    rows = [("1", red), ("2", "3"), ("3", "2"), ("4", ""), ("5", "4"), ("6", "1")]
    text = "index\timage\tquestion\tanswer\n" + "".join(f"{i}\t{cell}\tQ?\tred\n" for i, cell in rows)
    (tmp_path / "refs.tsv").write_text(text)
    config = DataConfig(
        sources=[SourceConfig(type="tsv", path=str(tmp_path / "refs.tsv"))], path=str(tmp_path / "o")
    )
    with pytest.raises(DataValidationError) as info:
        build(config, progress=False)
    found = {(p.line, p.field): p.message for p in info.value.problems}
    assert found == {
        (3, "image"): "image references form a cycle: 2 -> 3 -> 2",
        (4, "image"): "image references form a cycle: 3 -> 2 -> 3",
        (5, "image"): "empty image cell",
        (6, "image"): "refers to index '4', whose image cell is empty",
    }  # row 7 (index 6 -> 1) is fine


def test_tsv_references_with_crlf_blank_lines_and_padding(tmp_path: Path) -> None:
    """Windows line ends, a blank line and padded cells: references and line numbers as csv reads them."""
    red = (GOOD / "bench.tsv").read_text().splitlines()[1].split("\t")[1]
    lines = [
        "index\timage\tquestion\tanswer",
        f" 1 \t{red}\tQ?\tred",
        "",
        "2\t 1 \tQ?\tred",
        "3\t 9\tQ?\tred",
    ]
    (tmp_path / "crlf.tsv").write_bytes(("\r\n".join(lines) + "\r\n").encode())
    config = DataConfig(
        sources=[SourceConfig(type="tsv", path=str(tmp_path / "crlf.tsv"))], path=str(tmp_path / "o")
    )
    with pytest.raises(DataValidationError) as info:
        build(config, progress=False)
    assert [str(p).split("crlf.tsv:")[1] for p in info.value.problems] == [
        "5: image: refers to index '9', which no row has"
    ]


def test_problem_list_is_capped(tmp_path: Path) -> None:
    rows = "".join(
        json.dumps({"id": f"x{i}", "image": "nowhere.png", "question": "q", "answer": "a"}) + "\n"
        for i in range(80)
    )
    (tmp_path / "many.jsonl").write_text(rows)
    config = DataConfig(
        sources=[SourceConfig(type="jsonl", path=str(tmp_path / "many.jsonl"))], path=str(tmp_path / "o")
    )
    with pytest.raises(DataValidationError) as info:
        build(config, progress=False)
    assert len(info.value.problems) == 80
    assert str(info.value).count("image file not found") == 50
    assert "... and 30 more problem(s)" in str(info.value)
    assert not (tmp_path / "o").exists()
