"""Each distinct image of a batch through the vision tower once, whatever number of rows show it.

A GRPO batch shows every prompt's image in G rows. Feeding the processor's repeated
`pixel_values` to the model runs the vision tower G times on the same patches in every forward
(generation prefill, scoring, reference, update) — most of the step on a small language model, and
a large share on a real one (a 675 M-parameter ViT over ~1k patches per image for Qwen2.5-VL).
`SharedImages` keeps the patches of the distinct images and which one each row shows;
`encode` runs the tower on those only and hands each row its image's features, which the model
takes as `mm_encoder_outputs` (transformers' precomputed-encoder input: the same embedding
scatter and M-RoPE positions as from pixels, tested equal). Gradients through shared features
add up over the rows that use them, exactly as with repeated pixels.

Qwen3-VL's tower also returns DeepStack features (one [tokens, hidden] map per chosen vision
block, added to the first decoder layers' hidden states at the image positions). They travel with
the main features as one tensor per image, [1 + D, tokens, hidden] (main first, then the D levels),
so every holder of "an image's features" (generation, packing, the reference forward) carries
them without knowing the architecture; `encoder_inputs` splits them again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from transformers.models.qwen3_vl.modeling_qwen3_vl import BaseModelOutputWithDeepstackFeatures


def row_patches(prompts: Mapping[str, Tensor]) -> list[slice]:
    """Where each row's image lies in `pixel_values` of a one-image-per-row processor batch."""
    grid = prompts["image_grid_thw"]  # [N, 3]
    rows = prompts["input_ids"].shape[0]
    if grid.shape[0] != rows:
        raise ValueError(f"expected one image per row: {grid.shape[0]} images for {rows} rows")
    sizes = grid.prod(dim=-1).tolist()  # patches per image
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    return [slice(start, start + size) for start, size in zip(starts, sizes, strict=True)]


@dataclass
class SharedImages:
    """The distinct images of a batch (one image per row) and the image of each row.

    pixel_values: [patches, D] the distinct images' patches, concatenated in image order
    grid_thw: [N, 3] their (t, h, w) patch grids
    row_image: for each row, the index of its image among the N distinct ones
    """

    pixel_values: Tensor
    grid_thw: Tensor
    row_image: list[int]

    @classmethod
    def select(cls, prompts: Mapping[str, Tensor], rows: Sequence[int]) -> SharedImages:
        """The images of `rows` (repeats allowed) of a one-image-per-row processor batch, each once."""
        patches = row_patches(prompts)
        distinct = list(dict.fromkeys(rows))  # first-seen order
        pixels = [prompts["pixel_values"][patches[i]] for i in distinct]
        return cls(torch.cat(pixels), prompts["image_grid_thw"][distinct], [distinct.index(r) for r in rows])

    def to(self, device: str | torch.device) -> SharedImages:
        return SharedImages(self.pixel_values.to(device), self.grid_thw.to(device), self.row_image)

    def blanked(self) -> SharedImages:
        """The same images with their content removed (each one its mean colour), for vision sensitivity."""
        return SharedImages(blank_patches(self.pixel_values, self.grid_thw), self.grid_thw, self.row_image)

    def encode(self, model: Any) -> tuple[Tensor, ...]:
        """Features of each distinct image, the tower run once per image: [tokens_i, hidden] each,
        or [1 + D, tokens_i, hidden] with D DeepStack levels (Qwen3-VL)."""
        out = model.get_image_features(self.pixel_values, self.grid_thw, return_dict=True)
        deepstack = getattr(out, "deepstack_features", None)
        if not deepstack:
            return tuple(out.pooler_output)
        # per image: its main features, then its map of each DeepStack level, in level order
        return tuple(
            torch.stack([main, *levels]) for main, *levels in zip(out.pooler_output, *deepstack, strict=True)
        )

    def per_row(self, features: Sequence[Tensor]) -> tuple[Tensor, ...]:
        """Each row's image features, from `encode`'s per-image ones."""
        return tuple(features[i] for i in self.row_image)

    def groups(self) -> tuple[list[int], int] | None:
        """(first row of each image, rows per image) when each image's rows are contiguous and
        equally many (a chunk of whole or equal partial GRPO groups), else None."""
        images = len(self.grid_thw)
        size, rest = divmod(len(self.row_image), images)
        if rest or self.row_image != [i for i in range(images) for _ in range(size)]:
            return None
        return [i * size for i in range(images)], size


def blank_patches(pixel_values: Tensor, grid_thw: Tensor) -> Tensor:
    """Every patch of each image replaced by that image's mean patch: a flat image of its mean colour.

    The perturbation of vision-sensitivity token selection (`sayo.rewards.selection`): a token whose
    next-token distribution changes when the image carries no information depends on what it saw.

    Args:
        pixel_values: [patches, D] the processor's patches, images concatenated in order.
        grid_thw: [N, 3] each image's (t, h, w) patch grid.
    """
    sizes = grid_thw.prod(dim=-1).tolist()  # patches per image
    parts = [block.mean(dim=0, keepdim=True).expand_as(block) for block in pixel_values.split(sizes)]
    return torch.cat(parts)  # [patches, D]


def encoder_inputs(features: Sequence[Tensor]) -> dict[str, Any]:
    """Model/generate kwargs that feed precomputed per-row image features instead of pixels.

    `features` as from `SharedImages.encode`: all [tokens_i, hidden], or all [1 + D, tokens_i, hidden]
    (main features and D DeepStack levels). Qwen2.5-VL reads only the main features; Qwen3-VL also
    the (possibly empty) list of levels.
    """
    dims = {f.dim() for f in features}
    if dims == {3}:
        levels = {f.shape[0] for f in features}
        if len(levels) != 1:
            raise ValueError(f"image features with different numbers of DeepStack levels: {sorted(levels)}")
        main = tuple(f[0] for f in features)  # per image [tokens_i, hidden]
        deepstack = [tuple(f[level] for f in features) for level in range(1, levels.pop())]  # D × per image
    elif dims <= {2}:
        main, deepstack = tuple(features), []
    else:
        raise ValueError(
            f"image features must all be [tokens, hidden] or all [1 + D, tokens, hidden], got dims {sorted(dims)}"
        )
    outputs = BaseModelOutputWithDeepstackFeatures(
        pooler_output=main,  # type: ignore[arg-type]  # per image
        deepstack_features=deepstack,  # type: ignore[arg-type]  # per level, per image
    )
    return {"mm_encoder_outputs": {"image": outputs}}


def vision_trains(model: nn.Module) -> bool:
    """Whether any vision-tower parameter takes gradients (False under LoRA or a frozen tower)."""
    return any(p.requires_grad for name, p in model.named_parameters() if ".visual." in f".{name}")
