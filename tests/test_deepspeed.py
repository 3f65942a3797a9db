"""DeepSpeed: config filling/validation (no import needed), then ZeRO-2/3 runs in one process.

The runtime tests use DeepSpeed's CPU accelerator with the gloo backend (one rank), or CUDA with
nccl where a GPU is present, and check that a ZeRO engine takes the very same steps as the plain
engine (same AdamW, schedule and clipping), so the two paths cannot drift apart.
"""

from __future__ import annotations

import copy
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import build_tiny_dataset

from sayo.models.config import LoraConfig
from sayo.train.config import OptimConfig
from sayo.train.engine import build_engine
from sayo.train.launch import load_deepspeed_config

CONFIGS = Path(__file__).resolve().parents[1] / "sayo" / "recipes" / "deepspeed"
OPTIM = OptimConfig(lr=1e-3, warmup_steps=1, schedule="linear", max_grad_norm=1.0)


def load(settings: dict | str, tmp_path: Path, dtype: torch.dtype = torch.float32) -> dict:
    path = tmp_path / "ds.json"
    path.write_text(settings if isinstance(settings, str) else json.dumps(settings))
    return load_deepspeed_config(path, OPTIM, micro_batch_size=4, grad_accum=2, dtype=dtype)


@pytest.mark.parametrize("stage", [2, 3])
@pytest.mark.parametrize(("dtype", "bf16"), [(torch.float32, False), (torch.bfloat16, True)])
def test_shipped_configs_are_filled(stage: int, dtype: torch.dtype, bf16: bool) -> None:
    settings = load_deepspeed_config(
        CONFIGS / f"zero{stage}.json", OPTIM, micro_batch_size=4, grad_accum=2, dtype=dtype
    )
    assert settings["train_micro_batch_size_per_gpu"] == 4
    assert settings["gradient_accumulation_steps"] == 2
    assert settings["gradient_clipping"] == 1.0
    assert settings["bf16"]["enabled"] is bf16  # follows the model's dtype
    assert settings["zero_optimization"]["stage"] == stage
    assert "optimizer" not in settings and "scheduler" not in settings
    if stage == 3:
        assert settings["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ("{not json", "not valid JSON"),  # syntax error
        ({"zero_optimization": {"stage": 4}}, r"zero_optimization.stage = 4"),  # unknown stage
        ({"zero_optimization": {"stage": "2"}}, r"zero_optimization.stage = '2'"),  # a string is not a stage
        ({"optimizer": {"type": "AdamW"}}, "remove the 'optimizer' section"),  # we pass our own AdamW
        ({"scheduler": {"type": "WarmupLR"}}, "remove the 'scheduler' section"),  # and our own schedule
        (
            {"gradient_accumulation_steps": 8},
            r"gradient_accumulation_steps = 8 conflicts .* 2",
        ),  # vs grad_accum
        ({"gradient_clipping": 0.5}, "gradient_clipping = 0.5 conflicts"),  # vs optim.max_grad_norm
        (
            {"zero_optimization": {"stage": 3, "stage3_prefetch_bucket_size": "auto"}},
            r"zero_optimization.stage3_prefetch_bucket_size = \"auto\"",  # an auto we do not fill
        ),
    ],
)
def test_invalid_configs_name_the_field(settings: dict | str, match: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=match) as err:
        load(settings, tmp_path)
    assert str(tmp_path / "ds.json") in str(err.value)  # the file is named too


def test_explicit_equal_values_and_train_batch_size_auto(tmp_path: Path) -> None:
    settings = load({"train_micro_batch_size_per_gpu": 4, "train_batch_size": "auto"}, tmp_path)
    assert settings["train_micro_batch_size_per_gpu"] == 4 and "train_batch_size" not in settings


def test_missing_file_is_a_value_error_before_deepspeed_is_needed(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"deepspeed.config .*nope.json: file does not exist"):
        build_engine(torch.nn.Linear(2, 2), OPTIM, 10, deepspeed_config=str(tmp_path / "nope.json"))


@pytest.fixture(scope="module")
def dist() -> Iterator[str]:
    """A one-rank process group (gloo on CPU, nccl on GPU) for DeepSpeed; yields the device."""
    cuda = torch.cuda.is_available()
    if not cuda:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # before DeepSpeed picks its accelerator
    pytest.importorskip("deepspeed")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "WORLD_SIZE": "1"}
    mp = pytest.MonkeyPatch()
    for key, value in {**env, "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"}.items():
        mp.setenv(key, value)
    started = not torch.distributed.is_initialized()
    if started:
        torch.distributed.init_process_group("nccl" if cuda else "gloo", rank=0, world_size=1)
    yield "cuda" if cuda else "cpu"
    if started:
        torch.distributed.destroy_process_group()
    mp.undo()


IDS = torch.tensor([[5, 17, 42, 99, 7, 3], [8, 9, 10, 11, 12, 13]])  # [2, 6] two micro-batches of 1


def train(engine, steps: int, device: str) -> list[float]:
    """`steps` updates of 2 accumulated micro-batches; returns the first micro-batch's loss per step."""
    losses = []
    for _ in range(steps):
        for row in IDS.to(device):
            loss = engine.model(input_ids=row[None], labels=row[None]).loss
            engine.backward(loss / 2)
            losses.append(float(loss.detach()))
        assert engine.step() > 0
    return losses[::2]


