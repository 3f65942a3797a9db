"""The sample schema shared by every stage (docs/architecture.md, "Data model").

A sample is one image, one question with a verifiable answer, and the boxes of the image
regions needed to answer it; optionally the reasoning an SFT target states (`reasoning`), so that
what a task teaches travels with its data and the stages know no task (docs/architecture.md,
"Data model"). Boxes are `[x1, y1, x2, y2]` in *original* image pixels; they are
mapped to visual tokens only when the processor's resize is known (`sayo.regions`).
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)


class AnswerType(str, Enum):
    """How an answer is scored (`sayo.rewards.accuracy`)."""

    EXACT = "exact"  # string match after normalisation
    NUMBER = "number"  # numeric, relative tolerance (ChartQA relaxed accuracy)
    CHOICE = "choice"  # multiple choice: option letter or option text
    OPEN = "open"  # free text: exact match after normalisation, reported separately


class Region(BaseModel):
    """An annotated region: a box in original image pixels and an optional label."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bbox: tuple[float, float, float, float] = Field(description="[x1, y1, x2, y2] in original image pixels")
    label: str = ""

    @field_validator("bbox")
    @classmethod
    def _finite_and_ordered(
        cls, bbox: tuple[float, float, float, float]
    ) -> tuple[float, float, float, float]:
        if any(math.isnan(v) or math.isinf(v) for v in bbox):
            raise ValueError(f"bbox {list(bbox)} has a NaN or infinite coordinate")
        x1, y1, x2, y2 = bbox
        if x2 <= x1 or y2 <= y1:
            raise ValueError(f"bbox {list(bbox)} is empty or inverted (needs x2 > x1 and y2 > y1)")
        return bbox


class Sample(BaseModel):
    """One region-grounded question about one image."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    image: str = Field(min_length=1, description="image path (relative to the dataset) or content hash")
    question: str = Field(min_length=1)
    answer: str = Field(min_length=1)
    answer_type: AnswerType = AnswerType.EXACT
    choices: list[str] | None = Field(
        default=None, description="options for answer_type=choice, in A, B, C… order"
    )
    regions: list[Region] = Field(default_factory=list)
    source: str = "unknown"
    image_size: tuple[int, int] | None = Field(default=None, description="(width, height) if known")
    category: str = ""
    reasoning: str | None = Field(
        default=None,
        description="what an SFT target states before the answer, verbatim (a search path; may be empty); "
        "None: 'I look at the <region label>.'",
    )
    direct_reasoning: str | None = Field(
        default=None, description="`reasoning` without its detours (sft.direct_steps); None: `reasoning`"
    )
    demonstrated_answer: str | None = Field(
        default=None,
        description="the answer an SFT target with the full `reasoning` states when it is not `answer` "
        "(a demonstration that misreads, e.g. `search_misread_rate`; one with `direct_reasoning` states "
        "`answer`); None: `answer`. Rewards and evaluation use `answer`",
    )

    @field_validator("question", "answer")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Sample:
        if self.answer_type is AnswerType.CHOICE and not self.choices:
            raise ValueError("answer_type 'choice' needs a non-empty 'choices' list")
        if self.direct_reasoning is not None and self.reasoning is None:
            raise ValueError("'direct_reasoning' needs a 'reasoning' (it is that reasoning without detours)")
        if self.image_size is not None:
            width, height = self.image_size
            for i, region in enumerate(self.regions):
                x1, y1, x2, y2 = region.bbox
                if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
                    raise ValueError(
                        f"regions[{i}].bbox {list(region.bbox)} lies outside the {width}x{height} image"
                    )
        return self

    @model_serializer(mode="wrap")
    def _without_unset_reasoning(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Leave the reasoning fields out while unset, so a manifest without them reads as it did
        before they existed (byte for byte)."""
        data = handler(self)
        for key in ("reasoning", "direct_reasoning", "demonstrated_answer"):
            if data.get(key) is None:
                data.pop(key, None)
        return data
