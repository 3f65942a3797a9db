"""GRPO under DeepSpeed on a GPU with a Qwen2.5-VL-3B-shaped model: tokens/s, peak memory, MFU.

The issue's GPU check. A randomly initialised model with Qwen2.5-VL-3B-Instruct's shape (text:
2048 wide, 36 layers, 16 heads / 2 KV heads, MLP 11008, vocabulary 151,936; vision: 32 blocks of
1280, full attention in blocks 7/15/23/31) is saved once with `save_pretrained` and trained through
sayo's own path (`load_trainable_policy` → DeepSpeed ZeRO-2/3 → `grpo_step`) on the synthetic
grounded set at the chosen image size, with the region-attention reward on. No download: the
tokenizer is sayo's offline one (its ids are valid in the larger vocabulary).

Reported per measured step (medians): step time, rollouts/s, completion tokens/s, the update's
time and its MFU = 6 · N · (tokens the update forward sees) / (update time · peak bf16 FLOP/s),
attention FLOPs left out (the usual approximation, so MFU is slightly understated); peak GPU memory
(`torch.cuda.max_memory_allocated`) over the run.

    python benchmarks/grpo_gpu.py                       # one GPU, ZeRO-2, 3B shape, full fine-tuning
    python benchmarks/grpo_gpu.py --lora                # LoRA on the language model (fits one 80 GB GPU)
    python benchmarks/grpo_gpu.py --zero 3 --steps 5
    torchrun --nproc-per-node 8 benchmarks/grpo_gpu.py  # data-parallel over 8 GPUs
    python benchmarks/grpo_gpu.py --shape tiny --steps 1   # CPU smoke run (DeepSpeed on gloo)

Memory: full fine-tuning of 3.75 B parameters with AdamW under bf16 holds ~67 GB of states on one
GPU before activations (bf16 weights + grads 15 GB, fp32 master weights and two moments 45 GB,
the frozen bf16 reference 7.5 GB): use one H200, ZeRO-2/3 over several GPUs, or `--lora` (then
the update's FLOPs are counted as 4·N·tokens: frozen weights get no weight gradients).

Results: benchmarks/results/ (none yet: no GPU has been lent to a session that could record them).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "H800": 989.0, "A100": 312.0, "L40S": 362.0}

SHAPES: dict[str, dict[str, Any]] = {
    "3b": {
        "spec": {
            "text_hidden": 2048,
            "text_layers": 36,
            "text_heads": 16,
            "text_kv_heads": 2,
            "text_intermediate": 11008,
            "vision_hidden": 1280,
            "vision_depth": 32,
            "vision_heads": 16,
            "vision_intermediate": 3420,
            "mrope_section": [16, 24, 24],
        },
        "vocab": 151936,
        "fullatt": [7, 15, 23, 31],
    },
    "tiny": {"spec": {}, "vocab": None, "fullatt": None},
}


def single_process_env() -> None:
    """Rank/world variables for a plain `python` launch (torchrun sets them itself)."""
    if "RANK" in os.environ:
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    os.environ.update(
        {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "RANK": "0",
            "WORLD_SIZE": "1",
            "LOCAL_RANK": "0",
        }
    )


def save_model(shape: str, out: Path, image_size: int) -> Path:
    """A random-init model of `shape` with sayo's offline processor, saved under `out`."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    from sayo.models.processor import ImageOnlyQwen2_5_VLProcessor, make_image_processor
    from sayo.models.tiny import TinySpec, tiny_config
    from sayo.models.tokenizer import build_tokenizer

    shaped = SHAPES[shape]
    pixels = image_size * image_size
    spec = TinySpec(**shaped["spec"], min_pixels=28 * 28 * 4, max_pixels=max(pixels, 28 * 28 * 4))
    tokenizer = build_tokenizer(spec.vocab_size)
    processor = ImageOnlyQwen2_5_VLProcessor(
        make_image_processor(size={"shortest_edge": spec.min_pixels, "longest_edge": spec.max_pixels}),
        tokenizer,
        chat_template=tokenizer.chat_template,
    )
    config = tiny_config(spec, tokenizer)
    if shaped["vocab"]:
        config.text_config.vocab_size = shaped["vocab"]
    if shaped["fullatt"]:
        config.vision_config.fullatt_block_indexes = shaped["fullatt"]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype)
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    processor.save_pretrained(out)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return out


def build_data(out: Path, image_size: int, samples: int) -> Path:
    from sayo.data.build import build
    from sayo.recipe import load_recipe

    overrides = [
        f"data.path={out}",
        f"data.synthetic.num_samples={samples}",
        f"data.synthetic.image_size=[{image_size}, {image_size}]",
    ]
    build(load_recipe("tiny", overrides).data, progress=False)
    return out


