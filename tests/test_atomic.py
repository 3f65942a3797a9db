"""Atomic writes never leave half a file or directory behind."""

from __future__ import annotations

import json
import math

import pytest

from sayo.atomic import swap_into_place, write_json, write_jsonl, write_text, write_with


def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path):
    target = write_text(tmp_path / "a.txt", "old")

    def half(stream):
        stream.write("new, half of it")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_with(target, half)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_json_helpers_round_trip_and_refuse_nan(tmp_path):
    assert json.loads(write_json(tmp_path / "m.json", {"a": 1}).read_text()) == {"a": 1}
    rows = [{"i": 0}, {"i": 1}]
    assert [json.loads(x) for x in write_jsonl(tmp_path / "r.jsonl", rows).read_text().splitlines()] == rows
    with pytest.raises(ValueError):
        write_json(tmp_path / "bad.json", {"x": math.nan})
    assert not (tmp_path / "bad.json").exists()


def test_swap_into_place_replaces_a_directory(tmp_path):
    out, staging = tmp_path / "out", tmp_path / ".staging"
    out.mkdir()
    (out / "old").write_text("1")
    staging.mkdir()
    (staging / "new").write_text("2")
    swap_into_place(staging, out)
    assert [p.name for p in out.iterdir()] == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the retired copy is gone
