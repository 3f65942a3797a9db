"""The SFT and GRPO stages on the tiny defaults: they learn, resume exactly, and fail loudly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_equivalent, assert_same_metrics, build_tiny_dataset, train_recipe

from sayo.recipe import Recipe, load_recipe
from sayo.runtime import NonFiniteError
from sayo.train.grpo import train_grpo
from sayo.train.sft import train_sft

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 96-sample synthetic dataset built by the real `data` stage."""
    return build_tiny_dataset(tmp_path_factory.mktemp("data") / "processed", 96)


def _config(tmp_path: Path, dataset: Path, *overrides: str) -> Recipe:
    return train_recipe(tmp_path, dataset, *overrides)


def test_sft_lowers_the_loss_and_saves_a_loadable_policy(tmp_path, tiny_dataset):
    from sayo.models import load_policy

    result = train_sft(
        _config(tmp_path, tiny_dataset, "sft.max_steps=25", "sft.log_every=1", "checkpoint.every=0")
    )
    assert result.metrics["loss"] < 3.0  # from ~6.6 (uniform over the vocabulary) at step 1
    model, _ = load_policy(result.final_dir, device="cpu")
    assert model.config.model_type == "qwen2_5_vl"


def test_grpo_step_reports_every_reward_part(tmp_path, tiny_dataset):
    result = train_grpo(_config(tmp_path, tiny_dataset, "grpo.max_steps=2", "checkpoint.every=0"))
    metrics = result.metrics
    for key in (
        "reward/accuracy",
        "reward/format",
        "reward/region_attention",
        "reward/total_mean",
        "reward/total_std",
        "kl",
        "entropy_mean",
        "clip_fraction",
        "response_length_mean",
        "truncation_rate",
        "groups_zero_std",
        "tokens_per_s",
        "step_time_s",
        "advantage_std",
    ):
        assert key in metrics, key
    assert 0 < metrics["reward/region_attention"] <= 1  # captured attention reached the reward
    assert (result.final_dir / "config.yaml").exists()


class _Crash(RuntimeError):
    pass


def test_grpo_resume_after_a_crash_equals_the_uninterrupted_run(tmp_path, tiny_dataset, monkeypatch, capsys):
    """Killed during step 4 (checkpoint at 2, steps 1-3 logged), resumed: the same steps as an
    uninterrupted run, logged into one MLflow run whose history is steps 1..4 with the same values."""
    from mlflow import MlflowClient

    import sayo.train.grpo as grpo_module

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    steps = ("grpo.max_steps=4", "checkpoint.every=2", "checkpoint.keep_last=0", "tracking.enabled=true",
             f"tracking.tracking_uri={uri}")  # fmt: skip
    seen: dict[str, list[dict]] = {"full": [], "resumed": []}
    original = grpo_module.grpo_step

    def recording(key: str, crash_at: int | None = None):
        def step(*args, **kwargs):
            if crash_at is not None and len(seen[key]) + 1 == crash_at:
                raise _Crash("simulated kill")
            metrics, ids = original(*args, **kwargs)
            seen[key].append({"loss": metrics["loss"], "reward": metrics["reward/total_mean"], "ids": ids})
            return metrics, ids

        return step

    monkeypatch.setattr(grpo_module, "grpo_step", recording("full"))
    full_run = train_grpo(_config(tmp_path / "a", tiny_dataset, *steps, "tracking.experiment=full")).run_id
    monkeypatch.setattr(grpo_module, "grpo_step", recording("resumed", crash_at=4))  # dies during step 4
    resumed_cfg = (*steps, "tracking.experiment=resumed")
    with pytest.raises(_Crash):
        train_grpo(_config(tmp_path / "b", tiny_dataset, *resumed_cfg))
    monkeypatch.setattr(grpo_module, "grpo_step", recording("resumed"))
    capsys.readouterr()
    result = train_grpo(
        _config(tmp_path / "b", tiny_dataset, *resumed_cfg, "checkpoint.resume=true")
    )  # at step 2
    full, resumed = seen["full"], seen["resumed"]
    assert [r["ids"] for r in resumed[3:]] == [r["ids"] for r in full[2:]]  # same prompts after resume
    for a, b in zip(full[2:], resumed[3:], strict=True):
        assert_same_metrics({k: b[k] for k in ("loss", "reward")}, {k: a[k] for k in ("loss", "reward")})

    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("resumed").experiment_id])  # one run
    assert run.info.run_id == result.run_id and run.info.status == "FINISHED"
    assert f"resuming MLflow run {run.info.run_id} at step 2" in capsys.readouterr().err
    assert run.data.params["checkpoint.resume"] == "false"  # the first attempt's params stay
    assert run.data.tags["sayo.resumes"] == "1"
    for key in ("loss", "reward/total_mean", "kl"):
        history = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
        expected = [(m.step, m.value) for m in client.get_metric_history(full_run, key)]
        assert [s for s, _ in history] == [1, 2, 3, 4], key
        assert_same_metrics(dict(history), dict(expected), msg=key)


