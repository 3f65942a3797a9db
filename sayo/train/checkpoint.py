"""Checkpoints that resume a run exactly, and a final policy directory that loads like any model.

Why this shape (docs/architecture.md, "Training"): a step checkpoint is an HF `save_pretrained`
directory plus everything else a resumed run needs to take the very same next step — optimizer
and scheduler state, every RNG (python, numpy, torch CPU and CUDA) and the trainer's own state
(step, samples seen, data position). Restoring all of it makes a resumed run bit-identical to an
uninterrupted one, which `tests/test_checkpoint.py` checks.

Atomicity: each directory is built under a hidden temporary name beside its target, flushed to
disk, given a `COMPLETE` marker last, and only then renamed into place (`os.replace`, atomic on
POSIX). A crash mid-save leaves the earlier checkpoints and no visible half-written `step-*`;
`latest_checkpoint` also trusts only directories holding the marker.

Departures from "load the safetensors strictly": transformers 5 saves weights under the
checkpoint's original key names (it reverts its load-time renamings, e.g. Qwen2.5-VL's
`model.language_model.*` → `model.*`), so full weights are read back through `from_pretrained`
(which applies the renamings), checked for missing/unexpected keys, and then copied strictly into
the live model. LoRA models save and load only their adapters, through peft.

DeepSpeed: `engine_save`/`engine_load` hooks let the engine write its own (sharded) optimizer and
scheduler state into the checkpoint directory instead of `optimizer.pt`/`scheduler.pt`; its
checkpoint holds the module weights too, so a DeepSpeed resume restores them from there (under
ZeRO-3 the live parameters are partitioned and cannot take a plain `load_state_dict`).

Mirrors (`checkpoint.mirror`, an `s3://bucket/prefix`): a node's disk dies with the node, so a
preempted or retried job keeps its progress only in object storage. After each complete local
checkpoint, rank 0 uploads it to `<mirror>/<stage>/step-<n>/` with the `COMPLETE` marker last
(`sayo.storage`), so a reader that finds the marker finds every file; a half-upload (a kill
mid-upload) has no marker and is never picked. The mirror is pruned like the local directory
(`keep_last`). On resume the newest complete mirrored checkpoint is downloaded into the stage
directory when it is newer than the newest local one. A mirror holding checkpoints when a run
starts without resume is refused: its checkpoints belong to an earlier run, and mixing them with
this run's would make a later resume continue the wrong run. The upload is synchronous (training
waits for it), so its time is part of the checkpoint's cost.

Several ranks (`sayo.train.distributed`): every rank calls the save; rank 0 writes the files all
ranks share (weights, processor, trainer state, config); each rank writes its own RNG state
(`rng.pt` for rank 0, `rng-rank<r>.pt` for the others) and its DeepSpeed shards; barriers order the
steps. The directory's writer (`distributed.is_writer`) prepares the temporary directory, marks it
and renames it into place: rank 0 when the ranks share the filesystem, else each node's local
rank 0 on its own scratch (a multi-node Kubeflow job), whose copy then holds only its node's
ranks' files. The weights are written inside `weights_context` (the engine's parameter gather
under ZeRO-3), so a sharded model is saved whole.

Mirrors of node-local checkpoints (`push_shards`, `pull_step`): every node's writer uploads its
node's files, and rank 0 the marker once all have (a barrier), so the mirror holds every rank's
shards under one marker. On resume every node's writer downloads the whole checkpoint of the
newest complete mirrored step (rank 0's choice, shared by all ranks): a node's own copy holds only
its ranks' files, and a node may have a newer local step whose upload never completed.
"""

from __future__ import annotations

import copy
import json
import os
import random
import re
import shutil
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sayo import storage
from sayo.config import save_config
from sayo.train import distributed

COMPLETE = "COMPLETE"
FINAL = "final"
_STEP_RE = re.compile(r"^step-(\d{8,})$")

EngineHook = Callable[[Path], None]


