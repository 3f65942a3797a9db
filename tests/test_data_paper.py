"""The paper's training data: GQA, ReFocus and the authors' token-range parquet, from fixtures in their schemas."""

from __future__ import annotations

import io
import json
from pathlib import Path

import datasets
import pytest
from paper_data_fixtures import (
    GQA_OBJECTS,
    GQA_QUESTIONS,
    authors_ranges,
    jpeg,
    write_gqa,
    write_paper_parquet,
    write_refocus,
)
from PIL import Image
from typer.testing import CliRunner

from sayo.cli import app
from sayo.data.build import build
from sayo.data.config import DataConfig, SourceConfig
from sayo.data.importers.gqa import referent
from sayo.data.importers.paper_grid import WriterGrid, ranges_to_box, tile_counts, writer_grid
from sayo.data.validate import DataValidationError
from sayo.regions import bbox_to_token_indices


def _build(tmp_path: Path, *sources: SourceConfig, **kwargs: object) -> dict:
    build(DataConfig(sources=list(sources), path=str(tmp_path / "ds")), progress=False, **kwargs)  # type: ignore[arg-type]
    return json.loads((tmp_path / "ds" / "stats.json").read_text())


def _manifest(tmp_path: Path) -> dict[str, dict]:
    lines = (tmp_path / "ds" / "manifest.jsonl").read_text().splitlines()
    return {row["id"]: row for row in map(json.loads, lines)}


def _gqa(paths: dict[str, Path], **kwargs: object) -> SourceConfig:
    return SourceConfig(
        type="gqa",
        path=str(paths["questions"]),
        scene_graphs=str(paths["scene_graphs"]),
        images=str(paths["images"]),
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("semantic", "expected"),
    [
        ("select: sky (2486325)->verify color: dark [0]", "2486325"),
        ("select: table (1087191)->relate: _,on,s (1087189) [0]->query: name [1]", "1087189"),
        ("select: scene->query: room [0]", None),
        ("select: bed (51)->relate: pillow,on,s (-) [0]->query: color [1]", None),  # the last group is no id
        ("select: bed (51)->filter: (large) [0]->query: color [1]", None),
        ("select: cup (7)->choose: (a) or (b)", "7"),  # a later group followed by ")" ... (b) closes it
    ],
)
def test_referent_is_the_authors_object_id(semantic: str, expected: str | None) -> None:
    assert referent(semantic) == expected


def test_gqa_one_sample_per_question_with_its_object(tmp_path: Path) -> None:
    stats = _build(tmp_path, _gqa(write_gqa(tmp_path / "gqa")))
    found = _manifest(tmp_path)
    assert sorted(found) == sorted(f"gqa-{q}" for q in GQA_QUESTIONS if q != "07333409")
    _, x, y, w, h = GQA_OBJECTS["2407890"]["1087189"]
    sample = found["gqa-07333408"]
    assert sample["regions"] == [{"bbox": [x, y, x + w, y + h], "label": "television"}]
    assert sample["answer"] == "television" and sample["image_size"] == [320, 240]
    assert stats["num_images"] == 3 and len(list((tmp_path / "ds" / "images").iterdir())) == 3
    assert stats["dropped"] == {"gqa": {"no_referent": 1}}
    (dropped,) = map(json.loads, (tmp_path / "ds" / "dropped.jsonl").read_text().splitlines())
    assert dropped["line"] == 4 and dropped["reason"] == "no_referent" and "07333409" in dropped["detail"]
    splits = {
        row["id"]: name
        for name in ("train", "val", "test")
        for row in map(json.loads, (tmp_path / "ds" / f"{name}.jsonl").read_text().splitlines())
    }
    assert splits["gqa-02930152"] == splits["gqa-02930160"]  # one image, one split