def test_grpo_with_lora_uses_the_base_as_reference(tmp_path, tiny_dataset):
    result = train_grpo(
        _config(
            tmp_path,
            tiny_dataset,
            "grpo.max_steps=2",
            "model.lora.enabled=true",
            "model.lora.r=4",
            "grpo.beta=0.1",
            "checkpoint.every=0",
        )
    )
    assert result.metrics["kl"] >= 0
    from sayo.models import load_policy

    merged, _ = load_policy(result.final_dir, device="cpu")  # the export is a plain merged model
    assert not any("lora" in name for name, _ in merged.named_parameters())


def test_non_finite_loss_names_the_step_and_samples(tmp_path, tiny_dataset, monkeypatch):
    import sayo.train.grpo_step as grpo_step

    def nan_loss(*args, **kwargs):
        return torch.tensor(float("nan"), requires_grad=True), {}

    monkeypatch.setattr(grpo_step, "policy_loss", nan_loss)
    with pytest.raises(NonFiniteError, match=r"step 1.*synth-"):
        train_grpo(_config(tmp_path, tiny_dataset, "grpo.max_steps=2", "checkpoint.every=0"))


@pytest.mark.slow
def test_grpo_run_lands_in_a_real_mlflow_server(tmp_path, tiny_dataset, mlflow_server):
    from mlflow.tracking import MlflowClient

    cfg = _config(
        tmp_path,
        tiny_dataset,
        "grpo.max_steps=2",
        "checkpoint.every=0",
        "tracking.enabled=true",
        f"tracking.tracking_uri={mlflow_server}",
        "tracking.experiment=test-train",
        "grpo.probe_every=2",
        "grpo.probe_samples=2",
        "grpo.eval_every=1",
        "grpo.eval_samples=3",
    )
    result = train_grpo(cfg)
    client = MlflowClient(mlflow_server)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["grpo.group_size"] == "4"  # the whole resolved config
    assert run.data.tags["sayo.stage"] == "grpo"
    history = client.get_metric_history(result.run_id, "reward/total_mean")
    assert [m.step for m in history] == [1, 2]
    for key in (
        "reward/region_attention",
        "kl",
        "clip_fraction",
        "entropy_mean",
        "tokens_per_s",
        "groups/accuracy_flat",
        "advantage_share/accuracy",
        "advantage_share/region_attention",
    ):
        assert key in run.data.metrics, key  # fmt: skip
    curve = client.get_metric_history(result.run_id, "eval/accuracy")  # the warm start, then each step
    assert [m.step for m in curve] == [0, 1, 2] and all(0.0 <= m.value <= 1.0 for m in curve)
    assert all(m.value in (0.0, 1 / 3, 2 / 3, 1.0) for m in curve)  # a share of the 3 eval samples
    assert "eval/format" in run.data.metrics and run.data.metrics["eval/length"] > 0
    probes = [a.path for a in client.list_artifacts(result.run_id, "probes")]
    assert any(p.endswith(".png") for p in probes) and any(p.endswith(".json") for p in probes)