def step_dir(stage_dir: Path, step: int) -> Path:
    """The directory of the checkpoint of `step`: `<stage_dir>/step-00000042`."""
    return Path(stage_dir) / f"step-{step:08d}"


def save_checkpoint(
    stage_dir: Path,
    step: int,
    *,
    model: Any,
    processor: Any,
    optimizer: torch.optim.Optimizer | None,
    scheduler: Any | None,
    trainer_state: dict[str, Any],
    config: Any,
    keep_last: int,
    engine_save: EngineHook | None = None,
    generators: Mapping[str, torch.Generator] | None = None,
    weights_context: Callable[[], AbstractContextManager[Any]] = nullcontext,
) -> Path:
    """Write `<stage_dir>/step-<step:08d>/` atomically, then prune older step checkpoints.

    Every rank calls it (see the module docstring for who writes what).

    Args:
        model: an HF model, or a peft `PeftModel` (then only its adapters are saved).
        optimizer, scheduler: saved to `optimizer.pt`/`scheduler.pt` (None skips the file).
        trainer_state: step, samples seen, data position, last metrics — must be JSON-serialisable.
        config: the resolved dataclass config, written as `config.yaml`.
        keep_last: step checkpoints kept after this one is written (0 = keep all).
        engine_save: DeepSpeed hook called with the (temporary) directory; replaces `optimizer.pt`.
        generators: extra torch generators (e.g. a sampler's) whose states go into `rng.pt`.
        weights_context: entered around writing the weights (ZeRO-3: gathers the parameters).
    Returns:
        The checkpoint directory.
    """
    state_text = _json_text(trainer_state)
    target = step_dir(stage_dir, step)
    main = distributed.is_main()

    def fill(tmp: Path) -> None:
        with weights_context():
            if main:
                model.save_pretrained(tmp)
        if main:
            processor.save_pretrained(tmp)
        if engine_save is not None:
            engine_save(tmp)  # collective: each rank writes its shards
        elif optimizer is not None and main:
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        if scheduler is not None and main:
            torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save(_rng_state(generators), tmp / _rng_file())
        if main:
            (tmp / "trainer_state.json").write_text(state_text)
            save_config(config, tmp / "config.yaml")

    _write_atomically(target, fill)
    if distributed.is_writer(stage_dir):
        _prune(Path(stage_dir), keep_last, keep=target)
    distributed.barrier()
    return target


def _rng_file() -> str:
    return "rng.pt" if distributed.rank() == 0 else f"rng-rank{distributed.rank()}.pt"


def latest_checkpoint(stage_dir: Path) -> Path | None:
    """The newest `step-*` directory that has the `COMPLETE` marker, or None."""
    done = _complete_steps(Path(stage_dir))
    return done[-1][1] if done else None


def load_checkpoint(
    path: Path,
    *,
    model: Any,
    optimizer: torch.optim.Optimizer | None,
    scheduler: Any | None,
    engine_load: EngineHook | None = None,
    generators: Mapping[str, torch.Generator] | None = None,
    weights_from_engine: bool = False,
) -> dict[str, Any]:
    """Restore weights, optimizer, scheduler and every RNG from a checkpoint; return trainer_state.

    The model must have the checkpoint's architecture (and, for peft, the same adapters);
    `engine_load` replaces reading `optimizer.pt`; with `weights_from_engine` (ZeRO-3, whose
    partitioned parameters cannot take a plain `load_state_dict`) it restores the weights too, from
    the engine's own checkpoint. Each rank reads its own RNG state.
    """
    path = Path(path)
    if not (path / COMPLETE).exists():
        raise FileNotFoundError(f"{path} is not a complete checkpoint (no {COMPLETE} marker)")
    rng_path = path / _rng_file()
    if not rng_path.exists():
        raise FileNotFoundError(
            f"{rng_path} is missing: the checkpoint was written by fewer ranks than this run has "
            f"({distributed.world_size()}); resume with the same number of processes"
        )
    if not weights_from_engine:
        if hasattr(model, "peft_config"):
            _load_adapters(model, path)
        else:
            _load_full_weights(model, path)
    if engine_load is not None:
        engine_load(path)
    elif optimizer is not None:
        optimizer.load_state_dict(_torch_load(path / "optimizer.pt"))
    if scheduler is not None:
        scheduler.load_state_dict(_torch_load(path / "scheduler.pt"))
    _set_rng_state(_torch_load(rng_path), generators)
    state: dict[str, Any] = json.loads((path / "trainer_state.json").read_text())
    return state


