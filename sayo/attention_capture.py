"""Cheap capture of where response tokens look in the image.

The region-attention reward (docs/method.md, "The attention reward") needs, for each selected response
token t, its attention A_t(k) over the image-token keys k, averaged over heads and chosen layers.
`output_attentions=True` (eager attention) materialises L·H·S² probabilities and gives up the
fast kernel. Instead, while the model runs its own SDPA/flash forward, hooks on the chosen layers
keep the already computed queries and keys as they enter the rotary embedding — the `q_proj` /
`k_proj` outputs (Qwen2.5-VL), or the `q_norm` / `k_norm` outputs where the layer RMS-normalises
each head after projecting (Qwen3-VL) — and the model's rotary (cos, sin). No projection or norm is
recomputed and no parameter is read again (so it also works under ZeRO-3 and with LoRA wrappers on
the projections); softmax(q·Kᵀ/√d) is recomputed for only the requested queries, in chunks, in
float32 (float64 for a float64 model).

The softmax is normalised over every key the model itself attends to (causal and padding mask),
so the values equal the model's attention weights (tested against eager attention), not a
softmax renormalised over image keys. [ours] Layer reduction is the mean; head reduction is
`mean` (default) or `max`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from sayo.logprobs import upcast

HeadReduce = Literal["mean", "max"]
LayerSpec = str | int | Sequence[int]


def resolve_layers(layers: LayerSpec, num_layers: int) -> list[int]:
    """Decoder layer indices from a spec.

    Args:
        layers: `"last_half"` (the default), `"last"` (the last layer, the authors' choice), `"all"`,
            an int k (the last k layers), or a list of indices (negative ones count from the end).
        num_layers: decoder depth.
    """
    if layers == "last_half":
        return list(range(num_layers // 2, num_layers))
    if layers == "last":
        return [num_layers - 1]
    if layers == "all":
        return list(range(num_layers))
    if isinstance(layers, int) and not isinstance(layers, bool):
        if not 1 <= layers <= num_layers:
            raise ValueError(f"layers={layers}: 'last k' needs 1 <= k <= {num_layers}")
        return list(range(num_layers - layers, num_layers))
    if isinstance(layers, (str, bool)) or not isinstance(layers, Sequence):
        raise ValueError(
            f"layers={layers!r}: expected 'last_half', 'last', 'all', an int k or a list of indices"
        )
    resolved = sorted({_layer_index(i, num_layers) for i in layers})
    if not resolved:
        raise ValueError("layers=[]: choose at least one decoder layer")
    return resolved


def _layer_index(index: object, num_layers: int) -> int:
    if not isinstance(index, int) or isinstance(index, bool) or not -num_layers <= index < num_layers:
        raise ValueError(f"layer index {index!r} is out of range for a {num_layers}-layer decoder")
    return index % num_layers


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The language decoder's layers of a (possibly PEFT-wrapped) HF multimodal model."""
    base: Any = model.get_base_model() if hasattr(model, "get_base_model") else model  # type: ignore[operator]
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else base
    layers = getattr(decoder, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise TypeError(f"{type(base).__name__}: cannot find the decoder layers (no .get_decoder().layers)")
    return layers


def positions_from_mask(mask: Tensor) -> tuple[Tensor, Tensor]:
    """Padded position indices of the True entries of each row.

    Args:
        mask: [B, S] bool.
    Returns:
        `(index, valid)`, both [B, N] with N the largest row count; padding entries of `index`
        point at position 0 and are False in `valid`.
    """
    counts = mask.sum(dim=1)  # [B]
    width = int(counts.max().item()) if mask.numel() else 0
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)  # True positions first, in order
    index = order[:, :width]  # [B, N]
    valid = torch.arange(width, device=mask.device)[None, :] < counts[:, None]  # [B, N]
    return index.masked_fill(~valid, 0), valid


def _rotate_half(x: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotary embedding with per-position cos/sin. x: [B, H, N, d]; cos, sin: [B, N, d]."""
    return x * cos.unsqueeze(1) + _rotate_half(x) * sin.unsqueeze(1)


def _query_key_modules(attn: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The submodules whose outputs are the layer's queries and keys right before the rotary:
    the per-head norms where the layer has them (Qwen3-VL's `q_norm`/`k_norm`), else the projections."""
    names = (
        ("q_norm", "k_norm") if hasattr(attn, "q_norm") and hasattr(attn, "k_norm") else ("q_proj", "k_proj")
    )
    return attn.get_submodule(names[0]), attn.get_submodule(names[1])


@dataclass
class _Chunk:
    """A block of queries and the additive mask of the keys they see (shared by all layers)."""

    query_index: Tensor  # [B, q]
    bias: Tensor  # [B, 1, 1, q, S]: 0 where the key is visible (causal and not padding), -inf elsewhere


@dataclass
class CaptureRequest:
    """One forward's capture: which queries and keys, and the running sum over layers.

    query_index: [B, Q] positions of the query tokens (padding entries may hold any valid position).
    key_index: [B, K] positions of the keys of interest (the image tokens), padded likewise.
    """

    query_index: Tensor
    key_index: Tensor
    chunks: list[_Chunk]
    layers_seen: list[int] = field(default_factory=list)
    total: Tensor | None = None  # [B, Q, K] running sum over layers
    seconds: float = 0.0  # wall time spent inside the capture hooks (exact on CPU; launch time on GPU)


def _chunks(
    query_index: Tensor, attention_mask: Tensor | None, size: int, visible_keys: Tensor | None = None
) -> list[_Chunk]:
    chunks = []
    for start in range(0, query_index.shape[1], size):
        qidx = query_index[:, start : start + size]  # [B, q]
        if visible_keys is not None:  # the model's own query × key mask
            visible = visible_keys.gather(1, qidx[:, :, None].expand(-1, -1, visible_keys.shape[2]))
        else:  # causal and padding
            assert attention_mask is not None
            positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)  # [S]
            visible = attention_mask.bool()[:, None, :] & (
                positions[None, None, :] <= qidx[:, :, None]
            )  # [B, q, S]
        bias = torch.zeros(visible.shape, device=visible.device).masked_fill_(~visible, float("-inf"))
        chunks.append(_Chunk(qidx, bias[:, None, None]))  # [B, 1, 1, q, S]
    return chunks


class AttentionCapture:
    """Hooks that record attention of chosen queries over chosen keys during a normal forward.

    Usage:
        capture = AttentionCapture(model, layers="last_half")
        with torch.no_grad(), capture.record(query_index, key_index, attention_mask) as request:
            model(**batch)
        attention = capture.result(request)  # [B, Q, K], mean over layers, heads reduced

    The recomputed attention carries no gradient unless `differentiable=True` (and grad is enabled
    around the forward): then it stays on the forward's graph, for a loss on where tokens look
    (`sft.attention_loss`, docs/method.md, "SFT warm-up").
    """

    def __init__(
        self,
        model: nn.Module,
        layers: LayerSpec = "last_half",
        head_reduce: HeadReduce = "mean",
        query_chunk: int = 64,
        differentiable: bool = False,
    ) -> None:
        if head_reduce not in ("mean", "max"):
            raise ValueError(f"head_reduce={head_reduce!r}: expected 'mean' or 'max'")
        if query_chunk < 1:
            raise ValueError(f"query_chunk={query_chunk} must be >= 1")
        all_layers = decoder_layers(model)
        self.layer_indices = resolve_layers(layers, len(all_layers))
        self.attn_modules: list[nn.Module] = [
            all_layers[i].get_submodule("self_attn") for i in self.layer_indices
        ]
        self.head_reduce = head_reduce
        self.query_chunk = query_chunk
        self.differentiable = differentiable

    @contextmanager
    def record(
        self,
        query_index: Tensor,
        key_index: Tensor,
        attention_mask: Tensor | None,
        visible_keys: Tensor | None = None,
    ) -> Iterator[CaptureRequest]:
        """Install the hooks for one forward; they are removed on exit, even on error.

        Args:
            query_index: [B, Q] sequence positions of the queries.
            key_index: [B, K] sequence positions of the keys to report (image tokens).
            attention_mask: [B, S] the 2-D padding mask given to the model (1 = real token); the
                model attends causally within it.
            visible_keys: instead of `attention_mask`, the [B, S, S] query × key mask the model was
                given (e.g. `sayo.packing`'s block mask).
        """
        if query_index.dim() != 2 or key_index.dim() != 2:
            raise ValueError("query_index and key_index must be 2-D [B, ·] tensors")
        if (attention_mask is None) == (visible_keys is None):
            raise ValueError("give exactly one of attention_mask [B, S] and visible_keys [B, S, S]")
        if attention_mask is not None and attention_mask.dim() != 2:
            raise ValueError(f"attention_mask must be 2-D [B, S], got {tuple(attention_mask.shape)}")
        if visible_keys is not None and visible_keys.dim() != 3:
            raise ValueError(f"visible_keys must be 3-D [B, S, S], got {tuple(visible_keys.shape)}")
        query_index = query_index.long()
        chunks = _chunks(query_index, attention_mask, self.query_chunk, visible_keys)
        request = CaptureRequest(query_index, key_index.long(), chunks)
        handles = []
        try:
            for layer_idx, attn in zip(self.layer_indices, self.attn_modules, strict=True):
                handles += self._install(layer_idx, attn, request)
            yield request
        finally:
            for handle in handles:
                handle.remove()

    def result(self, request: CaptureRequest) -> Tensor:
        """[B, Q, K] attention, averaged over the captured layers."""
        if request.total is None or len(request.layers_seen) != len(self.layer_indices):
            raise RuntimeError(
                f"captured layers {request.layers_seen} != requested {self.layer_indices}: "
                "run exactly one model forward inside `record()`"
            )
        return request.total / len(self.layer_indices)

    def _install(self, layer_idx: int, attn: nn.Module, request: CaptureRequest) -> list[Any]:
        stash: dict[str, Any] = {}

        def keep_rope(_module: nn.Module, _args: tuple, kwargs: dict) -> None:
            stash["rope"] = kwargs["position_embeddings"]

        def keep(name: str) -> Any:
            def hook(_module: nn.Module, _args: tuple, output: Tensor) -> None:
                stash[name] = output

            return hook

        def compute(module: nn.Module, _args: tuple, _output: Any) -> None:
            start = time.perf_counter()
            cos, sin = stash.pop("rope")
            with torch.set_grad_enabled(self.differentiable and torch.is_grad_enabled()):
                probs = self._layer(module, stash.pop("q"), stash.pop("k"), cos, sin, request)
            request.total = probs if request.total is None else request.total + probs
            request.layers_seen.append(layer_idx)
            request.seconds += time.perf_counter() - start

        q_module, k_module = _query_key_modules(attn)
        return [
            attn.register_forward_pre_hook(keep_rope, with_kwargs=True),
            q_module.register_forward_hook(keep("q")),
            k_module.register_forward_hook(keep("k")),
            attn.register_forward_hook(compute),
        ]

    def _layer(
        self,
        module: nn.Module,
        q_out: Tensor,
        k_out: Tensor,
        cos: Tensor,
        sin: Tensor,
        request: CaptureRequest,
    ) -> Tensor:
        """Attention probabilities [B, Q, K] of one layer, heads reduced.

        q_out, k_out: the kept queries/keys, [B, S, H·d] (projections) or [B, S, H, d] (per-head norms).
        """
        bsz, seq = k_out.shape[:2]
        head_dim = int(getattr(module, "head_dim"))  # noqa: B009 - nn.Module attributes are untyped
        scaling = float(getattr(module, "scaling"))  # noqa: B009
        keys = k_out.reshape(bsz, seq, -1, head_dim).transpose(1, 2)  # [B, Hkv, S, d]
        keys = upcast(_rope(keys, cos, sin))  # [B, Hkv, S, d]; a softmax in bf16 would be too coarse
        queries = q_out.reshape(bsz, seq, -1, head_dim)  # [B, S, H, d]
        parts = [
            self._chunk(queries, keys, cos, sin, chunk, request.key_index, scaling)
            for chunk in request.chunks
        ]
        return torch.cat(parts, dim=1)  # [B, Q, K]

    def _chunk(
        self,
        queries: Tensor,
        keys: Tensor,
        cos: Tensor,
        sin: Tensor,
        chunk: _Chunk,
        kidx: Tensor,
        scaling: float,
    ) -> Tensor:
        bsz, nq = chunk.query_index.shape
        n_kv, head_dim = keys.shape[1], keys.shape[-1]
        at = chunk.query_index[:, :, None]  # [B, q, 1]
        q = queries.gather(1, at[..., None].expand(-1, -1, *queries.shape[2:]))  # [B, q, H, d]
        q_cos = cos.gather(1, at.expand(-1, -1, cos.shape[-1]))  # [B, q, d]
        q_sin = sin.gather(1, at.expand(-1, -1, sin.shape[-1]))  # [B, q, d]
        q = _rope(q.transpose(1, 2), q_cos, q_sin).to(keys.dtype) * scaling  # [B, H, q, d], scaled: q·k/√d
        q = q.view(bsz, n_kv, -1, nq, head_dim)  # [B, Hkv, rep, q, d]: head h uses kv head h // rep
        # Few passes over the [·, q, S] block: matmul, in-place mask, one fused softmax, then a gather.
        logits = torch.matmul(q.flatten(2, 3), keys.transpose(-1, -2))  # [B, Hkv, rep*q, S]: one bmm
        logits = logits.view(bsz, n_kv, -1, nq, keys.shape[2]).add_(chunk.bias)  # [B, Hkv, rep, q, S]
        weights = torch.softmax(logits, dim=-1)  # [B, Hkv, rep, q, S]
        k_gather = kidx[:, None, None, None, :].expand(
            -1, n_kv, weights.shape[2], nq, -1
        )  # [B, Hkv, rep, q, K]
        probs = weights.gather(-1, k_gather)  # [B, Hkv, rep, q, K]
        probs = probs.nan_to_num(0.0).flatten(1, 2)  # [B, H, q, K]; a query that sees no key has no attention
        return probs.mean(dim=1) if self.head_reduce == "mean" else probs.amax(dim=1)  # [B, q, K]
