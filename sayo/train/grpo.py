"""The `grpo` stage: GRPO with SAYO's region-attention reward (method.md, "Total reward").

One step reads top to bottom (style.md, after nanochat's `chat_rl.py`):
  1. rollout  — P prompts × G sampled completions (KV cache, temperature/top-p, stop at EOS)
  2. score    — one no-grad forward of the current (= old) policy gives log-probs, entropies and,
                through `AttentionCapture` hooks, attention of the completion tokens on the image;
                a second one of the reference gives its log-probs when β > 0
  3. reward   — accuracy, format and region attention over the top-ρ high-entropy tokens, weighted
  4. advantage— group-normalised (`sayo.loss.group_advantages`)
  5. update   — μ passes of the clipped surrogate + β·k3 KL (`sayo.loss.policy_loss`)
Departures from the textbook: with μ = 1 and the batch in one micro-batch, the scoring forward
keeps its graph and is also the update's forward (old log-probs = its detached copy, as TRL and
verl do), saving one forward per step; the reference is the *starting* policy (a frozen copy, or the base
with LoRA adapters disabled); micro-batch losses are weighted so the accumulated gradient equals
the full-batch loss of every `loss_type`; groups whose rewards are all equal are counted and
logged rather than silently contributing zero.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from sayo.attention import AttentionCapture
from sayo.config import flatten, to_dict
from sayo.data.dataset import GroundedDataset
from sayo.logprobs import token_logprobs
from sayo.loss import group_advantages, policy_loss
from sayo.rewards import accuracy_reward, combine_rewards, format_reward
from sayo.scoring import completion_logits, packed_completion_logits
from sayo.tracking import StageRun
from sayo.train import distributed
from sayo.train.checkpoint import save_final
from sayo.train.config import TrainConfig
from sayo.train.lora import reference_policy
from sayo.train.policy import (
    TrainablePolicy,
    load_trainable_policy,
    resume_training,
    save_training_checkpoint,
)
from sayo.train.probes import log_probes
from sayo.train.rollouts import Chunk, forward_inputs, generate, image_features, make_chunks, score
from sayo.train.runtime import check_finite, seed_everything
from sayo.train.sampler import EpochSampler
from sayo.train.sft import StageResult


def reference_factory(policy: TrainablePolicy, cfg: TrainConfig) -> Callable[[], Any] | None:
    """A context-manager factory yielding the reference policy, or None when β = 0 (no KL term)."""
    if cfg.grpo.beta == 0:
        return None
    if cfg.model.lora.enabled:
        return lambda: reference_policy(policy.model)
    frozen = policy.reference
    if frozen is None:
        raise ValueError("GRPO with beta > 0 and no LoRA needs the policy loaded with frozen_reference=True")

    @contextmanager
    def frozen_reference() -> Iterator[Any]:
        yield frozen

    return frozen_reference


def compute_rewards(chunks: list[Chunk], cfg: TrainConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted total reward [B] and its components, over all rollouts in row order."""
    samples = [s for c in chunks for s in c.samples]
    texts = [t for c in chunks for t in (c.texts or [])]
    components = {
        "accuracy": accuracy_reward(
            texts,
            [s.answer for s in samples],
            [s.answer_type.value for s in samples],
            [s.choices for s in samples],
            tolerance=cfg.rewards.numeric_tolerance,
        ),
        "format": format_reward(texts),
        "region_attention": torch.cat(
            [c.region_attention.cpu() for c in chunks if c.region_attention is not None]
        ),
    }
    return combine_rewards(components, cfg.rewards.weights)


def rank_advantages(total: torch.Tensor, group_size: int, scale: str) -> torch.Tensor:
    """Group advantages of this rank's rollouts; `batch` scaling uses the std of every rank's rewards."""
    if scale != "batch" or distributed.world_size() == 1:
        return group_advantages(total, group_size, scale=scale)
    everyone = torch.tensor(distributed.gather_lists(total.tolist()), dtype=total.dtype)
    start = distributed.rank() * total.shape[0]
    return group_advantages(everyone, group_size, scale=scale)[start : start + total.shape[0]].to(
        total.device
    )


def _policy_logps(model: Any, chunk: Chunk, temperature: float) -> torch.Tensor:
    """[b, T] log-probs of the chunk's completions under the current policy, with grad."""
    assert chunk.completion_ids is not None and chunk.mask is not None
    inputs, packed = forward_inputs(model, chunk, image_features(model, chunk, grad=True))
    if packed is not None:
        logits = packed_completion_logits(model, packed, temperature)  # [b, T, V]
    else:
        logits = completion_logits(model, inputs, chunk.completion_ids, chunk.mask, temperature)
    return token_logprobs(logits, chunk.completion_ids)  # [b, T]