@pytest.mark.slow
@pytest.mark.equivalence
@pytest.mark.parametrize("stage", [2, 3])
def test_zero_matches_plain_engine(tiny, dist: str, stage: int) -> None:
    plain = build_engine(copy.deepcopy(tiny[0]).train().to(dist), OPTIM, max_steps=4, grad_accum=2)
    expected = train(plain, 3, dist)
    model = copy.deepcopy(tiny[0]).train().to(dist)
    engine = build_engine(
        model, OPTIM, max_steps=4, deepspeed_config=str(CONFIGS / f"zero{stage}.json"), grad_accum=2
    )
    assert engine.unwrap() is model
    losses = train(engine, 3, dist)
    assert losses[-1] < losses[0]  # it learns
    assert losses == pytest.approx(expected, rel=1e-4)  # and takes the plain engine's steps
    assert engine.lr == pytest.approx(plain.lr)
    with engine.generation_context():
        out = engine.unwrap().generate(input_ids=IDS[:1].to(dist), max_new_tokens=2, do_sample=False)
    assert out.shape == (1, 8)
    state = engine.full_state_dict()  # ZeRO-3: gathered from the shards
    assert state is not None and state.keys() == plain.model.state_dict().keys()
    # Adam moves each weight by up to lr per step whatever the gradient's size, so float noise on a
    # gradient near 0 (ZeRO's flattened buffers sum in another order) shows as a fraction of lr:
    # the tolerance is a tenth of one step, not a fixed number
    step = OPTIM.lr
    for name, value in plain.model.state_dict().items():
        torch.testing.assert_close(state[name].cpu(), value.cpu(), rtol=1e-4, atol=0.1 * step, msg=name)
    start = tiny[0].state_dict()
    assert any(
        not torch.allclose(state[name].cpu(), start[name], atol=0.1 * step) for name in start
    )  # trained


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_zero_save_and_load_state(tiny, dist: str, stage: int, tmp_path: Path) -> None:
    model = copy.deepcopy(tiny[0]).train().to(dist)
    engine = build_engine(
        model, OPTIM, max_steps=4, deepspeed_config=str(CONFIGS / f"zero{stage}.json"), grad_accum=2
    )
    train(engine, 2, dist)
    engine.save_state(tmp_path)
    after_save = train(engine, 2, dist)
    engine.load_state(tmp_path)  # weights, Adam moments and the schedule position come back
    assert train(engine, 2, dist) == pytest.approx(after_save, rel=1e-6)


@pytest.mark.slow
def test_zero2_with_lora_and_wrong_accumulation(tiny, dist: str) -> None:
    pytest.importorskip("peft")
    from sayo.train.lora import apply_lora, reference_policy

    model = apply_lora(copy.deepcopy(tiny[0]).to(dist), LoraConfig(dropout=0.0)).train()
    engine = build_engine(
        model, OPTIM, max_steps=4, deepspeed_config=str(CONFIGS / "zero2.json"), grad_accum=2
    )
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train(engine, 3, dist)  # lr 0, then B moves (A's grad is 0 while B = 0), then A moves too
    for name, param in model.named_parameters():  # adapters moved, base frozen
        assert torch.equal(param, before[name]) is (not param.requires_grad), name
    with torch.no_grad(), reference_policy(engine.unwrap()) as ref:
        assert ref(input_ids=IDS[:1].to(dist)).logits.isfinite().all()
    engine.backward(engine.model(input_ids=IDS[:1].to(dist), labels=IDS[:1].to(dist)).loss)
    with pytest.raises(RuntimeError, match="after 1 backward"):
        engine.step()


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_grpo_trainer_runs_under_zero(dist: str, stage: int, tmp_path: Path) -> None:
    """The GRPO stage itself, not only the engine, trains under DeepSpeed ZeRO-2/3 (gloo, one rank);
    its checkpoints hold the whole weights (gathered under ZeRO-3) and load like any model."""
    from sayo.recipe import load_recipe
    from sayo.train.grpo import train_grpo

    data = tmp_path / "data"
    build_tiny_dataset(data, 32)

    def config(out: str, *extra: str):
        return load_recipe(
            "tiny",
            [
                f"data.path={data}",
                f"checkpoint.dir={tmp_path / out}",
                "tracking.enabled=false",
                f"device={dist}",
                "grpo.init_from=model",
                "grpo.max_steps=2",
                "grpo.prompts_per_step=2",
                "grpo.group_size=4",
                "grpo.micro_batch_size=4",
                "grpo.max_new_tokens=8",
                "grpo.probe_every=0",
                "checkpoint.every=1",
                "checkpoint.keep_last=0",
                f"deepspeed.config=zero{stage}",
                *extra,
            ],
        )

    result = train_grpo(config("ckpt"))
    assert result.metrics["grad_norm"] > 0 and (result.final_dir / "config.json").exists()
    step2 = tmp_path / "ckpt" / "grpo" / "step-00000002"
    assert step2.is_dir()
    from sayo.models import load_policy

    start, _ = load_policy("tiny", device="cpu")
    final, _ = load_policy(result.final_dir, device="cpu")
    saved, _ = load_policy(step2, device="cpu")
    trained = final.state_dict()
    assert all(t.numel() > 0 for t in trained.values())  # not ZeRO-3's empty partition placeholders
    for name, value in saved.state_dict().items():
        torch.testing.assert_close(value, trained[name])
    assert any(not torch.equal(v, trained[k]) for k, v in start.state_dict().items())  # it trained

    train_grpo(config("resumed", "grpo.max_steps=1"))  # then resume it for step 2 (ZeRO-3: weights
    resumed = train_grpo(config("resumed", "checkpoint.resume=true"))  # from DeepSpeed's checkpoint)
    # DeepSpeed's bucketed gradient reduction may sum in another order between runs, and Adam's
    # first step turns such float noise on near-zero gradients into ±lr moves: close, not bitwise
    # (a resume that lost the weights or optimizer state is off by far more, tested by mutation)
    for key in ("loss", "kl", "grad_norm", "reward/total_mean"):
        assert resumed.metrics[key] == pytest.approx(result.metrics[key], rel=0.05, abs=1e-6), key
