"""The `hf` source: every on-disk form of a Hugging Face dataset, column maps, box conventions, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest
from hf_fixtures import dataset, fake_hub_cache, png, rows
from typer.testing import CliRunner

from sayo.cli import app
from sayo.data.build import build
from sayo.data.config import DataConfig, SourceConfig
from sayo.data.importers import import_source
from sayo.data.validate import Candidate, DataValidationError, Problem


def _config(tmp_path: Path, *sources: SourceConfig) -> DataConfig:
    return DataConfig(sources=list(sources), path=str(tmp_path / "ds"))


def _manifest(tmp_path: Path) -> dict[str, dict]:
    lines = (tmp_path / "ds" / "manifest.jsonl").read_text().splitlines()
    return {row["id"]: row for row in map(json.loads, lines)}


def _problems(source: SourceConfig, tmp_path: Path) -> list[Problem]:
    with pytest.raises(DataValidationError) as info:
        build(_config(tmp_path, source), progress=False)
    return info.value.problems


@pytest.mark.parametrize("form", ["parquet", "arrow_saved", "dataset_dict", "jsonl_paths", "glob"])
def test_every_on_disk_form_reads_the_same_samples(tmp_path: Path, form: str) -> None:
    data = dataset(rows(4))
    if form == "parquet":
        data.to_parquet(str(tmp_path / "d.parquet"))
        source = SourceConfig(type="hf", path=str(tmp_path / "d.parquet"), name="x")
    elif form == "arrow_saved":
        data.save_to_disk(str(tmp_path / "saved"))
        source = SourceConfig(type="hf", path=str(tmp_path / "saved"), name="x")
    elif form == "dataset_dict":
        datasets.DatasetDict({"train": dataset(rows(1)), "test": data}).save_to_disk(str(tmp_path / "dd"))
        source = SourceConfig(type="hf", path=str(tmp_path / "dd"), split="test", name="x")
    elif form == "jsonl_paths":  # images as paths relative to the file
        records = []
        for i, row in enumerate(rows(4)):
            (tmp_path / f"im{i}.png").write_bytes(row["image"]["bytes"])
            records.append({**row, "image": f"im{i}.png"})
        (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        source = SourceConfig(type="hf", path=str(tmp_path / "d.jsonl"), name="x")
    else:
        dataset(rows(4)[:2]).to_parquet(str(tmp_path / "a.parquet"))
        dataset(rows(4)[2:]).to_parquet(str(tmp_path / "b.parquet"))
        source = SourceConfig(type="hf", path=str(tmp_path / "*.parquet"), name="x")
    build(_config(tmp_path, source), progress=False)
    found = _manifest(tmp_path)
    assert sorted(found) == [f"x-q{i}" for i in range(4)]
    assert found["x-q1"]["regions"][0]["bbox"] == [2.0, 2.0, 30.0, 40.0]
    assert found["x-q1"]["answer"] == "green" and found["x-q1"]["image_size"] == [64, 48]


def test_dataset_from_the_local_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "hub"
    fake_hub_cache(cache, "org/charts", {"train": dataset(rows(2)), "test": dataset(rows(3))})
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    build(_config(tmp_path, SourceConfig(type="hf", dataset="org/charts", split="test")), progress=False)
    assert sorted(_manifest(tmp_path)) == ["hf-q0", "hf-q1", "hf-q2"]


def test_missing_cached_dataset_says_where_and_how(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    (problem,) = _problems(SourceConfig(type="hf", dataset="org/absent"), tmp_path)
    assert problem.field == "dataset" and str(tmp_path / "empty") in problem.message
    assert "hf download org/absent --repo-type dataset" in problem.message


def test_column_map_options_and_list_answers(tmp_path: Path) -> None:
    records = [
        {
            "img": {"bytes": png(), "path": None},
            "query": "Which?",
            "label": ["blue"],
            "opts": ["red", "blue"],
        },
        {"img": {"bytes": png(), "path": None}, "query": "Which?", "label": ["a"], "opts": ["red", "blue"]},
        {"img": {"bytes": png(), "path": None}, "query": "How many?", "label": ["3", "three"], "opts": []},
    ]
    dataset(records, "img").to_parquet(str(tmp_path / "d.parquet"))
    columns = {"image": "img", "question": "query", "answer": "label", "options": "opts"}
    build(
        _config(tmp_path, SourceConfig(type="hf", path=str(tmp_path / "d.parquet"), columns=columns)), False
    )
    found = _manifest(tmp_path)
    assert found["hf-d-1"]["answer"] == "B" and found["hf-d-1"]["choices"] == ["red", "blue"]
    assert found["hf-d-2"]["answer"] == "A" and found["hf-d-2"]["answer_type"] == "choice"
    assert found["hf-d-3"]["answer"] == "3" and found["hf-d-3"]["answer_type"] == "number"
    extra = [
        c.extra
        for c in import_source(
            SourceConfig(type="hf", path=str(tmp_path / "d.parquet"), columns=columns), DataConfig()
        )
        if isinstance(c, Candidate)
    ]
    assert json.loads(extra[2]["answers"]) == ["3", "three"]


@pytest.mark.parametrize(
    ("bbox_format", "cell", "expected"),
    [
        ("xyxy", [8, 4, 40, 24], [[8, 4, 40, 24]]),
        ("xywh", [8, 4, 32, 20], [[8, 4, 40, 24]]),
        ("xyxy_norm", [0.125, 0.25, 0.625, 0.5], [[8, 12, 40, 24]]),
        ("xywh_norm", [[0.125, 0.25, 0.5, 0.25], [0, 0, 1, 1]], [[8, 12, 40, 24], [0, 0, 64, 48]]),
        ("xyxy", {"x1": [8, 1], "y1": [4, 1], "x2": [40, 2], "y2": [24, 2]}, [[8, 4, 40, 24], [1, 1, 2, 2]]),
    ],
)
def test_box_conventions_are_declared(tmp_path: Path, bbox_format: str, cell: object, expected: list) -> None:
    records = [{"image": png(), "question": "Where?", "answer": "here", "boxes": cell}]
    (tmp_path / "d.jsonl").write_text(json.dumps({**records[0], "image": "im.png"}) + "\n")
    (tmp_path / "im.png").write_bytes(png())
    source = SourceConfig(
        type="hf", path=str(tmp_path / "d.jsonl"), bbox_format=bbox_format, columns={"bbox": "boxes"}
    )
    build(_config(tmp_path, source), progress=False)
    (row,) = _manifest(tmp_path).values()
    assert [r["bbox"] for r in row["regions"]] == [[float(v) for v in box] for box in expected]


def _bad_parquet(tmp_path: Path, **change: object) -> SourceConfig:
    records = rows(2)
    records[1].update(change)
    # pyarrow writes what `to_parquet` refuses (an image path that does not exist); features kept in metadata
    pq.write_table(dataset(records).data.table, str(tmp_path / "bad.parquet"))
    return SourceConfig(type="hf", path=str(tmp_path / "bad.parquet"))


@pytest.mark.parametrize(
    ("change", "where", "fragment"),
    [
        ({"bbox": [10.0, 10.0, 90.0, 20.0]}, (2, "regions[0].bbox"), "outside the 64x48 image"),
        ({"bbox": [10.0, 10.0, 10.0, 20.0]}, (2, "regions[0].bbox"), "zero area"),
        ({"image": {"bytes": b"not an image", "path": None}}, (2, "image"), "unreadable image"),
        ({"image": {"bytes": None, "path": "gone.png"}}, (2, "image"), "image file not found"),
        ({"question": ""}, (2, "question"), "empty question"),
    ],
)
def test_bad_rows_name_file_row_field(tmp_path: Path, change: dict, where: tuple, fragment: str) -> None:
    (problem,) = _problems(_bad_parquet(tmp_path, **change), tmp_path)
    assert (problem.file, problem.line, problem.field) == (str(tmp_path / "bad.parquet"), *where)
    assert fragment in problem.message


def test_bad_sources_name_what_is_missing(tmp_path: Path) -> None:
    dataset(rows(1)).to_parquet(str(tmp_path / "d.parquet"))
    (missing,) = _problems(
        SourceConfig(type="hf", path=str(tmp_path / "d.parquet"), columns={"question": "query"}), tmp_path
    )
    assert missing.field == "<columns>" and "question (column 'query')" in missing.message
    datasets.DatasetDict({"train": dataset(rows(1))}).save_to_disk(str(tmp_path / "dd"))
    (split,) = _problems(SourceConfig(type="hf", path=str(tmp_path / "dd"), split="validation"), tmp_path)
    assert split.field == "split" and "available: ['train']" in split.message
    (nothing,) = _problems(SourceConfig(type="hf", path=str(tmp_path / "none-*.parquet")), tmp_path)
    assert nothing.field == "path"


def test_xywh_with_zero_width_is_named(tmp_path: Path) -> None:
    source = _bad_parquet(tmp_path, bbox=[10.0, 10.0, 0.0, 5.0])
    source.bbox_format = "xywh"
    found = [str(p) for p in _problems(source, tmp_path)]
    assert any(":2: bbox: box [10.0, 10.0, 0.0, 5.0] (x, y, w, h) has w or h <= 0" in f for f in found)


def test_cli_exit_2_and_skip_invalid(tmp_path: Path) -> None:
    source = _bad_parquet(tmp_path, bbox=[10.0, 10.0, 90.0, 20.0])
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "manifest.jsonl").write_text("previous\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"data:\n  path: {tmp_path / 'ds'}\n  sources:\n    - {{type: hf, path: {source.path}}}\n"
    )
    result = CliRunner().invoke(app, ["data", "build", "--config", str(recipe), "--no-progress"])
    assert result.exit_code == 2 and "bad.parquet:2: regions[0].bbox" in result.output, result.output
    assert (tmp_path / "ds" / "manifest.jsonl").read_text() == "previous\n"
    args = ["data", "build", "--config", str(recipe), "--no-progress", "--skip-invalid"]
    assert CliRunner().invoke(app, args).exit_code == 0
    rejected = (tmp_path / "ds" / "rejected.jsonl").read_text().splitlines()
    assert [json.loads(r)["line"] for r in rejected] == [2] and len(_manifest(tmp_path)) == 1


def test_config_rejects_ambiguous_sources() -> None:
    with pytest.raises(ValueError, match="exactly one of path and dataset"):
        SourceConfig(type="hf")
    with pytest.raises(ValueError, match="unknown field"):
        SourceConfig(type="hf", path="x.parquet", columns={"picture": "img"})
    with pytest.raises(ValueError, match="bbox_format"):
        SourceConfig(type="tsv", path="x.tsv", bbox_format="xyxy_norm")


def test_checks_run_in_worker_processes_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past PARALLEL_FROM items the checks run in a pool; order, ids, problems and images are unchanged."""
    from sayo.data import checking

    monkeypatch.setattr(checking, "PARALLEL_FROM", 32)
    monkeypatch.setattr(checking, "CHUNK", 8)
    records = rows(150)
    records[100]["bbox"] = [0.0, 0.0, 99.0, 10.0]  # outside the 64x48 image
    pq.write_table(dataset(records).data.table, str(tmp_path / "big.parquet"))
    source = SourceConfig(type="hf", path=str(tmp_path / "big.parquet"))
    result = build(_config(tmp_path, source), skip_invalid=True, progress=False)
    ids = [json.loads(line)["id"] for line in (tmp_path / "ds" / "manifest.jsonl").read_text().splitlines()]
    assert ids == [f"hf-q{i}" for i in range(150) if i != 100]
    assert [(p.line, p.field) for p in result.rejected] == [(101, "regions[0].bbox")]
    assert len(list((tmp_path / "ds" / "images").iterdir())) == 4  # four colours, stored once each
