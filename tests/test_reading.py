"""The reading check (`sayo.train.reading`): does a policy answer by looking, and which link fails."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import build_tiny_dataset, train_recipe

import sayo.train.reading as reading
from sayo.data.dataset import GroundedDataset
from sayo.models import load_policy
from sayo.train.diagnose import diagnose, report_lines
from sayo.train.reading import ReadingReport, probe_accuracy, reading_check


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_dataset(tmp_path_factory.mktemp("reading") / "data", 48)


def test_probe_finds_a_label_the_features_carry_and_not_one_they_do_not():
    gen = torch.Generator().manual_seed(0)
    labels = [f"c{i % 6}" for i in range(240)]
    codes = torch.randn(6, 16, generator=gen, dtype=torch.float64)
    carried = torch.stack([codes[int(label[1:])] for label in labels]) + 0.1 * torch.randn(
        240, 16, generator=gen, dtype=torch.float64
    )
    accuracy, guess = probe_accuracy(carried, labels)
    assert accuracy == 1.0 and guess == pytest.approx(1 / 6, abs=0.1)
    noise = torch.randn(240, 16, generator=gen, dtype=torch.float64)
    accuracy, _ = probe_accuracy(noise, labels)
    assert accuracy < 0.4  # 1/6 expected
    with pytest.raises(ValueError, match="too few"):
        probe_accuracy(noise[:3], labels[:3])


def _oracle(shift: int):
    """completion_logits that put all mass on the reference token `shift` positions later."""

    def logits(model, prompts, ids, mask, temperature=1.0):
        target = torch.roll(ids, -shift, dims=1)
        return torch.nn.functional.one_hot(target, model.config.text_config.vocab_size).double() * 50

    return logits


def test_teacher_forced_accuracy_reads_the_answer_step(tmp_path, dataset, monkeypatch):
    recipe = train_recipe(tmp_path, dataset)
    model, processor = load_policy("tiny", dtype="float32", device=torch.device("cpu"))
    samples, images = GroundedDataset.load(dataset, "train").batch(list(range(16)))
    monkeypatch.setattr(reading, "completion_logits", _oracle(0))
    report = reading_check(model, processor, recipe, samples, images, batch_size=8)
    assert report is not None and report.samples == 16 and report.accuracy == 1.0 and report.reads
    monkeypatch.setattr(reading, "completion_logits", _oracle(1))  # one position off: wrong tokens
    assert reading_check(model, processor, recipe, samples, images, batch_size=8).accuracy < 0.5


def test_diagnose_reports_whether_the_policy_reads(tmp_path, dataset):
    recipe = train_recipe(tmp_path, dataset)
    report = diagnose(recipe, "tiny", prompts=4, group_size=2, reading_samples=24)
    read = report.reading
    assert isinstance(read, ReadingReport) and read.samples == 24
    for value in (read.accuracy, read.guess, read.probe, read.probe_guess, read.share, read.uniform):
        assert 0.0 <= value <= 1.0
    assert 0.0 < read.uniform < 1.0
    assert read.mass <= read.share + 1e-6  # of all attention <= of the image attention
    assert not read.reads  # an untrained policy answers at chance
    assert any("does not answer by looking" in w for w in report.warnings)
    assert report.as_dict()["signal/reading/accuracy"] == read.accuracy
    assert any(line.startswith("does it read?") for line in report_lines(report))
    assert diagnose(recipe, "tiny", prompts=2, group_size=2, reading_samples=0).reading is None


def test_the_warning_names_the_failing_link():
    base = dict(samples=64, guess=0.15, probe_guess=0.15, uniform=0.02, mass=0.01)
    readout = ReadingReport(accuracy=0.12, probe=0.9, share=0.3, **base).warning()
    assert readout is not None and "read-out" in readout
    features = ReadingReport(accuracy=0.12, probe=0.16, share=0.3, **base).warning()
    assert features is not None and "do not carry" in features
    looking = ReadingReport(accuracy=0.12, probe=0.9, share=0.02, **base).warning()
    assert looking is not None and "does not look" in looking
    assert ReadingReport(accuracy=0.6, probe=0.9, share=0.3, **base).warning() is None
