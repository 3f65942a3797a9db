"""The components through `.python_func` (real sayo calls, tiny data) and the overrides they build."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("kfp")
from kfp.dsl import Dataset, Markdown, Metrics

from sayo.kubeflow.assess import flat_checkpoint_metrics
from sayo.kubeflow.steps import data_overrides, numeric_metrics, train_overrides

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        # nothing set: only the user's overrides pass through
        ({}, ["a=1"]),
        # each knob maps to its config field; max_steps follows the stage
        ({"max_steps": 5, "stage": "sft"}, ["a=1", "sft.max_steps=5"]),
        (
            {"experiment": "e", "max_steps": 7, "group_size": 4, "entropy_ratio": 0.5},
            [
                "a=1",
                "tracking.experiment=e",
                "grpo.max_steps=7",
                "grpo.group_size=4",
                "rewards.entropy_ratio=0.5",
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
    assert data_overrides(["seed=1"], [], "/out") == ["seed=1", "output=/out"]
    sources = [{"type": "jsonl", "path": "x.jsonl"}]
    assert data_overrides([], sources, "/o") == ['sources=[{"type":"jsonl","path":"x.jsonl"}]', "output=/o"]


def test_numeric_metrics_keeps_finite_numbers() -> None:
    raw = {"a": 1, "b": 0.5, "flag": True, "name": "x", "nan": float("nan"), "inf": float("inf")}
    assert numeric_metrics(raw) == {"a": 1.0, "b": 0.5}


def test_data_component_builds_a_dataset_artifact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # config paths are relative to the repository, as in the image
    from sayo.kubeflow.components import data

    dataset = Dataset(name="dataset", uri=str(tmp_path / "dataset"))
    stats, card = (
        Metrics(name="stats", uri=str(tmp_path / "stats")),
        Markdown(name="card", uri=str(tmp_path / "card")),
    )
    data.python_func(
        config="configs/data/tiny.yaml",
        overrides=["synthetic.num_samples=12"],
        sources=[],
        dataset=dataset,
        stats=stats,
        card=card,
    )
    assert (tmp_path / "dataset" / "manifest.jsonl").is_file()
    assert json.loads((tmp_path / "dataset" / "stats.json").read_text())["num_samples"] == 12
    assert stats.metadata["num_samples"] == 12.0 and dataset.metadata["num_samples"] == 12
    assert (tmp_path / "card").read_text().startswith("#")


def test_flat_checkpoint_metrics() -> None:
    nested = {
        "grpo": {"synthetic": {"accuracy": 0.5, "format_rate": 1, "region_attention": None}},
        "base": {"synthetic": {"accuracy": float("nan"), "note": "x"}},  # NaN and text are dropped
    }
    assert flat_checkpoint_metrics(nested) == {
        "grpo/synthetic/accuracy": 0.5,
        "grpo/synthetic/format_rate": 1.0,
    }