def update(policy: TrainablePolicy, chunks: list[Chunk], advantages: torch.Tensor, cfg: TrainConfig) -> dict:
    """μ optimizer steps over the batch; returns the last pass's loss statistics."""
    grpo, engine = cfg.grpo, policy.engine
    total_rows = sum(len(c.samples) for c in chunks)
    total_tokens = float(sum(int(c.mask.sum()) for c in chunks if c.mask is not None))
    if grpo.loss_type == "dapo":  # all ranks' tokens; × world undoes DeepSpeed's gradient average
        total_tokens = distributed.sum_over_ranks(total_tokens) / distributed.world_size()
    stats: dict[str, float] = {}
    for _ in range(grpo.mu):
        engine.model.train()
        row, sums = 0, {"loss": 0.0}
        for chunk in chunks:
            assert chunk.completion_ids is not None and chunk.mask is not None and chunk.old_logps is not None
            rows = len(chunk.samples)
            adv = advantages[row : row + rows].to(chunk.mask.device)  # [b]
            row += rows
            logps = (
                chunk.logps
                if chunk.logps is not None
                else _policy_logps(engine.model, chunk, grpo.temperature)
            )
            chunk.logps = None  # the scoring forward's graph serves the first pass only
            loss, parts = policy_loss(
                logps,
                chunk.old_logps,
                adv,
                chunk.mask,
                chunk.ref_logps,
                beta=grpo.beta,
                epsilon_low=grpo.epsilon_low,
                epsilon_high=grpo.epsilon_high,
                loss_type=grpo.loss_type,
                max_completion_length=grpo.max_new_tokens,
            )
            share = (
                int(chunk.mask.sum()) / max(total_tokens, 1)
                if grpo.loss_type in ("bnpo", "dapo")
                else (rows / total_rows)
            )
            engine.backward(loss * share)
            sums["loss"] += float(loss.detach()) * share
            for name, value in parts.items():
                sums[name] = sums.get(name, 0.0) + float(value) * rows / total_rows
        sums["grad_norm"] = float(engine.step())
        stats = sums
    return stats


def step_metrics(
    chunks: list[Chunk], total: torch.Tensor, components: dict, advantages: torch.Tensor, group_size: int
) -> dict[str, float]:
    """Per-step observability (style.md §10): every reward part, spread, entropy, lengths, truncation."""
    masks = [c.mask for c in chunks if c.mask is not None]
    lengths = torch.cat([m.sum(1) for m in masks]).float()  # [B]
    truncated = torch.cat([c.truncated for c in chunks if c.truncated is not None]).float()  # [B]
    entropy = torch.cat(
        [
            (c.entropy * c.mask).sum(1) / c.mask.sum(1).clamp(min=1)
            for c in chunks
            if c.entropy is not None and c.mask is not None
        ]
    )
    groups = total.view(-1, group_size)  # [P, G]
    metrics = {f"reward/{k}": float(v.float().mean()) for k, v in components.items()}
    metrics.update(
        {
            "reward/total_mean": float(total.mean()),
            "reward/total_std": float(total.std()),
            "advantage_std": float(advantages.std()),
            "entropy_mean": float(entropy.mean()),
            "response_length_mean": float(lengths.mean()),
            "truncation_rate": float(truncated.mean()),
            "groups_zero_std": float((groups.std(dim=1) == 0).sum()),
        }
    )
    return metrics


def grpo_step(
    policy: TrainablePolicy,
    data: GroundedDataset,
    sampler: EpochSampler,
    cfg: TrainConfig,
    capture: AttentionCapture | None,
    reference: Callable[[], Any] | None,
) -> tuple[dict, list[str]]:
    """One GRPO step (rollout → score → reward → advantage → update); returns metrics and sample ids."""
    grpo, began = cfg.grpo, time.perf_counter()
    per_rank = grpo.prompts_per_step
    samples, images = data.batch(
        distributed.shard(sampler.next(per_rank * distributed.world_size()), per_rank)
    )
    image_token_id = policy.model.config.image_token_id
    chunks = make_chunks(
        policy.processor,
        samples,
        images,
        grpo.group_size,
        grpo.micro_batch_size,
        image_token_id,
        policy.device,
    )
    generate(policy.model, policy.processor, chunks, grpo, policy.engine.generation_context())
    generated = time.perf_counter()
    fused = grpo.mu == 1 and len(chunks) == 1  # one forward serves scoring and the update
    score(
        policy.model,
        reference,
        chunks,
        capture,
        cfg.rewards,
        grpo.temperature,
        image_token_id,
        keep_graph=fused,
        pack_groups=grpo.pack_groups,
    )
    total, components = compute_rewards(chunks, cfg)
    advantages = rank_advantages(total, grpo.group_size, grpo.advantage_scale)  # [B]
    metrics = step_metrics(chunks, total, components, advantages, grpo.group_size)
    metrics.update(update(policy, chunks, advantages, cfg))
    elapsed = time.perf_counter() - began
    tokens = sum(int(c.mask.sum()) for c in chunks if c.mask is not None)
    metrics.update(
        {
            "step_time_s": elapsed,
            "generation_time_s": generated - began,
            "tokens_per_s": tokens / elapsed,
            "lr": policy.engine.lr,
        }
    )
    return metrics, [s.id for s in samples]