def test_unreachable_tracking_server_fails_before_step_one(tmp_path, tiny_dataset, monkeypatch):
    import sayo.train.grpo as grpo_module
    from sayo.tracking import TrackingUnavailable

    def never(*args, **kwargs):
        raise AssertionError("a step ran although the tracking server is down")

    monkeypatch.setattr(grpo_module, "grpo_step", never)
    cfg = _config(
        tmp_path,
        tiny_dataset,
        "grpo.max_steps=1",
        "tracking.enabled=true",
        "tracking.tracking_uri=http://127.0.0.1:9",
    )  # the discard port: nothing listens
    with pytest.raises(TrackingUnavailable, match=r"127\.0\.0\.1:9"):
        train_grpo(cfg)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_sft_then_grpo_raises_the_reward(tmp_path, monkeypatch):
    """The tiny recipe learns: after SFT, GRPO's mean reward rises (fixed seed, loose bound)."""
    import sayo.train.grpo as grpo_module

    rewards: list[float] = []
    original = grpo_module.grpo_step

    def recording(*args, **kwargs):
        metrics, ids = original(*args, **kwargs)
        rewards.append(metrics["reward/total_mean"])
        return metrics, ids

    monkeypatch.setattr(grpo_module, "grpo_step", recording)
    dataset = build_tiny_dataset(tmp_path / "data", 256)  # the default recipe's 256 samples
    recipe = (
        "sft.max_steps=300",
        "checkpoint.every=0",
        "grpo.max_steps=60",
        "grpo.prompts_per_step=4",
        "grpo.max_new_tokens=24",
        "grpo.micro_batch_size=16",
        "grpo.init_from=sft",
    )
    sft = train_sft(_config(tmp_path, dataset, *recipe))
    assert sft.metrics["loss"] < 0.6
    train_grpo(_config(tmp_path, dataset, *recipe))
    first, last = sum(rewards[:20]) / 20, sum(rewards[-20:]) / 20
    assert last > first + 0.03, (first, last, rewards)


def _two_groups_generated(tmp_path, tiny_dataset):
    """A GRPO session (β = 0.1, one chunk of 8 rows, float64: equivalences hold up to rounding on any
    CPU) and 2 prompts × 4 sampled rollouts."""
    from sayo.train import grpo as grpo_module
    from sayo.train.grpo_step import make_chunks, sample

    cfg = _config(tmp_path, tiny_dataset, "grpo.micro_batch_size=8", "grpo.beta=0.1", "model.dtype=float64")
    session = grpo_module._setup(cfg)
    policy = session.policy
    samples, images = session.data.batch([0, 1])
    image_token_id = policy.model.config.image_token_id
    prompts = make_chunks(policy.processor, samples, images, 4, 8, image_token_id, "cpu")
    torch.manual_seed(0)
    return cfg, session, sample(policy.model, policy.processor, prompts, cfg.grpo)


@pytest.mark.equivalence
def test_fused_scoring_forward_gives_the_same_update(tmp_path, tiny_dataset):
    """μ = 1, one chunk: reusing the scoring forward's graph equals a separate update forward."""
    import copy

    from sayo.loss import group_advantages
    from sayo.train.grpo_step import compute_rewards, score, update

    cfg, session, chunks = _two_groups_generated(tmp_path, tiny_dataset)
    policy, image_token_id = session.policy, session.policy.model.config.image_token_id
    before = copy.deepcopy(policy.model.state_dict())
    results = []
    for fused in (True, False):
        policy.model.load_state_dict(before)
        policy.engine.optimizer.state.clear()
        scored = score(
            policy.model,
            session.reference,
            chunks,
            session.capture,
            cfg.rewards,
            1.0,
            image_token_id,
            keep_graph=fused,
        )
        assert (scored[0].graph is not None) == fused  # the fused path keeps its graph explicitly
        total = compute_rewards(scored, cfg.rewards).total
        stats = update(policy.engine, scored, group_advantages(total, 4), cfg.grpo)
        results.append((stats["loss"], {k: v.clone() for k, v in policy.model.state_dict().items()}))
    (loss_a, weights_a), (loss_b, weights_b) = results
    assert loss_a == pytest.approx(loss_b, rel=1e-9, abs=1e-12)
    lr = cfg.grpo.optim.lr
    for name, value in weights_a.items():  # Adam moves a weight by up to lr whatever its gradient's size
        torch.testing.assert_close(value, weights_b[name], rtol=0, atol=1e-3 * lr)
    assert any(not torch.equal(weights_a[k], before[k]) for k in before)  # the update did something


