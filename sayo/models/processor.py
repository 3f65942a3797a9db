"""Processors that work with or without torchvision.

transformers 5's default (fast) Qwen2-VL image processor and the Qwen2.5-VL / Qwen3-VL video
processors need torchvision, which is not importable beside every torch build (CPU wheels in
particular). The image pipeline is the same either way, so when torchvision is missing we use the
PIL-backed image processor and an image-only `Qwen2_5_VLProcessor` or `Qwen3VLProcessor` (picked
from the checkpoint's `model_type`). Both produce identical `pixel_values` and `image_grid_thw` (the
resize is the same `smart_resize`), so nothing downstream can tell. Qwen3-VL uses the same image
processor class as Qwen2.5-VL, configured with 16-px patches (32-px merged cells) instead of 14.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import AutoConfig, AutoTokenizer, ProcessorMixin
from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor
from transformers.utils import is_torchvision_available

QWEN3_VL_TYPES = ("qwen3_vl", "qwen3_vl_moe")  # config `model_type`s whose processor is Qwen3VLProcessor


class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
    """`Qwen2_5_VLProcessor` without a video processor (so it needs no torchvision)."""

    def __init__(
        self, image_processor: Any = None, tokenizer: Any = None, chat_template: str | None = None, **_: Any
    ):
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    def to_dict(self) -> dict[str, Any]:
        """Save as a plain `Qwen2_5_VLProcessor`, so `AutoProcessor` loads it where torchvision exists."""
        data = super().to_dict()
        data["processor_class"] = Qwen2_5_VLProcessor.__name__
        return data


class ImageOnlyQwen3VLProcessor(Qwen3VLProcessor):
    """`Qwen3VLProcessor` without a video processor (so it needs no torchvision)."""

    def __init__(
        self, image_processor: Any = None, tokenizer: Any = None, chat_template: str | None = None, **_: Any
    ):
        ids = tokenizer.convert_tokens_to_ids
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.vision_start_token = getattr(tokenizer, "vision_start_token", None) or "<|vision_start|>"
        self.vision_end_token = getattr(tokenizer, "vision_end_token", None) or "<|vision_end|>"
        self.image_token_id = ids(self.image_token)
        self.video_token_id = ids(self.video_token)
        self.vision_start_token_id = ids(self.vision_start_token)
        self.vision_end_token_id = ids(self.vision_end_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    def to_dict(self) -> dict[str, Any]:
        """Save as a plain `Qwen3VLProcessor`, so `AutoProcessor` loads it where torchvision exists."""
        data = super().to_dict()
        data["processor_class"] = Qwen3VLProcessor.__name__
        return data


def make_image_processor(**kwargs: Any) -> Any:
    """A Qwen2-VL image processor: the fast one when torchvision imports, else the PIL one."""
    if is_torchvision_available():
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

        return Qwen2VLImageProcessor(**kwargs)
    return Qwen2VLImageProcessorPil(**kwargs)


def load_processor(name_or_path: str | Path, *, local_files_only: bool = False) -> Any:
    """Load a Qwen2.5-VL- or Qwen3-VL-family processor from a local directory or the HF cache.

    With torchvision, this is `AutoProcessor`; without it, the same image-processor settings
    (`preprocessor_config.json`) and tokenizer, put together as the image-only processor of the
    checkpoint's architecture (`model_type` in its `config.json`).
    """
    from transformers import AutoProcessor

    if is_torchvision_available():
        return AutoProcessor.from_pretrained(name_or_path, local_files_only=local_files_only)
    image_processor = Qwen2VLImageProcessorPil.from_pretrained(
        name_or_path, local_files_only=local_files_only
    )
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, local_files_only=local_files_only)
    model_type = AutoConfig.from_pretrained(name_or_path, local_files_only=local_files_only).model_type
    image_only = ImageOnlyQwen3VLProcessor if model_type in QWEN3_VL_TYPES else ImageOnlyQwen2_5_VLProcessor
    return image_only(image_processor, tokenizer, chat_template=tokenizer.chat_template)
