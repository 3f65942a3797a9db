"""Cost of sayo's attention capture vs. a plain forward and vs. eager `output_attentions=True`.

For each model shape it builds a random-init Qwen2.5-VL model and a prompt (one image + question)
plus a completion of `--completion` tokens, then measures the scoring forward of GRPO three ways:

  plain    SDPA forward, no capture (the baseline)
  sayo     SDPA forward with `AttentionCapture` hooks (last half of the layers, all completion queries)
  eager    eager attention with output_attentions=True (what sayo avoids)

Times are medians over interleaved repeats in one process (the machine is noisy, so only ratios
measured side by side mean anything). Peak memory is measured per variant in a fresh subprocess:
CUDA's max_memory_allocated on a GPU, peak RSS on the CPU, each minus the memory before the
forward; "capture overhead" is a variant's peak minus the plain forward's peak.

Targets (issue #3): sayo adds <= 3 % to the forward; its memory overhead is >= 10x smaller than
eager capture's at 2k-token sequences.

    python benchmarks/attention_capture.py                 # tiny + 3B-shaped (4 layers) on CPU
    python benchmarks/attention_capture.py --full-depth    # the full 3B shape (GPU)
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass

import torch
from PIL import Image

from sayo.attention_capture import AttentionCapture, positions_from_mask
from sayo.data.schema import Sample
from sayo.models import TinySpec, build_tiny
from sayo.models.tiny import tiny_config
from sayo.prompts import build_prompt_batch
from sayo.scoring import completion_logits


@dataclass
class Shape:
    name: str
    text_hidden: int
    text_layers: int
    text_heads: int
    text_kv_heads: int
    text_intermediate: int
    vision_hidden: int
    vision_depth: int
    vision_heads: int
    vision_intermediate: int
    image_side: int  # square image side in pixels (image tokens = (side / 28)^2)
    completion: int  # completion tokens (all are captured queries)
    vocab_size: int | None = None  # None: the tiny tokenizer's vocabulary


def shapes(full_depth: bool, completion: int) -> list[Shape]:
    tiny = Shape("tiny", 192, 4, 6, 2, 512, 128, 2, 4, 256, 224, 64)
    depth, vision_depth = (36, 32) if full_depth else (4, 2)
    # Qwen2.5-VL-3B: text 2048 wide, 16 heads / 2 KV heads, MLP 11008; vision 1280 wide, 16 heads
    # At reduced depth the 152k-token LM head would be a third of the forward and flatter the
    # ratio, so the reduced model keeps the small vocabulary (conservative); full depth uses 151936.
    qwen3b = Shape(
        f"qwen2.5-vl-3b-shape ({depth} layers)",
        2048,
        depth,
        16,
        2,
        11008,
        1280,
        vision_depth,
        16,
        3420,
        896,
        completion,
        151936 if full_depth else None,
    )
    return [tiny, qwen3b]


def build(shape: Shape, device: str, attn: str) -> tuple[torch.nn.Module, dict, torch.Tensor, torch.Tensor]:
    spec = TinySpec(
        text_hidden=shape.text_hidden,
        text_layers=shape.text_layers,
        text_heads=shape.text_heads,
        text_kv_heads=shape.text_kv_heads,
        text_intermediate=shape.text_intermediate,
        vision_hidden=shape.vision_hidden,
        vision_depth=shape.vision_depth,
        vision_heads=shape.vision_heads,
        vision_intermediate=shape.vision_intermediate,
        max_pixels=28 * 28 * 4096,
        mrope_section=_mrope(shape.text_hidden // shape.text_heads),
    )
    _, processor = build_tiny(TinySpec(max_pixels=spec.max_pixels))  # processor; the model is built below
    config = tiny_config(spec, processor.tokenizer)
    if shape.vocab_size:
        config.text_config.vocab_size = shape.vocab_size
    config.text_config._attn_implementation = attn
    config._attn_implementation = attn
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    from transformers import Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration(config).to(dtype).eval()
    model.set_attn_implementation(attn)
    sample = Sample(id="bench", image="-", question="What is the value of bar C?", answer="7")
    image = Image.new("RGB", (shape.image_side, shape.image_side), "white")
    prompts = build_prompt_batch(processor, [sample], [image]).to(device)
    completion_ids = torch.randint(100, 600, (1, shape.completion), device=device)
    return model, dict(prompts), completion_ids, torch.ones_like(completion_ids, dtype=torch.bool)


def _mrope(head_dim: int) -> list[int]:
    half = head_dim // 2
    return [half - 2 * (3 * half // 8), 3 * half // 8, 3 * half // 8]


def variant_fn(variant: str, model, prompts, ids, mask):
    if variant in ("plain", "eager_model_plain"):
        return lambda: completion_logits(model, prompts, ids, mask)
    if variant == "eager":

        def eager():
            inputs = dict(prompts)
            inputs["input_ids"] = torch.cat([prompts["input_ids"], ids], 1)
            inputs["attention_mask"] = torch.cat([prompts["attention_mask"], mask.long()], 1)
            inputs["mm_token_type_ids"] = torch.cat([prompts["mm_token_type_ids"], torch.zeros_like(ids)], 1)
            return model(**inputs, output_attentions=True, logits_to_keep=ids.shape[1] + 1)

        return eager
    capture = AttentionCapture(model, layers="last_half")
    prompt_len = prompts["input_ids"].shape[1]
    key_index, _ = positions_from_mask(prompts["input_ids"] == model.config.image_token_id)
    query_index = (prompt_len - 1 + torch.arange(ids.shape[1], device=ids.device))[None]
    attention_mask = torch.cat([prompts["attention_mask"], mask.long()], 1)

    def sayo():
        start = time.perf_counter()
        with capture.record(query_index, key_index, attention_mask) as request:
            out = completion_logits(model, prompts, ids, mask)
        result = capture.result(request)
        _sync(ids.device.type)
        HOOK_SHARE.append(request.seconds / (time.perf_counter() - start))
        return out, result

    return sayo


RSS_FLOOR = 8 * 2**20  # bytes: below this, peak-RSS differences are noise
HOOK_SHARE: list[float] = []  # per sayo forward: time inside the capture hooks / forward time (CPU)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_variants(shape: Shape, device: str, repeats: int) -> dict[str, float | int]:
    """Median seconds of plain vs sayo (same SDPA model), and eager on its own eager copy."""
    model, prompts, ids, mask = build(shape, device, "sdpa")
    fns = {
        "plain": variant_fn("plain", model, prompts, ids, mask),
        "sayo": variant_fn("sayo", model, prompts, ids, mask),
    }
    eager_model, *_ = build(shape, device, "eager")
    fns["eager"] = variant_fn("eager", eager_model, prompts, ids, mask)
    times: dict[str, list[float]] = {k: [] for k in fns}
    with torch.no_grad():
        for fn in fns.values():  # warm-up
            fn()
        for _ in range(repeats):
            for name, fn in fns.items():  # interleaved, so drift hits every variant alike
                _sync(device)
                start = time.perf_counter()
                fn()
                _sync(device)
                times[name].append(time.perf_counter() - start)
    medians = {k: statistics.median(v) for k, v in times.items()}
    medians["hook_share"] = statistics.median(HOOK_SHARE[1:])  # skip the warm-up
    HOOK_SHARE.clear()
    return {**medians, "seq_len": prompts["input_ids"].shape[1] + ids.shape[1]}


def peak_memory(shape: Shape, device: str, variant: str) -> float:
    """Bytes above the pre-forward level at the peak of one forward (run in this process)."""
    model, prompts, ids, mask = build(shape, device, "eager" if variant == "eager" else "sdpa")
    fn = variant_fn(variant, model, prompts, ids, mask)
    with torch.no_grad():
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            out = fn()
            torch.cuda.synchronize()
            del out
            return float(torch.cuda.max_memory_allocated() - before)
        before = _rss_bytes()
        with PeakRSS() as peak:
            out = fn()
            del out
        return float(peak.value - before)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


class PeakRSS:
    """Peak resident memory while the block runs, sampled every millisecond by a thread.

    (`ru_maxrss` is a lifetime maximum, so model construction would hide the forward's peak.)
    Large tensors are mmap-backed and returned on free, so RSS follows the live tensors.
    """

    def __enter__(self) -> PeakRSS:
        self.value = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(0.001):
            self.value = max(self.value, _rss_bytes())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.value = max(self.value, _rss_bytes())


def memory_in_subprocess(shape: Shape, device: str, variant: str) -> float:
    cmd = [
        sys.executable,
        __file__,
        "--_memory",
        json.dumps({"shape": asdict(shape), "device": device, "variant": variant}),
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def report(shape: Shape, device: str, repeats: int) -> dict:
    times = time_variants(shape, device, repeats)
    memory = {v: memory_in_subprocess(shape, device, v) for v in ("plain", "sayo", "eager")}
    sayo_extra = max(memory["sayo"] - memory["plain"], 0.0)
    eager_extra = max(memory["eager"] - memory["plain"], 0.0)
    row = {
        "shape": shape.name,
        "device": device,
        "seq_len": times.pop("seq_len"),
        "time_plain_s": times["plain"],
        "time_sayo_s": times["sayo"],
        "time_eager_s": times["eager"],
        "sayo_time_overhead": times["sayo"] / times["plain"] - 1,
        # robust to machine noise: measured inside the same forward (CPU only; GPU kernels are async)
        "sayo_hook_share": times["hook_share"] if device == "cpu" else None,
        "eager_time_overhead": times["eager"] / times["plain"] - 1,
        "peak_plain_mb": memory["plain"] / 2**20,
        "peak_sayo_mb": memory["sayo"] / 2**20,
        "peak_eager_mb": memory["eager"] / 2**20,
        "capture_mem_sayo_mb": sayo_extra / 2**20,
        "capture_mem_eager_mb": eager_extra / 2**20,
        # RSS cannot resolve less than ~8 MiB: sayo's overhead is floored there, so on the CPU the
        # ratio is a lower bound ("at least"); no ratio is claimed when eager's is below it too
        "eager_over_sayo_capture_mem": eager_extra / max(sayo_extra, RSS_FLOOR)
        if eager_extra > RSS_FLOOR
        else None,
        "ratio_is_lower_bound": device == "cpu" and sayo_extra < RSS_FLOOR,
    }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--completion", type=int, default=1024, help="completion tokens of the 3B-shaped run")
    parser.add_argument(
        "--full-depth", action="store_true", help="all 36 text / 32 vision layers of the 3B shape"
    )
    parser.add_argument("--only", default=None, help="run only the shape whose name starts with this")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--_memory", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._memory:
        job = json.loads(args._memory)
        print(peak_memory(Shape(**job["shape"]), job["device"], job["variant"]))
        return
    rows = [
        report(s, args.device, args.repeats)
        for s in shapes(args.full_depth, args.completion)
        if args.only is None or s.name.startswith(args.only)
    ]
    for r in rows:
        print(f"\n== {r['shape']} on {r['device']} (sequence {r['seq_len']} tokens)")
        print(
            f"forward time   plain {r['time_plain_s']:.3f}s | sayo {r['time_sayo_s']:.3f}s "
            f"({r['sayo_time_overhead']:+.1%}) | eager+output_attentions {r['time_eager_s']:.3f}s "
            f"({r['eager_time_overhead']:+.1%})"
        )
        if r["sayo_hook_share"] is not None:
            print(
                f"capture share  {r['sayo_hook_share']:.1%} of the sayo forward is spent inside the capture hooks"
            )
        print(
            f"peak memory    plain {r['peak_plain_mb']:.0f} MiB | sayo {r['peak_sayo_mb']:.0f} MiB | "
            f"eager {r['peak_eager_mb']:.0f} MiB"
        )
        ratio = r["eager_over_sayo_capture_mem"]
        verdict = "n/a (both below what RSS resolves)"
        if ratio is not None:
            verdict = (
                f">= {ratio:.0f}x (sayo's below what RSS resolves)"
                if r["ratio_is_lower_bound"]
                else f"{ratio:.1f}x"
            )
        print(
            f"capture memory sayo +{r['capture_mem_sayo_mb']:.0f} MiB | eager +{r['capture_mem_eager_mb']:.0f} MiB "
            f"-> eager/sayo = {verdict}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