@pytest.mark.equivalence
def test_packed_groups_give_the_same_step(tmp_path, tiny_dataset):
    """Scoring each prompt once with its group behind it (sayo.packing) changes no reward, log-prob
    or update; a chunk mixing unequal parts of groups falls back to one row per rollout."""
    import copy

    from sayo.loss import group_advantages
    from sayo.train.grpo_step import compute_rewards, make_chunks, sample, score, update

    cfg, session, chunks = _two_groups_generated(tmp_path, tiny_dataset)
    assert session.capture is not None  # the region-attention reward is on
    policy, image_token_id = session.policy, session.policy.model.config.image_token_id
    samples, images = session.data.batch([0, 1])
    before = copy.deepcopy(policy.model.state_dict())
    results = []
    for packed in (True, False):
        policy.model.load_state_dict(before)
        policy.engine.optimizer.state.clear()
        scored = score(
            policy.model,
            session.reference,
            chunks,
            session.capture,
            cfg.rewards,
            1.0,
            image_token_id,
            keep_graph=True,
            pack_groups=packed,
        )
        assert (scored[0].packed is not None) == packed
        rewards = compute_rewards(scored, cfg.rewards)
        total, components = rewards.total, rewards.components
        old, ref = scored[0].old_logps.clone(), scored[0].ref_logps.clone()
        grads = {}
        step = policy.engine.step

        def keep_grads(step=step, grads=grads):  # the gradients the optimizer receives
            grads.update(
                {n: p.grad.clone() for n, p in policy.model.named_parameters() if p.grad is not None}
            )
            return step()

        policy.engine.step = keep_grads
        try:
            stats = update(policy.engine, scored, group_advantages(total, 4), cfg.grpo)
        finally:
            policy.engine.step = step
        results.append((components, old, ref, stats, grads))
    (comp_a, old_a, ref_a, stats_a, grads_a), (comp_b, old_b, ref_b, stats_b, grads_b) = results
    mask = chunks[0].mask  # [8, T]: the sampled rows
    assert_equivalent(old_a[mask], old_b[mask], msg="old log-probs")
    assert_equivalent(ref_a[mask], ref_b[mask], msg="reference log-probs")
    for name in comp_a:  # the attention reward passes through the model's float32 RMSNorm/rotary
        assert_equivalent(comp_a[name], comp_b[name], rel=1e-6, msg=name)
    assert stats_a["loss"] == pytest.approx(stats_b["loss"], rel=1e-6, abs=1e-9)
    assert stats_a["kl"] == pytest.approx(stats_b["kl"], rel=1e-6, abs=1e-12)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) > 50
    assert max(float(g.abs().max()) for g in grads_a.values()) > 1e-3  # gradients of some size
    for name, value in grads_a.items():
        assert_equivalent(value, grads_b[name], rel=1e-6, msg=name)

    split = make_chunks(policy.processor, samples, images, 4, 6, image_token_id, "cpu")  # 6 + 2 rows
    sampled = sample(policy.model, policy.processor, split, cfg.grpo)
    scored = score(
        policy.model, session.reference, sampled, session.capture, cfg.rewards, 1.0, image_token_id
    )
    assert [c.packed is not None for c in scored] == [
        False,
        True,
    ]  # 4 + 2 rows: no; 2 rows of one prompt: yes
    assert all(c.attention is not None for c in scored)


def test_length_grouped_sampler_is_a_resumable_epoch_of_sorted_windows():
    from sayo.train.sampler import EpochSampler

    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 1000, size=40).tolist()
    plain = EpochSampler(40, seed=3)
    grouped = EpochSampler(40, seed=3, lengths=lengths, window=8)
    epoch = grouped.next(40)
    assert sorted(epoch) == list(range(40))  # every item once per epoch
    assert sorted(epoch[:8]) == sorted(plain.next(8))  # windows hold the plain shuffle's items ...
    for start in range(0, 40, 8):  # ... sorted longest first
        window = [lengths[i] for i in epoch[start : start + 8]]
        assert window == sorted(window, reverse=True)

    def padding(order, batch=4):  # tokens of padding in batches of 4
        return sum(
            max(b) * len(b) - sum(b)
            for b in ([lengths[i] for i in order[j : j + batch]] for j in range(0, 40, batch))
        )

    assert padding(epoch) < padding(EpochSampler(40, seed=3).next(40)) / 2
    resumed = EpochSampler(40, seed=3, lengths=lengths, window=8)
    resumed.load_state_dict({**grouped.state_dict(), "epoch": 0, "offset": 12})
    assert resumed.next(10) == epoch[12:22]
    with pytest.raises(ValueError, match="3 lengths for 40 items"):
        EpochSampler(40, seed=3, lengths=[1, 2, 3], window=8)


