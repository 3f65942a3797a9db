"""The components through `.python_func` (real sayo calls, tiny data) and the overrides they build."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("kfp")
from kfp.dsl import Dataset, Markdown, Metrics

from sayo.config import finite_numbers, flatten
from sayo.kubeflow.steps import data_overrides, train_overrides

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        # nothing set: only the user's overrides pass through
        ({}, ["a=1"]),
        # each knob maps to its config field; max_steps follows the stage
        ({"max_steps": 5, "stage": "sft"}, ["a=1", "sft.max_steps=5"]),
        (
            {"experiment": "e", "max_steps": 7, "group_size": 4, "attention_ratio": 0.5},
            [
                "a=1",
                "tracking.experiment=e",
                "grpo.max_steps=7",
                "grpo.group_size=4",
                "rewards.attention.ratio=0.5",
            ],
        ),
        # a dict becomes a YAML (JSON) mapping literal
        (
            {"reward_weights": {"accuracy": 1.0, "format": 0.0}},
            ["a=1", 'rewards.weights={"accuracy":1.0,"format":0.0}'],
        ),
    ],
)
def test_train_overrides(kwargs: dict[str, Any], expected: list[str]) -> None:
    assert train_overrides(["a=1"], **kwargs) == expected


def test_data_overrides() -> None:
    assert data_overrides(["seed=1"], [], "/out") == ["seed=1", "data.path=/out"]
    sources = [{"type": "jsonl", "path": "x.jsonl"}]
    assert data_overrides([], sources, "/o") == [
        'data.sources=[{"type":"jsonl","path":"x.jsonl"}]',
        "data.path=/o",
    ]


def test_finite_numbers_keeps_finite_numbers() -> None:
    raw = {"a": 1, "b": 0.5, "flag": True, "name": "x", "nan": float("nan"), "inf": float("inf")}
    assert finite_numbers(raw) == {"a": 1.0, "b": 0.5}


def test_data_component_builds_a_dataset_artifact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a built-in recipe name works from any directory
    from sayo.kubeflow.components import data

    dataset = Dataset(name="dataset", uri=str(tmp_path / "dataset"))
    stats, card = (
        Metrics(name="stats", uri=str(tmp_path / "stats")),
        Markdown(name="card", uri=str(tmp_path / "card")),
    )
    data.python_func(
        config="tiny",
        overrides=["data.synthetic.num_samples=12"],
        sources=[],
        dataset=dataset,
        stats=stats,
        card=card,
    )
    assert (tmp_path / "dataset" / "manifest.jsonl").is_file()
    assert json.loads((tmp_path / "dataset" / "stats.json").read_text())["num_samples"] == 12
    assert stats.metadata["num_samples"] == 12.0 and dataset.metadata["num_samples"] == 12
    assert (tmp_path / "card").read_text().startswith("#")


def test_checkpoint_metrics_flatten_to_finite_numbers() -> None:
    nested = {
        "grpo": {"synthetic": {"accuracy": 0.5, "format_rate": 1, "region_attention": None}},
        "base": {"synthetic": {"accuracy": float("nan"), "note": "x"}},  # NaN and text are dropped
    }
    assert finite_numbers(flatten(nested, sep="/")) == {
        "grpo/synthetic/accuracy": 0.5,
        "grpo/synthetic/format_rate": 1.0,
    }