def test_gqa_full_answer_and_fill_to(tmp_path: Path) -> None:
    _build(tmp_path, _gqa(write_gqa(tmp_path / "gqa"), columns={"answer": "fullAnswer"}, fill_to=2))
    found = _manifest(tmp_path)
    assert list(found) == ["gqa-02930152", "gqa-02930160"]  # file order, stopped at 2 samples
    assert found["gqa-02930152"]["answer"] == "Yes, the sky is dark."


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        (
            {"semanticStr": "select: sky (999)->verify color: dark [0]"},
            "02930152.semanticStr",
            "object id '999' is not in the scene graph of image '2354786'",
        ),
        ({"imageId": "404"}, "02930152.imageId", "image '404' has no scene graph"),
        ({"question": None}, "02930152.question", "missing or not a string"),
    ],
)
def test_gqa_bad_questions(tmp_path: Path, change: dict, field: str, fragment: str) -> None:
    questions = {"02930152": GQA_QUESTIONS["02930152"]}
    paths = write_gqa(tmp_path / "gqa", questions)
    data = json.loads(paths["questions"].read_text())
    data["02930152"].update(change)
    paths["questions"].write_text(json.dumps(data))
    with pytest.raises(DataValidationError) as info:
        _build(tmp_path, _gqa(paths))
    (problem,) = info.value.problems
    assert (problem.file, problem.line, problem.field) == (str(paths["questions"]), 1, field)
    assert fragment in problem.message


def test_gqa_bad_scene_graph_box(tmp_path: Path) -> None:
    paths = write_gqa(tmp_path / "gqa", {"02930152": GQA_QUESTIONS["02930152"]})
    graphs = json.loads(paths["scene_graphs"].read_text())
    graphs["2354786"]["objects"]["2486325"]["w"] = 0
    paths["scene_graphs"].write_text(json.dumps(graphs))
    with pytest.raises(DataValidationError) as info:
        _build(tmp_path, _gqa(paths))
    assert [str(p) for p in info.value.problems] == [
        f"{paths['scene_graphs']}: 2354786.objects.2486325: box (x, y, w, h) = [0, 0, 0, 120] has w or h <= 0"
    ]


def test_refocus_areas_are_regions_and_empty_rows_are_counted(tmp_path: Path) -> None:
    directory = write_refocus(tmp_path)
    stats = _build(tmp_path, SourceConfig(type="refocus", path=str(directory)))
    found = _manifest(tmp_path)
    assert len(found) == 7 and "refocus-chartqa_0003" not in found
    assert [r["bbox"] for r in found["refocus-chartqa_0005"]["regions"]] == [
        [70, 30, 250, 90],
        [300, 200, 560, 380],
    ]
    assert stats["dropped"] == {"refocus": {"no_focus_area": 1}}
    _build(tmp_path, SourceConfig(type="refocus", path=str(directory), areas="first"))
    assert len(_manifest(tmp_path)["refocus-chartqa_0005"]["regions"]) == 1


def test_refocus_selection_is_the_authors_split(tmp_path: Path) -> None:
    directory = write_refocus(tmp_path, n=20)
    source = SourceConfig(type="refocus", path=str(directory), select_fraction=0.25, select_seed=42)
    _build(tmp_path, source)
    theirs = datasets.load_dataset(str(directory), split="train").train_test_split(test_size=0.25, seed=42)
    expected = {f"refocus-{i}" for i in theirs["test"]["id"] if i != "chartqa_0003"}
    assert set(_manifest(tmp_path)) == expected and len(expected) >= 4


@pytest.mark.parametrize("size", [(448, 448), (300, 200), (500, 375), (1000, 300), (640, 480)])
def test_tile_counts_match_the_aspect_ratio(size: tuple[int, int]) -> None:
    i, j = tile_counts(*size)
    ratios = [(a, b) for a in range(1, 13) for b in range(1, 13) if a * b <= 12]
    best = min(abs(size[0] / size[1] - a / b) for a, b in ratios)
    assert 1 <= i * j <= 12 and abs(size[0] / size[1] - i / j) == best