def save_final(
    stage_dir: Path,
    *,
    model: Any,
    processor: Any,
    config: Any,
    weights_context: Callable[[], AbstractContextManager[Any]] = nullcontext,
) -> Path:
    """Write `<stage_dir>/final/`: a plain HF directory for `sayo.models.load_policy`, atomically.

    A peft model is merged into its base first, on a deep copy, so training can go on. Every rank
    calls it; rank 0 writes, inside `weights_context` (ZeRO-3: the gathered parameters).
    """
    target = Path(stage_dir) / FINAL
    main = distributed.is_main()

    def fill(tmp: Path) -> None:
        with weights_context():
            if main:
                plain = copy.deepcopy(model).merge_and_unload() if hasattr(model, "peft_config") else model
                plain.save_pretrained(tmp)
        if main:
            processor.save_pretrained(tmp)
            save_config(config, tmp / "config.yaml")

    target = _write_atomically(target, fill)
    distributed.barrier()
    return target


def _write_atomically(target: Path, fill: Callable[[Path], None]) -> Path:
    """Build `target` in a hidden temp dir beside it, mark it COMPLETE, then rename it into place.

    With several ranks, every rank runs `fill` into the temp dir; its writer alone (rank 0 on a
    shared filesystem, else each node's local rank 0: `distributed.is_writer`) creates, marks and
    renames it.
    """
    main = distributed.is_writer(target.parent)
    tmp = target.parent / f".{target.name}.tmp"
    if main:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)  # left by a crashed earlier save
        tmp.mkdir()
    distributed.barrier()
    try:
        fill(tmp)
        distributed.barrier()  # every rank's files are in
        if main:
            for file in (f for f in tmp.rglob("*") if f.is_file()):  # on disk before the marker says so
                with file.open("rb") as handle:
                    os.fsync(handle.fileno())
            (tmp / COMPLETE).write_text("")
    except BaseException:
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not main:
        return target
    old = target.parent / f".{target.name}.old"
    if target.exists():  # re-saving the same step (or final): swap, then drop the old one
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def _complete_steps(stage_dir: Path) -> list[tuple[int, Path]]:
    """`(step, dir)` of the complete step checkpoints, oldest first."""
    if not stage_dir.is_dir():
        return []
    found = []
    for child in stage_dir.iterdir():
        match = _STEP_RE.match(child.name)
        if match and child.is_dir() and (child / COMPLETE).exists():
            found.append((int(match.group(1)), child))
    return sorted(found)


def _prune(stage_dir: Path, keep_last: int, keep: Path) -> None:
    """Delete complete step checkpoints older than the newest `keep_last` (never `keep`)."""
    if keep_last <= 0:
        return
    done = _complete_steps(stage_dir)
    for _, path in done[: max(len(done) - keep_last, 0)]:
        if path != keep:
            shutil.rmtree(path)


def _json_text(state: Mapping[str, Any]) -> str:
    """`state` as JSON, or a TypeError naming the first key path that is not serialisable."""
    try:
        return json.dumps(state, indent=2)
    except (TypeError, ValueError) as err:
        where = _first_bad_path(state, "trainer_state")
        raise TypeError(
            f"{where} is not JSON-serialisable ({err}); store plain numbers/strings/lists"
        ) from err


