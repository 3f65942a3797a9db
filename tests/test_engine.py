"""The plain engine: schedules by hand, AdamW groups, one step moves only trainable weights."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from sayo.train.config import OptimConfig
from sayo.train.engine import Engine, PlainEngine, build_engine, lr_lambda, param_groups


@pytest.mark.parametrize(
    ("schedule", "warmup", "max_steps", "step", "expected"),
    [
        ("constant", 4, 10, 0, 0.0),  # warm-up starts at 0
        ("constant", 4, 10, 1, 0.25),  # linear warm-up: 1/4
        ("constant", 4, 10, 4, 1.0),  # warm-up done
        ("constant", 4, 10, 50, 1.0),  # constant stays 1
        ("linear", 0, 10, 0, 1.0),  # no warm-up: starts at 1
        ("linear", 0, 10, 5, 0.5),  # half-way down
        ("linear", 2, 10, 10, 0.0),  # linear end = 0
        ("linear", 2, 10, 12, 0.0),  # past the end stays 0
        ("cosine", 2, 10, 2, 1.0),  # decay starts at 1 after warm-up
        ("cosine", 2, 10, 6, 0.5),  # cosine midpoint (2 + 8/2) = 0.5
        ("cosine", 0, 8, 2, 0.5 * (1 + math.cos(math.pi / 4))),  # quarter way
        ("cosine", 2, 10, 10, 0.0),  # cosine end = 0
    ],
)
def test_lr_lambda_values(schedule: str, warmup: int, max_steps: int, step: int, expected: float) -> None:
    assert lr_lambda(schedule, warmup, max_steps)(step) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("schedule", "warmup", "max_steps", "match"),
    [
        ("exp", 0, 10, "optim.schedule"),  # unknown schedule names the field
        ("cosine", -1, 10, "warmup_steps"),  # negative warm-up
        ("cosine", 0, 0, "max_steps"),  # no steps
    ],
)
def test_lr_lambda_rejects(schedule: str, warmup: int, max_steps: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        lr_lambda(schedule, warmup, max_steps)


class Toy(nn.Module):
    """A linear layer, a norm and a frozen embedding: one of each parameter kind."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(5, 4)
        self.embed.weight.requires_grad_(False)
        self.proj = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(self.embed(ids)))  # [B, S, 4]


def test_param_groups_split_decay_and_skip_frozen() -> None:
    model = Toy()
    groups = param_groups(model, weight_decay=0.1)
    decay, no_decay = groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert [p is model.proj.weight for p in decay["params"]] == [True]
    assert {id(p) for p in no_decay["params"]} == {
        id(model.proj.bias),
        id(model.norm.weight),
        id(model.norm.bias),
    }


def test_param_groups_no_trainable_is_an_error() -> None:
    model = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        param_groups(model, 0.0)


def test_build_engine_optimizer_and_schedule() -> None:
    engine = build_engine(
        Toy(), OptimConfig(lr=1e-2, weight_decay=0.1, warmup_steps=2, schedule="linear"), 10
    )
    assert isinstance(engine, PlainEngine) and isinstance(engine, Engine)
    assert isinstance(engine.optimizer, torch.optim.AdamW)
    assert [g["weight_decay"] for g in engine.optimizer.param_groups] == [0.1, 0.0]
    assert engine.lr == 0.0  # warm-up starts at 0
    assert engine.unwrap() is engine.model
    with engine.generation_context():
        pass


def test_step_moves_trainable_params_only() -> None:
    model = Toy()
    engine = build_engine(model, OptimConfig(lr=1e-2, warmup_steps=0, max_grad_norm=1e6), max_steps=10)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    loss = model(torch.tensor([[0, 1, 2]])).pow(2).sum()
    engine.backward(loss)
    expected_norm = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]).norm()
    norm = engine.step()
    assert norm == pytest.approx(float(expected_norm), rel=1e-6)
    assert torch.equal(model.embed.weight, before["embed.weight"])  # frozen: untouched
    for name in ("proj.weight", "proj.bias", "norm.weight"):
        assert not torch.equal(dict(model.named_parameters())[name], before[name]), name
    assert all(p.grad is None for p in model.parameters())  # step zeroes the grads
    assert engine.lr == pytest.approx(1e-2 * 0.5 * (1 + math.cos(math.pi / 10)))  # cosine after one step


def test_step_clips_to_max_grad_norm() -> None:
    model = Toy()
    engine = build_engine(model, OptimConfig(lr=1.0, warmup_steps=0, max_grad_norm=1e-3), max_steps=10)
    engine.backward(model(torch.tensor([[0, 1]])).pow(2).sum() * 1e3)
    grads: list[torch.Tensor] = []
    engine.optimizer.register_step_pre_hook(
        lambda opt, *_: grads.extend(p.grad.clone() for g in opt.param_groups for p in g["params"])
    )
    norm = engine.step()
    assert norm > 1.0  # the returned norm is the pre-clip one
    assert float(torch.cat([g.flatten() for g in grads]).norm()) == pytest.approx(1e-3, rel=1e-4)


def test_save_and_load_state_resume_exactly(tmp_path) -> None:
    optim = OptimConfig(lr=1e-2, warmup_steps=1, schedule="cosine")
    ids = torch.tensor([[0, 1, 2]])
    model = Toy()
    engine = build_engine(model, optim, max_steps=5)
    for _ in range(2):
        engine.backward(model(ids).pow(2).sum())
        engine.step()
    engine.save_state(tmp_path / "ckpt")
    resumed_model = copy.deepcopy(model)
    resumed = build_engine(resumed_model, optim, max_steps=5)
    resumed.load_state(tmp_path / "ckpt")
    assert resumed.lr == engine.lr  # the schedule position comes back
    for net, eng in ((model, engine), (resumed_model, resumed)):
        eng.backward(net(ids).pow(2).sum())
        eng.step()
    for a, b in zip(model.parameters(), resumed_model.parameters(), strict=True):
        assert torch.equal(a, b)  # same Adam moments, same step count: the very same update
    assert engine.full_state_dict().keys() == model.state_dict().keys()