@pytest.mark.parametrize(
    "box", [[0, 0, 10, 10], [30.5, 60, 120, 110], [100, 200, 447, 447], [0, 0, 448, 448]]
)
def test_multiple_processor_ranges_invert_onto_the_same_tokens(box: list[float]) -> None:
    """Decoded box ⊇ annotated box, < one 28-px cell larger per side, and sayo.regions marks the writer's tokens."""
    ranges = authors_ranges(box, 448, 448, "multiple_processor")
    grid = writer_grid("multiple_processor", 448, 448)
    assert isinstance(grid, WriterGrid)
    decoded = ranges_to_box(ranges, grid)
    assert isinstance(decoded, list)
    clamped = [min(v, 447) for v in box]
    assert all(0 <= a - d < 28 for a, d in zip(clamped[:2], decoded[:2], strict=True))
    assert all(0 < d - a <= 28 for a, d in zip(clamped[2:], decoded[2:], strict=True))
    tokens = [t for start, end in ranges for t in range(start, end + 1)]
    assert bbox_to_token_indices(decoded, (448, 448), (1, 32, 32), 2) == tokens


@pytest.mark.parametrize("size", [(320, 240), (448, 448), (400, 300)])
def test_pre_processor_round_trip_where_no_range_wraps(size: tuple[int, int]) -> None:
    """On images up to 448 px the writer's ranges invert uniquely: re-encoding the decoded box gives them back."""
    grid = writer_grid("pre_processor", *size)
    assert isinstance(grid, WriterGrid)
    i, j = grid.tiles
    for box in ([10, 20, 100, 90], [0, 0, size[0] - 1, size[1] - 1], [200, 100, 230, 140]):
        ranges = authors_ranges(box, *size, "pre_processor")
        decoded = ranges_to_box(ranges, grid)
        assert isinstance(decoded, list), decoded
        assert all(0 <= a - d < 28 / s for a, d, s in zip(box[:2], decoded[:2], (i, j), strict=True))
        assert (
            authors_ranges(
                [decoded[0], decoded[1], decoded[2] - 1e-6, decoded[3] - 1e-6], *size, "pre_processor"
            )
            == ranges
        )


def test_pre_processor_wrapped_and_past_grid_ranges_are_refused() -> None:
    grid = writer_grid("pre_processor", 500, 375)  # 4x3 tiles: 64 columns, 48 rows; x >= 448 wraps
    assert isinstance(grid, WriterGrid) and (grid.cols, grid.rows) == (64, 48)
    wraps = authors_ranges([400, 10, 480, 40], 500, 375, "pre_processor")
    assert "wraps into the next row" in str(ranges_to_box(wraps, grid))
    beyond = authors_ranges([460, 100, 490, 130], 500, 375, "pre_processor")  # wholly past x = 448
    assert "ambiguous" in str(ranges_to_box(beyond, grid))
    tall = writer_grid("pre_processor", 500, 600)  # 3x4 tiles: 48 columns, 64 rows; y >= 448 is past them
    low = authors_ranges([10, 460, 50, 500], 500, 600, "pre_processor")
    assert isinstance(tall, WriterGrid) and "past the 64x48 token grid" in str(ranges_to_box(low, tall))
    assert isinstance(ranges_to_box(authors_ranges([10, 5, 60, 20], 500, 375, "pre_processor"), grid), list)


def _paper_rows(writer: str) -> list[dict]:
    size = (448, 448) if writer == "multiple_processor" else (500, 375)
    boxes = {"ok": [10, 5, 60, 20], "wraps": [400, 10, 480, 40], "ambiguous": [460, 100, 490, 130]}
    rows = []
    for name, box in boxes.items():
        rows.append(
            {
                "id": name,
                "type": "img",
                "question": f"What is at {name}?",
                "answer": f"The {name}.",
                "short_answer": name,
                "image": jpeg(size, "grey"),
                "focus_area": authors_ranges(box, *size, writer),
            }
        )
    rows.append(
        {
            "id": "chart",
            "type": "chart",
            "question": "Value?",
            "answer": "12",
            "short_answer": None,
            "image": jpeg(size, "white"),
            "focus_area": authors_ranges([0, 0, 40, 40], *size, writer),
        }
    )
    return rows


