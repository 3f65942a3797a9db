"""Tests of `sayo.data.build`: every importer on valid inputs, content addressing, mixing weights,
stable hashed splits, skip-invalid, atomic replacement, determinism, the written files and the CLI."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from sayo.cli import app
from sayo.data import build as build_module
from sayo.data.build import build
from sayo.data.config import DataConfig, SourceConfig, SplitConfig
from sayo.data.layout import load_split
from sayo.data.mixing import assign_split, copies
from sayo.data.stats import histogram
from sayo.data.synthetic import SyntheticConfig, generate_sample, task_schedule

DATA = Path(__file__).parent / "data"
GOOD, BAD, IMAGES = DATA / "good", DATA / "bad", DATA / "images"


def _config(tmp_path: Path, *sources: SourceConfig, **kwargs) -> DataConfig:
    return DataConfig(sources=list(sources), path=str(tmp_path / "ds"), **kwargs)


def _manifest(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "ds" / "manifest.jsonl").read_text().splitlines()]


def test_jsonl_importer_content_addresses_images(tmp_path: Path) -> None:
    result = build(
        _config(tmp_path, SourceConfig(type="jsonl", path=str(GOOD / "samples.jsonl"))), progress=False
    )
    rows = _manifest(tmp_path)
    assert result.num_samples == 2 and [r["id"] for r in rows] == ["s1", "s2"]
    assert rows[0]["image"].startswith("images/") and rows[0]["image"].endswith(".png")
    assert rows[0]["image_size"] == [64, 48] and rows[0]["source"] == "jsonl"
    assert len(list((tmp_path / "ds" / "images").iterdir())) == 2


def test_identical_images_are_stored_once(tmp_path: Path) -> None:
    lines = [
        {"id": f"r{i}", "image": str(IMAGES / "red.png"), "question": "Colour?", "answer": "red"}
        for i in range(5)
    ]
    (tmp_path / "same.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    build(_config(tmp_path, SourceConfig(type="jsonl", path=str(tmp_path / "same.jsonl"))), progress=False)
    assert len({r["image"] for r in _manifest(tmp_path)}) == 1
    assert len(list((tmp_path / "ds" / "images").iterdir())) == 1


def test_tsv_importer_plain_and_choice(tmp_path: Path) -> None:
    plain = SourceConfig(type="tsv", path=str(GOOD / "bench.tsv"), name="bench")
    choice = SourceConfig(type="tsv", path=str(GOOD / "choice.tsv"), name="mc")
    build(_config(tmp_path, plain, choice), progress=False)
    rows = {r["id"]: r for r in _manifest(tmp_path)}
    assert rows["bench-1"]["answer_type"] == "exact" and rows["bench-1"]["regions"][0]["bbox"] == [
        4,
        4,
        20,
        20,
    ]
    assert rows["mc-1"]["answer_type"] == "choice" and rows["mc-1"]["answer"] == "B"
    assert rows["mc-1"]["choices"] == ["blue", "red", "green"]


def test_tsv_image_references_resolve_like_vlmevalkit(tmp_path: Path) -> None:
    """MMBench's layout: rows 2 (back), 3 (forward) and 5 (a chain 5 -> 2 -> 1) name another row's index."""
    build(
        _config(tmp_path, SourceConfig(type="tsv", path=str(GOOD / "mmbench.tsv"), name="mmb")),
        progress=False,
    )
    image = {r["id"]: r["image"] for r in _manifest(tmp_path)}
    assert image["mmb-1"] == image["mmb-2"] == image["mmb-5"]  # the red image, stored once
    assert image["mmb-3"] == image["mmb-4"] != image["mmb-1"]  # the blue one
    assert len(list((tmp_path / "ds" / "images").iterdir())) == 2
    colours = {i: Image.open(tmp_path / "ds" / image[f"mmb-{i}"]).getpixel((0, 0)) for i in range(1, 6)}
    assert colours == {1: (255, 0, 0), 2: (255, 0, 0), 3: (0, 0, 255), 4: (0, 0, 255), 5: (255, 0, 0)}


def test_tsv_options_beyond_d_and_listed_choices(tmp_path: Path) -> None:
    """Five options (MME-RealWorld's A-E), and a `choices` list column (MATH-Vision's layout)."""
    red = (GOOD / "bench.tsv").read_text().splitlines()[1].split("\t")[1]
    header = "index\timage\tquestion\tanswer\tA\tB\tC\tD\tE\tl2-category\n"
    (tmp_path / "five.tsv").write_text(header + f"1\t{red}\tWhich?\tE\ta\tb\tc\td\te\tcounting\n")
    (tmp_path / "listed.tsv").write_text(
        f"index\timage\tquestion\tanswer\tchoices\n1\t{red}\tHow many?\tb\t['3', 4]\n"
        f"2\t{red}\tHow many sides?\t4\t[]\n"
    )
    five = SourceConfig(type="tsv", path=str(tmp_path / "five.tsv"), name="five")
    listed = SourceConfig(type="tsv", path=str(tmp_path / "listed.tsv"), name="listed")
    build(_config(tmp_path, five, listed), progress=False)
    rows = {r["id"]: r for r in _manifest(tmp_path)}
    assert rows["five-1"]["choices"] == ["a", "b", "c", "d", "e"] and rows["five-1"]["answer"] == "E"
    assert rows["listed-1"]["answer_type"] == "choice" and rows["listed-1"]["choices"] == ["3", "4"]
    assert rows["listed-1"]["answer"] == "B"
    assert rows["listed-2"]["answer_type"] == "number" and rows["listed-2"]["choices"] is None  # empty list


def test_coco_counting_and_refcoco_expressions(tmp_path: Path) -> None:
    coco = SourceConfig(type="coco", path=str(GOOD / "instances.json"), images=str(IMAGES))
    refs = SourceConfig(
        type="refcoco", path=str(GOOD / "instances.json"), refs=str(GOOD / "refs.json"), images=str(IMAGES)
    )
    result = build(_config(tmp_path, coco, refs), progress=False)
    rows = {r["id"]: r for r in _manifest(tmp_path)}
    count = rows["coco-1-7"]
    assert (count["answer"], count["answer_type"]) == ("2", "number")
    assert [r["bbox"] for r in count["regions"]] == [[4, 4, 20, 20], [30, 20, 40, 30]]  # [x,y,w,h] -> xyxy
    assert rows["refcoco-5-0"]["answer"] == "box" and "the lower box" in rows["refcoco-5-0"]["question"]
    assert rows["refcoco-5-1"]["regions"][0]["bbox"] == [30, 20, 40, 30]
    split_of = {s.id: split for split in ("train", "val", "test") for s in load_split(result.output, split)}
    assert split_of["refcoco-5-0"] == split_of["refcoco-5-1"]  # one ref's expressions share a split


@pytest.mark.parametrize(
    ("weight", "expected"),
    [
        (1.0, 1),  # take every sample once
        (3.0, 3),  # whole weights repeat deterministically
    ],
)
def test_copies_whole_weights(weight: float, expected: int) -> None:
    assert all(copies(weight, 0, "src", f"id{i}") == expected for i in range(50))


def test_copies_fractional_weight_is_seeded_and_proportional() -> None:
    drawn = [copies(0.25, 0, "src", f"id{i}") for i in range(4000)]
    assert set(drawn) == {0, 1} and abs(sum(drawn) / 4000 - 0.25) < 0.03
    assert drawn == [copies(0.25, 0, "src", f"id{i}") for i in range(4000)]
    assert drawn != [copies(0.25, 1, "src", f"id{i}") for i in range(4000)]


def test_mixing_weights_and_repeats_share_split(tmp_path: Path) -> None:
    synthetic = SyntheticConfig(num_samples=40)
    mix = _config(tmp_path, SourceConfig(type="synthetic", weight=2.5), synthetic=synthetic)
    result = build(mix, progress=False)
    ids = [r["id"] for r in _manifest(tmp_path)]
    assert 80 <= result.num_samples <= 120 and sum("~r1" in i for i in ids) == 40
    split_of = {s.id: split for split in ("train", "val", "test") for s in load_split(result.output, split)}
    assert all(split_of[i] == split_of[i.split("~")[0]] for i in ids)


def test_splits_are_stable_when_samples_are_added() -> None:
    splits = SplitConfig()
    before = {f"id{i}": assign_split(f"id{i}", 0, splits) for i in range(1000)}
    counts = Counter(before.values())
    assert abs(counts["train"] - 800) < 60 and abs(counts["val"] - 100) < 35
    after = {f"id{i}": assign_split(f"id{i}", 0, splits) for i in range(1500)}
    assert all(after[k] == v for k, v in before.items())


def test_skip_invalid_writes_rejected(tmp_path: Path) -> None:
    good = SourceConfig(type="jsonl", path=str(GOOD / "samples.jsonl"), name="good")
    bad = SourceConfig(type="jsonl", path=str(BAD / "jsonl_bbox_outside.jsonl"), name="bad")
    result = build(_config(tmp_path, good, bad), skip_invalid=True, progress=False)
    assert result.num_samples == 2 and len(result.rejected) == 1
    rejected = [json.loads(line) for line in (tmp_path / "ds" / "rejected.jsonl").read_text().splitlines()]
    assert rejected[0]["field"] == "regions[0].bbox" and "outside" in rejected[0]["message"]
    assert rejected[0]["file"].endswith("jsonl_bbox_outside.jsonl") and rejected[0]["line"] == 1


def test_outputs_and_determinism(tmp_path: Path) -> None:
    config = _config(tmp_path, SourceConfig(type="synthetic"), synthetic=SyntheticConfig(num_samples=30))
    build(config, progress=False)
    out = tmp_path / "ds"
    first = {name: (out / name).read_bytes() for name in ("manifest.jsonl", "stats.json", "dataset_card.md")}
    stats = json.loads(first["stats.json"])
    assert stats["num_samples"] == 30 and sum(stats["per_split"].values()) == 30
    assert sum(stats["box_area_fraction"]["counts"]) == stats["num_regions"]
    assert set(stats["per_answer_type"]) <= {"exact", "number", "choice", "open"}
    assert (
        "# Dataset card" in first["dataset_card.md"].decode()
        and "| train |" in first["dataset_card.md"].decode()
    )
    with Image.open(out / "preview.png") as preview:
        assert preview.width > 224
    assert sum(len(load_split(out, s)) for s in ("train", "val", "test")) == 30
    build(config, progress=False)  # rebuilt over itself: replaced, identical
    assert {name: (out / name).read_bytes() for name in first} == first


def test_interrupted_build_keeps_previous(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config(tmp_path, SourceConfig(type="jsonl", path=str(GOOD / "samples.jsonl")))
    build(config, progress=False)
    before = (tmp_path / "ds" / "manifest.jsonl").read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(build_module, "_write_outputs", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build(config, progress=False)
    assert (tmp_path / "ds" / "manifest.jsonl").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_cli_build_with_overrides(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    args = [
        "data",
        "build",
        "--config",
        "tiny",
        "--no-progress",
        "data.synthetic.num_samples=12",
        f"data.path={out}",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "wrote 12 samples" in result.output
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 12


def test_cli_rejects_bad_config(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("data:\n  sources:\n    - {type: csv, path: x}\n")
    result = CliRunner().invoke(app, ["data", "build", "--config", str(tmp_path / "c.yaml")])
    assert result.exit_code != 0 and "data.sources.0.type = 'csv' (" in str(result.exception)


@pytest.mark.slow
def test_10k_synthetic_samples_through_the_parallel_path(tmp_path: Path) -> None:
    """10k samples through the parallel build reproduce `generate` sample by sample (its speed is
    measured by benchmarks/data_build.py, side by side, not asserted here)."""
    synthetic = SyntheticConfig(num_samples=10_000)
    result = build(_config(tmp_path, SourceConfig(type="synthetic"), synthetic=synthetic), progress=False)
    assert result.num_samples == 10_000
    rows = _manifest(tmp_path)
    for index in (0, 1, 777, 9_999):
        expected, _ = generate_sample(task_schedule(synthetic)[index], index, synthetic)
        assert rows[index]["id"] == expected.id and rows[index]["image"] == expected.image


@pytest.mark.parametrize(
    ("values", "counts"),
    [
        ([], [0, 0, 0]),  # empty input
        ([0, 0.5, 1, 1.5, 2, 99], [2, 2, 2]),  # left-closed bins, last bin open-ended
        ([-1], [1, 0, 0]),  # below the first edge counts in the first bin
    ],
)
def test_histogram_bins(values: list[float], counts: list[int]) -> None:
    assert histogram(values, [0, 1, 2]) == {"edges": [0, 1, 2], "counts": counts}


def test_build_keeps_what_the_generator_decides(tmp_path: Path) -> None:
    """`sayo data build` (the synthetic importer) writes every field `generate_sample` decides,
    a misreading demonstration's answer included."""
    synthetic = SyntheticConfig(
        num_samples=24, tasks={"search": 1.0}, image_size=(224, 224), num_distractors=8, object_tokens=1,
        search_question="below", search_path=1, search_path_target=True, search_detour="lookalike",
        search_misread_rate=1.0,
    )  # fmt: skip
    build(_config(tmp_path, SourceConfig(type="synthetic"), synthetic=synthetic), progress=False)
    rows = {row["id"]: row for row in _manifest(tmp_path)}
    schedule = task_schedule(synthetic)
    assert any("demonstrated_answer" in row for row in rows.values())
    for index, task in enumerate(schedule):
        sample, _ = generate_sample(task, index, synthetic)
        row = rows[sample.id]
        for key in ("question", "answer", "reasoning", "direct_reasoning", "demonstrated_answer"):
            assert row.get(key) == getattr(sample, key), (sample.id, key)