@dataclass
class _Session:
    """What the GRPO loop works with, set up once per run."""

    policy: TrainablePolicy
    data: GroundedDataset
    probes: GroundedDataset | None
    sampler: EpochSampler
    capture: AttentionCapture | None
    reference: Callable[[], Any] | None
    stage_dir: Path


def _setup(cfg: TrainConfig) -> _Session:
    grpo = cfg.grpo
    chunks_per_step = -(-grpo.prompts_per_step * grpo.group_size // grpo.micro_batch_size)
    steps = grpo.max_steps * grpo.mu
    policy = load_trainable_policy(
        cfg,
        grpo.optim,
        steps,
        grpo.micro_batch_size,
        chunks_per_step,
        start_from=cfg.grpo_start(),
        frozen_reference=grpo.beta > 0 and not cfg.model.lora.enabled,
    )
    reference = reference_factory(policy, cfg)  # the starting policy, before any checkpoint is loaded
    wants_capture = cfg.rewards.weights.get("region_attention", 0) > 0 or grpo.probe_every > 0
    capture = (
        AttentionCapture(policy.model, cfg.rewards.layers, cfg.rewards.head_reduce) if wants_capture else None
    )
    data = GroundedDataset.load(cfg.data.path, cfg.data.train_split, cfg.data.max_samples)
    probes = None
    if grpo.probe_every:
        probes = GroundedDataset.load(cfg.data.path, cfg.data.eval_split, grpo.probe_samples)
    return _Session(
        policy,
        data,
        probes,
        EpochSampler(len(data), cfg.seed),
        capture,
        reference,
        Path(cfg.checkpoint.dir) / "grpo",
    )


def train_grpo(cfg: TrainConfig) -> StageResult:
    """Run the GRPO stage end to end (resuming if asked); returns the final checkpoint directory."""
    seed_everything(cfg.seed)
    session = _setup(cfg)
    state, last_ckpt = resume_training(session.policy, session.stage_dir, cfg)
    if last_ckpt is not None:
        session.sampler.load_state_dict(state["sampler"])
    with StageRun(
        distributed.tracking_for_rank(cfg.tracking), stage="grpo", params=flatten(to_dict(cfg))
    ) as run:
        metrics = _loop(session, cfg, run, state["step"], last_ckpt)
        policy = session.policy
        final = save_final(
            session.stage_dir,
            model=policy.model,
            processor=policy.processor,
            config=cfg,
            weights_context=policy.engine.generation_context,
        )
        run.log_dict(to_dict(cfg), "config.yaml")
        return StageResult(final, run.run_id, metrics)


def _loop(
    session: _Session, cfg: TrainConfig, run: StageRun, start: int, last_ckpt: Path | None
) -> dict[str, float]:
    grpo, metrics = cfg.grpo, dict[str, float]()
    bar = tqdm(
        range(start + 1, grpo.max_steps + 1),
        desc="grpo",
        initial=start,
        total=grpo.max_steps,
        disable=not distributed.is_main(),
    )
    for step in bar:
        metrics, ids = grpo_step(
            session.policy, session.data, session.sampler, cfg, session.capture, session.reference
        )
        metrics = distributed.mean_over_ranks(metrics)  # every rank sees (and checks) the same values
        ids = distributed.gather_lists(ids)
        check_finite(metrics, step=step, sample_ids=ids, last_checkpoint=last_ckpt)
        bar.set_postfix(reward=f"{metrics['reward/total_mean']:.3f}", kl=f"{metrics.get('kl', 0.0):.4f}")
        if step % grpo.log_every == 0 or step == grpo.max_steps:
            run.log_metrics(metrics, step=step)
        probe_now = grpo.probe_every and (step % grpo.probe_every == 0 or step == grpo.max_steps)
        if probe_now and session.probes is not None and session.capture is not None:
            log_probes(run, session.policy, session.probes, session.capture, cfg, step)
        if cfg.checkpoint.every and step % cfg.checkpoint.every == 0:
            trainer_state = {"step": step, "sampler": session.sampler.state_dict(), "metrics": metrics}
            last_ckpt = save_training_checkpoint(session.policy, session.stage_dir, step, trainer_state, cfg)
    return metrics