def test_paper_parquet_pre_processor_counts_what_it_cannot_invert(tmp_path: Path) -> None:
    path = write_paper_parquet(tmp_path / "GRPO_20k.parquet", _paper_rows("pre_processor"))
    stats = _build(tmp_path, SourceConfig(type="paper_parquet", path=str(path), writer="pre_processor"))
    found = _manifest(tmp_path)
    assert sorted(found) == ["paper_parquet-chart", "paper_parquet-ok"]
    assert found["paper_parquet-ok"]["answer"] == "ok" and found["paper_parquet-ok"]["category"] == "img"
    assert (
        found["paper_parquet-chart"]["answer"] == "12"
        and found["paper_parquet-chart"]["answer_type"] == "number"
    )
    assert found["paper_parquet-ok"]["regions"][0]["bbox"] == [
        7.0,
        0.0,
        63.0,
        28.0,
    ]  # cells of 28/4 x 28/3 px
    assert stats["dropped"] == {"paper_parquet": {"range_ambiguous": 1, "range_wraps": 1}}


def test_paper_parquet_multiple_processor(tmp_path: Path) -> None:
    path = write_paper_parquet(tmp_path / "p.parquet", _paper_rows("multiple_processor"))
    stats = _build(tmp_path, SourceConfig(type="paper_parquet", path=str(path), writer="multiple_processor"))
    assert stats["num_samples"] == 4 and stats["num_dropped"] == 0
    assert _manifest(tmp_path)["paper_parquet-ok"]["regions"][0]["bbox"] == [0.0, 0.0, 84.0, 28.0]
    wrong = write_paper_parquet(tmp_path / "w.parquet", _paper_rows("pre_processor"))
    with pytest.raises(DataValidationError) as info:
        _build(tmp_path, SourceConfig(type="paper_parquet", path=str(wrong), writer="multiple_processor"))
    assert {p.field for p in info.value.problems} == {"image"}
    assert "multiple_processor stores 448x448 images; this one is 500x375" in info.value.problems[0].message


def test_paper_parquet_malformed_ranges_are_input_errors(tmp_path: Path) -> None:
    rows = _paper_rows("multiple_processor")[:1]
    rows[0]["focus_area"] = [[5, 7], [30, 31]]  # rows 0 and 1, different columns: not one box
    path = write_paper_parquet(tmp_path / "p.parquet", rows)
    with pytest.raises(DataValidationError) as info:
        _build(tmp_path, SourceConfig(type="paper_parquet", path=str(path), writer="multiple_processor"))
    assert [str(p) for p in info.value.problems] == [
        f"{path}:1: focus_area: ranges [[5, 7], [30, 31]] are not one box (consecutive rows, the same columns)"
    ]


def test_undecodable_image_bytes_in_the_authors_parquet(tmp_path: Path) -> None:
    rows = _paper_rows("multiple_processor")[:1]
    rows[0]["image"] = b"\x89PNG broken"
    path = write_paper_parquet(tmp_path / "p.parquet", rows)
    with pytest.raises(DataValidationError) as info:
        _build(tmp_path, SourceConfig(type="paper_parquet", path=str(path), writer="multiple_processor"))
    (problem,) = info.value.problems
    assert (problem.line, problem.field) == (1, "image") and "unreadable image" in problem.message