def _first_bad_path(value: Any, where: str) -> str:
    """`where[key]...` of the first value JSON cannot hold, or "" if there is none."""
    if value is None or isinstance(value, str | int | float | bool):
        return ""
    if isinstance(value, Mapping):
        bad_key = next((k for k in value if not isinstance(k, str | int | float | bool)), None)
        if bad_key is not None:
            return f"{where}[{bad_key!r}] (key type {type(bad_key).__name__})"
        items = [(f"{where}[{k!r}]", v) for k, v in value.items()]
    elif isinstance(value, list | tuple):
        items = [(f"{where}[{i}]", v) for i, v in enumerate(value)]
    else:
        return f"{where} (a {type(value).__name__})"
    return next((bad for path, v in items if (bad := _first_bad_path(v, path))), "")


def _rng_state(generators: Mapping[str, torch.Generator] | None) -> dict[str, Any]:
    """Every RNG state, in types that `torch.load(weights_only=True)` accepts."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generators": {key: gen.get_state() for key, gen in (generators or {}).items()},
    }


def _set_rng_state(state: Mapping[str, Any], generators: Mapping[str, torch.Generator] | None) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    keys = np_state["keys"].numpy().astype(np.uint32)
    np.random.set_state(
        (np_state["name"], keys, np_state["pos"], np_state["has_gauss"], np_state["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        if len(state["cuda"]) != torch.cuda.device_count():
            raise RuntimeError(
                f"checkpoint has CUDA RNG states for {len(state['cuda'])} devices, "
                f"this process sees {torch.cuda.device_count()}: resume with the same devices"
            )
        torch.cuda.set_rng_state_all(state["cuda"])
    for key, gen in (generators or {}).items():
        if key not in state["generators"]:
            raise KeyError(
                f"generator {key!r} is not in the checkpoint (it has {sorted(state['generators'])})"
            )
        gen.set_state(state["generators"][key])


def _torch_load(path: Path) -> Any:
    if not path.exists():
        raise FileNotFoundError(f"checkpoint file {path} is missing")
    return torch.load(path, map_location="cpu", weights_only=True)


def _load_full_weights(model: Any, path: Path) -> None:
    """Copy the checkpoint's weights into `model`, failing on any missing or unexpected key."""
    param = next(model.parameters())
    loaded, info = type(model).from_pretrained(path, dtype=param.dtype, output_loading_info=True)
    problems = {
        k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v
    }
    if problems:
        raise RuntimeError(f"checkpoint {path} does not match the model: {problems}")
    model.load_state_dict(loaded.state_dict(), strict=True)


def _load_adapters(model: Any, path: Path) -> None:
    """Load every adapter of a peft model (peft saves `default` at the root, others in subdirs)."""
    from peft import set_peft_model_state_dict
    from peft.utils import load_peft_weights

    for name in model.peft_config:
        where = path if name == "default" else path / name
        result = set_peft_model_state_dict(model, load_peft_weights(str(where)), adapter_name=name)
        unexpected = getattr(result, "unexpected_keys", [])
        missing = [k for k in getattr(result, "missing_keys", []) if f".{name}." in k]  # base weights aside
        if unexpected or missing:
            raise RuntimeError(
                f"adapter {name!r} in {where} does not match the model: {unexpected or missing}"
            )


def stage_mirror(mirror: str, stage_dir: Path) -> str:
    """The mirror prefix of a stage's checkpoints: `<mirror>/<stage>` (the stage directory's name)."""
    return f"{mirror.rstrip('/')}/{Path(stage_dir).name}"


def mirrored_steps(url: str, client: Any = None) -> list[int]:
    """Steps of the complete checkpoints under a stage's mirror prefix `url`, oldest first."""
    client = client or storage.make_client()
    steps = []
    for name in storage.list_dirs(url, client):
        match = _STEP_RE.match(name)
        if match and storage.exists(f"{url}/{name}/{COMPLETE}", client):
            steps.append(int(match.group(1)))
    return sorted(steps)