def test_sample_lengths_count_the_processed_tokens(tiny_dataset):
    from sayo.data.dataset import GroundedDataset
    from sayo.models import load_policy
    from sayo.prompts import build_prompt_batch
    from sayo.sampling import encode_completions
    from sayo.train.sft import sample_lengths, sft_target

    _, processor = load_policy("tiny", device="cpu")
    data = GroundedDataset.load(tiny_dataset, "train", max_samples=6)
    estimated = sample_lengths(data, processor, reasoning=True)
    for sample, estimate in zip(data.samples, estimated, strict=True):
        prompt = build_prompt_batch(processor, [sample], [data.image(sample)])
        target, _ = encode_completions(processor.tokenizer, [sft_target(sample, True)])
        actual = int(prompt["attention_mask"].sum()) + target.shape[1]
        assert abs(estimate - actual) <= 3, (estimate, actual)


def test_tiny_official_recipe_logs_the_tanh_log_ratio_reward(tmp_path, tiny_dataset):
    """`--config tiny_official` is the official recipe on tiny-qwen3-vl with no SFT stage: two GRPO
    steps from the model itself, and the MLflow run holds every official value of the resolved recipe."""
    from mlflow import MlflowClient

    store = f"sqlite:///{tmp_path / 'mlruns.db'}"
    recipe = load_recipe(
        "tiny_official",
        [
            f"data.path={tiny_dataset}",
            f"checkpoint.dir={tmp_path / 'ckpt'}",
            "device=cpu",
            "grpo.max_steps=2",
            "grpo.prompts_per_step=2",
            "grpo.max_new_tokens=8",
            "grpo.probe_every=0",
            "checkpoint.every=0",
            f"tracking.tracking_uri={store}",
        ],
    )
    assert (recipe.model.name_or_path, recipe.grpo.init_from) == ("tiny-qwen3-vl", "model")
    result = train_grpo(recipe)
    client = MlflowClient(store)
    history = client.get_metric_history(result.run_id, "reward/region_attention")
    assert [m.step for m in history] == [1, 2]
    assert all(-1.0 < m.value < 1.0 for m in history)  # tanh of a log ratio, 0 = uniform attention
    assert {m.step for m in client.get_metric_history(result.run_id, "attention/lift")} == {1, 2}
    params = client.get_run(result.run_id).data.params
    official = {
        "rewards.attention.form": "tanh_log_ratio",
        "rewards.attention.aggregation": "ratio_of_means",
        "rewards.attention.layers": "last",
        "rewards.attention.ratio": "0.3",
        "rewards.attention.exclude_last": "true",
        "rewards.attention.query": "own",
        "rewards.attention.count": "batch_width",
        "rewards.format.form": "official",
        "model.name_or_path": "tiny-qwen3-vl",
        "model.lora.targets": "all-linear",
        "grpo.init_from": "model",
        "rewards.weights.accuracy": "0.0",
        "rewards.weights.format": "1.0",
        "rewards.weights.region_attention": "1.0",
        "grpo.beta": "0.001",
        "grpo.top_p": "0.9",
        "grpo.temperature": "1.0",
        "grpo.loss_type": "dapo",
    }
    assert {key: params[key] for key in official} == official


def test_the_official_recipe_holds_the_published_values():
    """sayo_official_qwen3_vl_8b: every value read from the authors' train/main.py and train/grpo.sh."""
    r = load_recipe("sayo_official_qwen3_vl_8b")
    assert r.model.name_or_path == "Qwen/Qwen3-VL-8B-Instruct" and r.model.dtype == "bfloat16"
    assert (r.model.lora.enabled, r.model.lora.r, r.model.lora.alpha) == (True, 16, 32)
    assert (r.grpo.group_size, r.grpo.temperature, r.grpo.top_p, r.grpo.max_new_tokens) == (16, 1.0, 0.9, 110)
    assert (r.grpo.beta, r.grpo.optim.lr, r.grpo.optim.weight_decay, r.grpo.optim.max_grad_norm) == (
        0.001,
        5e-6,
        0.01,
        0.8,
    )
    assert r.rewards.weights == {"accuracy": 0.0, "format": 1.0, "region_attention": 1.0}
    attention = r.rewards.attention
    assert (attention.form, attention.aggregation, attention.layers) == (
        "tanh_log_ratio",
        "ratio_of_means",
        "last",
    )
    assert (attention.ratio, attention.exclude_last, attention.query) == (0.3, True, "own")
    assert r.deepspeed.config == "zero1"
