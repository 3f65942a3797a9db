"""The `grpo` stage: GRPO with SAYO's region-attention reward (docs/method.md, "Total reward and optimisation").

One step reads top to bottom (the phases and their records: `sayo.train.grpo_step`):
  1. sample   — P prompts × G sampled completions (KV cache, temperature/top-p, stop at EOS)
  2. score    — one no-grad forward of the current (= old) policy gives log-probs, entropies and,
                through `AttentionCapture` hooks, attention of the completion tokens on the image;
                a second one of the reference gives its log-probs when β > 0
  3. reward   — accuracy, format and region attention over the selected tokens, weighted
  4. advantage— group-normalised (`sayo.loss.group_advantages`)
  5. update   — μ passes of the clipped surrogate + β·k3 KL (`sayo.loss.policy_loss`)
Departures from the textbook: with μ = 1 and the batch in one micro-batch, the scoring forward
keeps its graph and is also the update's forward (old log-probs = its detached copy, as TRL and
verl do), saving one forward per step; the reference is the *starting* policy (a frozen copy, or
the base with LoRA adapters disabled); micro-batch losses are weighted so the accumulated gradient
equals the full-batch loss of every `loss_type`; groups whose rewards are all equal are counted
and logged rather than silently contributing zero, and every reward component's within-group
spread is logged next to its between-group spread (a term without within-group spread gives no
signal).
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

from sayo.attention_capture import AttentionCapture
from sayo.config import flatten, to_dict
from sayo.data.dataset import GroundedDataset
from sayo.loss import advantage_parts, combined_advantages, flat_group_metrics, group_advantages
from sayo.runtime import check_finite, seed_everything
from sayo.tracking import StageRun
from sayo.train import distributed
from sayo.train.checkpoint import save_final
from sayo.train.config import GRPOConfig, TrainRecipe, grpo_start
from sayo.train.grpo_step import Rewards, compute_rewards, make_chunks, sample, score, step_metrics, update
from sayo.train.lora import reference_policy
from sayo.train.policy import (
    StageResult,
    TrainablePolicy,
    load_trainable_policy,
    resume_training,
    save_training_checkpoint,
)
from sayo.train.probes import eval_metrics, log_probes
from sayo.train.sampler import EpochSampler


def reference_factory(policy: TrainablePolicy, cfg: TrainRecipe) -> Callable[[], Any] | None:
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


def rank_advantages(rewards: Rewards, weights: dict[str, float], grpo: GRPOConfig) -> torch.Tensor:
    """Advantages of this rank's rollouts [B] (`grpo.advantage_*`); `batch` scaling takes the std
    of every rank's rewards."""
    parts = dict(rewards.components) if grpo.advantage_per_component else {"total": rewards.total}
    rows = rewards.total.shape[0]
    if grpo.advantage_scale == "batch" and distributed.world_size() > 1:
        start = distributed.rank() * rows
        parts = {
            name: torch.tensor(distributed.gather_lists(values.tolist()), dtype=values.dtype)
            for name, values in parts.items()
        }
    else:
        start = 0
    scale, floor = grpo.advantage_scale, grpo.advantage_std_floor
    if grpo.advantage_per_component:
        advantages = combined_advantages(parts, weights, grpo.group_size, scale, floor)
    else:
        advantages = group_advantages(parts["total"], grpo.group_size, scale, floor)
    return advantages[start : start + rows].to(rewards.total.device)  # [B]


def grpo_step(
    policy: TrainablePolicy,
    data: GroundedDataset,
    sampler: EpochSampler,
    cfg: TrainRecipe,
    capture: AttentionCapture | None,
    reference: Callable[[], Any] | None,
) -> tuple[dict, list[str]]:
    """One GRPO step (sample → score → reward → advantage → update); returns metrics and sample ids."""
    grpo, began = cfg.grpo, time.perf_counter()
    per_rank = grpo.prompts_per_step
    samples, images = data.batch(
        distributed.shard(sampler.next(per_rank * distributed.world_size()), per_rank)
    )
    image_token_id = policy.model.config.image_token_id
    prompts = make_chunks(
        policy.processor,
        samples,
        images,
        grpo.group_size,
        grpo.micro_batch_size,
        image_token_id,
        policy.device,
        cfg.prompt,
    )
    sampled = sample(policy.model, policy.processor, prompts, grpo, policy.engine.generation_context())
    generated = time.perf_counter()
    scored = score(
        policy.model,
        reference,
        sampled,
        capture,
        cfg.rewards,
        grpo.temperature,
        image_token_id,
        keep_graph=grpo.mu == 1 and len(sampled) == 1,  # one forward serves scoring and the update
        pack_groups=grpo.pack_groups,
    )
    rewards = compute_rewards(scored, cfg.rewards)
    advantages = rank_advantages(rewards, cfg.rewards.weights, grpo)  # [B]
    metrics = step_metrics(scored, rewards, advantages, grpo.group_size)
    parts = advantage_parts(
        rewards.components, cfg.rewards.weights, grpo.group_size, grpo.advantage_scale,
        grpo.advantage_std_floor, grpo.advantage_per_component,
    )  # fmt: skip
    accuracy = rewards.components.get("accuracy")
    # this rank's groups (`batch` scaling: with this rank's std); averaged over ranks below
    metrics.update(flat_group_metrics(accuracy, parts, grpo.group_size))
    metrics.update(update(policy.engine, scored, advantages, grpo))
    elapsed = time.perf_counter() - began
    tokens = sum(int(c.sampled.mask.sum()) for c in scored)
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
    evalset: GroundedDataset | None  # the accuracy curve's samples (`grpo.eval_every`)
    sampler: EpochSampler
    capture: AttentionCapture | None
    reference: Callable[[], Any] | None
    stage_dir: Path


