"""Checkpoints: exact resume (weights, optimizer, scheduler, RNGs), atomicity, pruning, final export."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_equivalent

from sayo.models import build_tiny, load_policy
from sayo.recipe import Recipe
from sayo.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint, save_final


def make_run(lr: float = 1e-3):
    """A fresh tiny model with AdamW and a warm-up LambdaLR, as the trainers build them."""
    model, processor = build_tiny()
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 4))
    return model, processor, optimizer, scheduler


def train_steps(model, optimizer, scheduler, n: int) -> list[float]:
    """`n` optimizer steps on random text batches drawn from all three RNGs (python, numpy, torch)."""
    losses = []
    for _ in range(n):
        length = 6 + random.randrange(4)
        ids = torch.randint(20, 600, (2, length))  # [B, S], clear of the special tokens (ids < 14)
        weight = 0.5 + float(np.random.rand())
        loss = model(input_ids=ids, labels=ids).loss * weight
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def save(stage: Path, step: int, model, processor, optimizer, scheduler, keep_last: int = 0) -> Path:
    state = {"step": step, "samples_seen": 2 * step, "data": {"epoch": 0, "position": step}}
    return save_checkpoint(
        stage,
        step,
        model=model,
        processor=processor,
        optimizer=optimizer,
        scheduler=scheduler,
        trainer_state=state,
        config=Recipe(),
        keep_last=keep_last,
    )


def clone_state(module_or_opt) -> dict:
    return {k: v.clone() if torch.is_tensor(v) else v for k, v in module_or_opt.state_dict().items()}


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def test_load_restores_weights_optimizer_scheduler_and_rngs(tmp_path: Path) -> None:
    seed_all(1)
    model, processor, optimizer, scheduler = make_run()
    train_steps(model, optimizer, scheduler, 1)
    path = save(tmp_path, 1, model, processor, optimizer, scheduler)
    weights, sched_state = clone_state(model), scheduler.state_dict()
    opt_state = copy.deepcopy(optimizer.state_dict()["state"])  # the live dict holds in-place-updated tensors
    expected = (torch.rand(3), random.random(), np.random.rand())

    train_steps(model, optimizer, scheduler, 2)  # perturbs weights, optimizer moments, schedule and RNGs
    seed_all(99)
    state = load_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler)

    assert state == {"step": 1, "samples_seen": 2, "data": {"epoch": 0, "position": 1}}
    assert_same_tensors(clone_state(model), weights)
    restored = optimizer.state_dict()["state"]
    for index, moments in opt_state.items():
        assert_same_tensors(restored[index], moments)
    assert scheduler.state_dict() == sched_state
    assert torch.equal(torch.rand(3), expected[0])
    assert random.random() == expected[1]
    assert np.random.rand() == expected[2]


def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path: Path) -> None:
    seed_all(0)
    model, processor, optimizer, scheduler = make_run()
    train_steps(model, optimizer, scheduler, 3)
    path = save(tmp_path, 3, model, processor, optimizer, scheduler)
    straight = train_steps(model, optimizer, scheduler, 2)

    seed_all(123)  # a new process: other RNG states, fresh weights and optimizer
    model2, _, optimizer2, scheduler2 = make_run()
    load_checkpoint(path, model=model2, optimizer=optimizer2, scheduler=scheduler2)
    resumed = train_steps(model2, optimizer2, scheduler2, 2)

    assert resumed == straight  # exact float equality: the exact-resume contract
    assert_same_tensors(clone_state(model2), clone_state(model))
    assert optimizer2.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]


@pytest.mark.parametrize(
    ("keep_last", "left"),
    [
        (2, [3, 4]),  # only the newest two survive
        (0, [1, 2, 3, 4]),  # 0 keeps everything
    ],
)
def test_keep_last_prunes_older_step_checkpoints(tmp_path: Path, keep_last: int, left: list[int]) -> None:
    model, processor, optimizer, scheduler = make_run()
    for step in range(1, 5):
        save(tmp_path, step, model, processor, optimizer, scheduler, keep_last=keep_last)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"step-{s:08d}" for s in left]
    assert latest_checkpoint(tmp_path) == tmp_path / f"step-{left[-1]:08d}"


@pytest.mark.parametrize("broken", ["save_pretrained", "torch.save"])
def test_crash_during_save_keeps_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, broken: str
) -> None:
    model, processor, optimizer, scheduler = make_run()
    first = save(tmp_path, 1, model, processor, optimizer, scheduler, keep_last=1)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    if broken == "save_pretrained":
        monkeypatch.setattr(model, "save_pretrained", boom)
    else:
        monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        save(tmp_path, 2, model, processor, optimizer, scheduler, keep_last=1)

    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no step-2, no temp dir
    assert latest_checkpoint(tmp_path) == first
    assert (first / "model.safetensors").exists()


def test_latest_checkpoint_ignores_incomplete_and_temp_dirs(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path / "missing") is None
    assert latest_checkpoint(tmp_path) is None
    model, processor, optimizer, scheduler = make_run()
    done = save(tmp_path, 5, model, processor, optimizer, scheduler)
    (tmp_path / "step-00000009").mkdir()  # a copy interrupted by hand: no COMPLETE marker
    (tmp_path / ".step-00000010.tmp").mkdir()  # a crashed save's temp dir
    (tmp_path / "step-00000011.txt").write_text("")  # not a directory
    assert latest_checkpoint(tmp_path) == done


def test_trainer_state_must_be_json(tmp_path: Path) -> None:
    model, processor, optimizer, scheduler = make_run()
    with pytest.raises(TypeError, match=r"trainer_state\['metrics'\]\['loss'\] \(a Tensor\)"):
        save_checkpoint(
            tmp_path,
            1,
            model=model,
            processor=processor,
            optimizer=optimizer,
            scheduler=scheduler,
            trainer_state={"step": 1, "metrics": {"loss": torch.tensor(1.0)}},
            config=Recipe(),
            keep_last=0,
        )
    assert list(tmp_path.iterdir()) == []


def test_engine_hook_replaces_optimizer_file(tmp_path: Path) -> None:
    model, processor, _, scheduler = make_run()  # the engine owns the optimizer state
    seen: list[str] = []
    path = save_checkpoint(
        tmp_path,
        1,
        model=model,
        processor=processor,
        optimizer=None,
        scheduler=scheduler,
        trainer_state={"step": 1},
        config=Recipe(),
        keep_last=0,
        engine_save=lambda d: (d / "zero").mkdir(),
    )
    assert (path / "zero").is_dir() and not (path / "optimizer.pt").exists()
    load_checkpoint(
        path, model=model, optimizer=None, scheduler=scheduler, engine_load=lambda d: seen.append(d.name)
    )
    assert seen == [path.name]


def test_save_final_loads_with_load_policy(tmp_path: Path) -> None:
    model, processor, optimizer, scheduler = make_run()
    train_steps(model, optimizer, scheduler, 1)
    final = save_final(tmp_path, model=model, processor=processor, config=Recipe())
    assert final == tmp_path / "final" and (final / "config.yaml").exists() and (final / "COMPLETE").exists()
    loaded, loaded_processor = load_policy(final, device="cpu")
    assert_same_tensors(clone_state(loaded), clone_state(model))
    assert loaded_processor.tokenizer.get_vocab() == processor.tokenizer.get_vocab()
    save_final(tmp_path, model=model, processor=processor, config=Recipe())  # overwrites in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]


@pytest.mark.equivalence
def test_lora_adapters_round_trip_and_merge_on_final(tmp_path: Path) -> None:
    peft = pytest.importorskip("peft")
    seed_all(0)
    base, processor = build_tiny()
    model = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    model.train()
    train_steps(model, optimizer, scheduler, 2)  # makes lora_B non-zero, so merging matters
    path = save(tmp_path / "sft", 2, model, processor, optimizer, scheduler)
    assert (path / "adapter_model.safetensors").exists() and not (path / "model.safetensors").exists()
    adapters = clone_state(model)

    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.add_(1.0)
    load_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler)
    assert_same_tensors(clone_state(model), adapters)

    final = save_final(tmp_path / "sft", model=model, processor=processor, config=Recipe())
    assert hasattr(model, "peft_config") and any("lora_" in n for n, _ in model.named_parameters())
    merged, _ = load_policy(final, device="cpu")
    ids = torch.randint(20, 600, (2, 9))
    model.eval()
    with torch.no_grad():
        expected = model(input_ids=ids).logits
        got = merged(input_ids=ids).logits
        with model.disable_adapter():
            without = model(input_ids=ids).logits
    # float32 weights merged as W + s·BA (rounded once) vs W x + s·B(A x): float rounding only
    assert_equivalent(got, expected, rel=1e-5)
    assert (got - without).abs().max() > 1e-3 * expected.abs().max()  # the adapters were merged in