def update_tokens(chunks: list[Any]) -> int:
    """Tokens the update's forward runs on (packed groups, or one row per rollout)."""
    total = 0
    for chunk in chunks:
        if chunk.packed is not None:
            total += chunk.packed.inputs["input_ids"].numel()
        else:
            sampled = chunk.sampled
            total += sampled.prompt.prompts["input_ids"].numel() + sampled.completion_ids.numel()
    return total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shape", choices=sorted(SHAPES), default="3b")
    parser.add_argument("--zero", type=int, choices=[2, 3], default=2)
    parser.add_argument("--steps", type=int, default=4, help="measured steps (after 1 warm-up)")
    parser.add_argument("--prompts", type=int, default=2, help="prompts per step per GPU")
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument(
        "--image-size", type=int, default=448, help="square synthetic images (448: 256 visual tokens)"
    )
    parser.add_argument("--no-gradient-checkpointing", action="store_true")
    parser.add_argument("--lora", action="store_true", help="LoRA adapters instead of full fine-tuning")
    parser.add_argument(
        "--peak-tflops", type=float, default=None, help="bf16 dense peak (default: by GPU name)"
    )
    args = parser.parse_args()

    single_process_env()
    cuda = torch.cuda.is_available()
    if not cuda:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    from sayo.recipe import load_recipe
    from sayo.train import distributed
    from sayo.train import grpo as grpo_module

    # one work directory per node and launch (the ranks of a node share it; MASTER_PORT tells launches apart)
    work = Path(tempfile.gettempdir()) / f"sayo-grpo-gpu-{os.environ['MASTER_PORT']}"
    try:
        if int(os.environ["LOCAL_RANK"]) == 0:
            work.mkdir(parents=True, exist_ok=True)
            save_model(args.shape, work / "model", args.image_size)
            build_data(work / "data", args.image_size, 64 * int(os.environ["WORLD_SIZE"]))
        else:  # the node's other ranks wait for its files (there is no process group yet)
            while not (work / "data" / "stats.json").exists():
                time.sleep(1)
        rows = args.prompts * args.group_size
        cfg = load_recipe(
            "tiny",
            [
                f"model.name_or_path={work / 'model'}",
                f"model.gradient_checkpointing={str(not args.no_gradient_checkpointing).lower()}",
                f"data.path={work / 'data'}",
                f"checkpoint.dir={work / 'ckpt'}",
                "checkpoint.every=0",
                "tracking.enabled=false",
                "grpo.init_from=model",
                f"grpo.max_steps={args.steps + 1}",
                f"grpo.prompts_per_step={args.prompts}",
                f"grpo.group_size={args.group_size}",
                f"grpo.micro_batch_size={rows}",
                f"grpo.max_new_tokens={args.max_new_tokens}",
                "grpo.probe_every=0",
                f"deepspeed.config=zero{args.zero}",
                f"model.lora.enabled={str(args.lora).lower()}",
            ],
        )
        session = grpo_module._setup(cfg)
        model = session.policy.model
        params = sum(
            int(getattr(p, "ds_numel", p.numel())) for p in model.parameters()
        )  # ZeRO-3: whole sizes
        timings: list[tuple[float, int]] = []  # (update seconds, tokens the update saw) per step
        real_update = grpo_module.update

        def timed_update(engine: Any, chunks: list[Any], advantages: Any, config: Any) -> dict:
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            out = real_update(engine, chunks, advantages, config)
            if cuda:
                torch.cuda.synchronize()
            timings.append((time.perf_counter() - start, update_tokens(chunks)))
            return out

        grpo_module.update = timed_update
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        steps = []
        for _ in range(args.steps + 1):
            metrics, _ = grpo_module.grpo_step(
                session.policy, session.data, session.sampler, cfg, session.capture, session.reference
            )
            steps.append(metrics)
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
        name = torch.cuda.get_device_name() if cuda else "cpu"
        peak_tflops = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
        measured, updates = steps[1:], timings[1:]
        step_s = statistics.median(m["step_time_s"] for m in measured)
        update_s = statistics.median(u[0] for u in updates)
        per_token = 4 if args.lora else 6  # forward 2N + backward 4N (2N without weight gradients)
        flops = statistics.median(per_token * params * u[1] / u[0] for u in updates)
        mfu = flops / (peak_tflops * 1e12) if peak_tflops and cuda else float("nan")
        world = distributed.world_size()
        if distributed.is_main():
            print(
                f"\n== GRPO on {name} × {world}, {args.shape} shape ({params / 1e9:.2f} B params), "
                f"ZeRO-{args.zero}, {'LoRA' if args.lora else 'full fine-tuning'}"
            )
            print(
                f"per GPU: {args.prompts} prompts × G={args.group_size}, max_new_tokens={args.max_new_tokens}, "
                f"{args.image_size}px images, gradient checkpointing {'off' if args.no_gradient_checkpointing else 'on'}, "
                f"region-attention reward on; medians of {args.steps} steps after 1 warm-up"
            )
            print(
                f"step time            {step_s:8.2f} s   (generation {statistics.median(m['generation_time_s'] for m in measured):.2f} s)"
            )
            print(f"rollouts/s (all GPUs) {world * rows / step_s:8.2f}")
            print(
                f"completion tokens/s   {statistics.median(m['tokens_per_s'] for m in measured) * world:8.1f}  (all GPUs)"
            )
            print(
                f"update               {update_s:8.2f} s for {statistics.median(u[1] for u in updates):.0f} tokens per GPU"
            )
            print(
                f"update MFU           {mfu:8.1%}   ({flops / 1e12:.1f} TFLOP/s per GPU, {per_token}·N·tokens; peak {peak_tflops} TFLOP/s)"
            )
            print(f"peak GPU memory      {peak:8.1f} GiB")
        distributed.barrier()
    finally:
        if int(os.environ["LOCAL_RANK"]) == 0:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
