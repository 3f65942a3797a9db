"""The README's demo runs end to end on the embedded defaults and its rewards mean what they say."""

from __future__ import annotations

import json

from PIL import Image
from typer.testing import CliRunner

from sayo.cli import app
from sayo.demo import KINDS, DemoConfig, run_demo


def test_demo_scores_every_kind_of_completion(tmp_path):
    records = run_demo(DemoConfig(num_samples=3, out_dir=tmp_path))
    assert len(records) == 3 * len(KINDS)
    by_kind = {kind: [r for r in records if r["kind"] == kind] for kind in KINDS}
    assert all(r["accuracy"] == 1 and r["format"] == 1 for r in by_kind["reference"])
    assert all(r["accuracy"] == 0 and r["format"] == 1 for r in by_kind["wrong"])
    assert all(r["format"] == 0 for r in by_kind["unformatted"])
    assert all(0 <= r["region_attention"] <= 1 for r in records)
    for start in range(0, len(records), len(KINDS)):  # advantages are centred within each group
        assert abs(sum(r["advantage"] for r in records[start : start + len(KINDS)])) < 1e-3
    lines = (tmp_path / "scores.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == records
    with Image.open(tmp_path / "heatmaps.png") as picture:
        assert picture.width > 200 and picture.height > 100


def test_cli_demo_and_tiny(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--num-samples", "1"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "demo" / "heatmaps.png").exists()
    result = runner.invoke(app, ["model", "tiny", "--out", str(tmp_path / "tiny")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "tiny" / "model.safetensors").exists()