def _setup(cfg: TrainRecipe) -> _Session:
    grpo = cfg.grpo
    chunks_per_step = -(-grpo.prompts_per_step * grpo.group_size // grpo.micro_batch_size)
    steps = grpo.max_steps * grpo.mu
    policy = load_trainable_policy(
        cfg,
        grpo.optim,
        steps,
        grpo.micro_batch_size,
        chunks_per_step,
        start_from=grpo_start(cfg),
        frozen_reference=grpo.beta > 0 and not cfg.model.lora.enabled,
    )
    reference = reference_factory(policy, cfg)  # the starting policy, before any checkpoint is loaded
    attention = cfg.rewards.attention
    wants_capture = cfg.rewards.weights.get("region_attention", 0) > 0 or grpo.probe_every > 0
    capture = AttentionCapture(policy.model, attention.layers, attention.heads) if wants_capture else None
    data = GroundedDataset.load(cfg.data.path, cfg.data.train_split, cfg.data.max_samples)
    probes = None
    if grpo.probe_every:
        probes = GroundedDataset.load(cfg.data.path, cfg.data.eval_split, grpo.probe_samples)
    evalset = None
    if grpo.eval_every:
        evalset = GroundedDataset.load(cfg.data.path, cfg.data.eval_split, grpo.eval_samples)
    return _Session(
        policy,
        data,
        probes,
        evalset,
        EpochSampler(len(data), cfg.seed),
        capture,
        reference,
        Path(cfg.checkpoint.dir) / "grpo",
    )


def train_grpo(cfg: TrainRecipe) -> StageResult:
    """Run the GRPO stage end to end (resuming if asked); returns the final checkpoint directory."""
    seed_everything(cfg.seed)
    session = _setup(cfg)
    state, last_ckpt = resume_training(session.policy, session.stage_dir, cfg)
    if last_ckpt is not None:
        session.sampler.load_state_dict(state["sampler"])
    with StageRun(
        distributed.tracking_for_rank(cfg.tracking),
        stage="grpo",
        params=flatten(to_dict(cfg)),
        resume=state.get("tracking"),  # continue the checkpoint's MLflow run
    ) as run:
        metrics = _loop(session, cfg, run, state["step"], last_ckpt)
        metrics = metrics or state.get("metrics", {})  # resumed after the last step: the checkpoint's
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
    session: _Session, cfg: TrainRecipe, run: StageRun, start: int, last_ckpt: Path | None
) -> dict[str, float]:
    grpo, metrics = cfg.grpo, dict[str, float]()
    bar = tqdm(
        range(start + 1, grpo.max_steps + 1),
        desc="grpo",
        initial=start,
        total=grpo.max_steps,
        disable=not distributed.shows_progress(),
    )
    if session.evalset is not None and start == 0:  # where the curve starts: the warm start
        run.log_metrics(eval_metrics(session.policy, session.evalset, cfg), step=0)
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
        if session.evalset is not None and (step % grpo.eval_every == 0 or step == grpo.max_steps):
            run.log_metrics(eval_metrics(session.policy, session.evalset, cfg), step=step)
        if cfg.checkpoint.every and step % cfg.checkpoint.every == 0:
            trainer_state = {"step": step, "sampler": session.sampler.state_dict(), "metrics": metrics,
                             "tracking": run.resume_state(step)}  # fmt: skip
            last_ckpt = save_training_checkpoint(session.policy, session.stage_dir, step, trainer_state, cfg)
    return metrics