def push_checkpoint(path: Path, url: str, keep_last: int, client: Any = None, uploaded: bool = False) -> str:
    """Upload the complete checkpoint `path` to `<url>/<its name>/`, marker last; then prune `url`.

    A leftover of an earlier attempt at the same step is deleted first (marker first). Pruning keeps
    the newest `keep_last` complete checkpoints (0 = all) and drops incomplete ones older than
    `path` (half-uploads of a killed attempt). With `uploaded` (`push_shards`), every file but the
    marker is already there: only the marker goes up, then the pruning. Returns the checkpoint's URL.
    """
    path = Path(path)
    if not (path / COMPLETE).is_file():
        raise FileNotFoundError(f"{path} is not a complete checkpoint (no {COMPLETE} marker): not mirrored")
    match = _STEP_RE.match(path.name)
    if match is None:
        raise ValueError(f"{path.name!r} is not a step checkpoint (step-<n>)")
    client = client or storage.make_client()
    target = f"{url}/{path.name}"
    if uploaded:
        storage.upload_file(path / COMPLETE, f"{target}/{COMPLETE}", client)
    else:
        storage.delete_prefix(target, client, first=[COMPLETE])
        storage.upload_dir(path, target, client, last=[COMPLETE])
    step = int(match.group(1))
    complete = mirrored_steps(url, client)
    stale = set(complete[: max(len(complete) - keep_last, 0)]) if keep_last > 0 else set()
    for name in storage.list_dirs(url, client):
        old = _STEP_RE.match(name)
        if old and int(old.group(1)) != step:
            n = int(old.group(1))
            if n in stale or (n not in complete and n < step):
                storage.delete_prefix(f"{url}/{name}", client, first=[COMPLETE])
    return target


def pull_checkpoint(url: str, stage_dir: Path, client: Any = None) -> Path | None:
    """Download the newest complete checkpoint under `url` into `stage_dir` if it is newer than the
    newest complete local one; returns the downloaded directory, or None when nothing was newer.

    The files land in a hidden directory first and are renamed into place once all are there,
    so a killed download leaves no `step-*` behind.
    """
    client = client or storage.make_client()
    steps = mirrored_steps(url, client)
    local = _complete_steps(Path(stage_dir))
    if not steps or (local and local[-1][0] >= steps[-1]):
        return None
    return pull_step(url, stage_dir, steps[-1], client)


def pull_step(url: str, stage_dir: Path, step: int, client: Any = None) -> Path:
    """Download the mirrored checkpoint of `step` into `<stage_dir>/step-<n>/`, replacing a local
    copy (on node-local scratch, a node's own copy holds only its ranks' files); returns it."""
    client = client or storage.make_client()
    target = step_dir(stage_dir, step)
    tmp = target.parent / f".{target.name}.download"
    shutil.rmtree(tmp, ignore_errors=True)
    storage.download_dir(f"{url}/{target.name}", tmp, client)
    if not (tmp / COMPLETE).is_file():  # deleted while we read (another writer pruning): refuse
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"{url}/{target.name} lost its {COMPLETE} marker during the download")
    shutil.rmtree(target, ignore_errors=True)  # an incomplete local copy of the same step
    os.replace(tmp, target)
    return target


def push_shards(path: Path, url: str, keep_last: int, client: Any = None) -> str:
    """`push_checkpoint` of a checkpoint whose files lie on the ranks' own nodes: a collective.

    Rank 0 clears a leftover of the same step (marker first); every node's writer uploads the
    files of its copy but the marker; once all are up, rank 0 uploads the marker and prunes.
    Returns the checkpoint's URL.
    """
    target = f"{url}/{Path(path).name}"
    writer = distributed.is_writer(Path(path).parent)
    if distributed.is_main():
        client = client or storage.make_client()
        storage.delete_prefix(target, client, first=[COMPLETE])
    distributed.barrier()
    if writer:
        client = client or storage.make_client()
        storage.upload_dir(path, target, client, skip=[COMPLETE])
    distributed.barrier()  # every node's files are up
    if distributed.is_main():
        push_checkpoint(path, url, keep_last, client, uploaded=True)
    return target