def test_paper_mix_recipe_builds_from_the_fixtures(tmp_path: Path) -> None:
    gqa, refocus = write_gqa(tmp_path / "GQA"), write_refocus(tmp_path, n=20)
    args = [
        "data",
        "build",
        "--config",
        "paper_mix",
        "--no-progress",
        f"data.path={tmp_path / 'paper_mix'}",
        f"data.sources.0.path={refocus}",
        f"data.sources.1.path={gqa['questions']}",
        f"data.sources.1.scene_graphs={gqa['scene_graphs']}",
        f"data.sources.1.images={gqa['images']}",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    stats = json.loads((tmp_path / "paper_mix" / "stats.json").read_text())
    assert set(stats["per_source"]) == {"refocus", "gqa"} and stats["dropped"]["gqa"] == {"no_referent": 1}
    assert stats["per_source"]["gqa"] == 5


def test_image_sizes_survive_the_store(tmp_path: Path) -> None:
    _build(tmp_path, _gqa(write_gqa(tmp_path / "gqa")))
    for row in _manifest(tmp_path).values():
        with Image.open(io.BytesIO((tmp_path / "ds" / row["image"]).read_bytes())) as image:
            assert list(image.size) == row["image_size"]


@pytest.mark.slow
def test_paper_data_trains_two_sft_and_two_grpo_steps(tmp_path: Path) -> None:
    """GQA + ReFocus fixtures → `sayo data build` → `sayo sft` → `sayo grpo`, two steps each, tiny policy."""
    gqa, refocus = write_gqa(tmp_path / "GQA"), write_refocus(tmp_path)
    recipe = tmp_path / "paper_tiny.yaml"
    recipe.write_text(
        "base: tiny\n"
        f"data:\n  path: {tmp_path / 'ds'}\n  splits: {{train: 1.0, val: 0.0, test: 0.0}}\n  sources:\n"
        f"    - {{type: refocus, path: {refocus}, areas: first}}\n"
        f"    - {{type: gqa, path: {gqa['questions']}, scene_graphs: {gqa['scene_graphs']}, images: {gqa['images']}}}\n"
    )
    common = [
        "--config",
        str(recipe),
        f"checkpoint.dir={tmp_path / 'ckpt'}",
        "tracking.enabled=false",
        "device=cpu",
    ]
    runner = CliRunner()
    built = runner.invoke(app, ["data", "build", *common[:2], "--no-progress"])
    assert built.exit_code == 0, built.output
    assert json.loads((tmp_path / "ds" / "stats.json").read_text())["per_split"]["train"] == 12
    sft = runner.invoke(app, ["sft", *common, "sft.max_steps=2", "sft.batch_size=2", "sft.eval_every=0"])
    assert sft.exit_code == 0, sft.output
    assert (tmp_path / "ckpt" / "sft" / "final").is_dir()
    grpo_args = [
        "grpo.max_steps=2",
        "grpo.prompts_per_step=2",
        "grpo.group_size=2",
        "grpo.micro_batch_size=4",
        "grpo.max_new_tokens=8",
        "grpo.probe_every=0",
    ]
    grpo = runner.invoke(app, ["grpo", *common, *grpo_args])
    assert grpo.exit_code == 0, grpo.output
    assert (tmp_path / "ckpt" / "grpo" / "final").is_dir()


def test_paper_mix_holds_the_authors_selection() -> None:
    """utils/pre_processor_data.py: ReFocus test quarter (seed 42), first area; GQA until > 20,000 rows; 1 % eval."""
    from sayo.recipe import load_recipe

    recipe = load_recipe("paper_mix")
    refocus, gqa = recipe.data.sources
    assert (refocus.type, refocus.split, refocus.select_fraction, refocus.select_seed, refocus.areas) == (
        "refocus",
        "train",
        0.25,
        42,
        "first",
    )
    assert (gqa.type, gqa.fill_to, gqa.columns) == ("gqa", 20001, {})
    assert Path(gqa.path).name == "train_all_questions_0.json"
    assert (recipe.data.splits.train, recipe.data.splits.val, recipe.data.splits.test) == (0.99, 0.01, 0.0)
    assert recipe.model.name_or_path == "Qwen/Qwen3-VL-8B-Instruct" and recipe.grpo.init_from == "model"
