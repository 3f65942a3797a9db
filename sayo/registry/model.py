"""The registered model: an MLflow pyfunc that answers a question about an image.

Why a pyfunc around the checkpoint rather than the transformers flavour: serving needs the same
prompt template, stop tokens and answer extraction as evaluation (`sayo.answering`), not
a bare `generate`; the pyfunc wraps exactly that, and the checkpoint directory travels inside the
model as the `checkpoint` artifact, loaded with `sayo.models.load_policy`. The model is logged
from code: `sayo/registry/served.py` instantiates this class when MLflow loads the model, so
nothing is pickled. Imports mlflow at module level (it subclasses `PythonModel`), so only the
registry imports this module, lazily.

Input: a DataFrame with `image` (base64-encoded PNG/JPEG) and `question` columns.
Output: a DataFrame with `answer` (the extracted final answer, "" when none) and `completion`.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import pandas as pd
from mlflow.pyfunc import PythonModel
from PIL import Image

from sayo.answering import AnswerOptions, answer_batch
from sayo.data.schema import Sample
from sayo.models import load_policy

INPUT_COLUMNS = ("image", "question")


def encode_image(image: Image.Image) -> str:
    """A PIL image as the base64 PNG string the model takes in its `image` column."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_image(text: str) -> Image.Image:
    with Image.open(io.BytesIO(base64.b64decode(text))) as image:
        return image.convert("RGB")


class SayoVisionQA(PythonModel):
    """Greedy answers of a sayo policy to (image, question) rows."""

    def load_context(self, context: Any) -> None:
        self.model, self.processor = load_policy(context.artifacts["checkpoint"])
        self.max_new_tokens = int((context.model_config or {}).get("max_new_tokens", 32))

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        missing = [c for c in INPUT_COLUMNS if c not in model_input.columns]
        if missing:
            raise ValueError(f"input needs columns {list(INPUT_COLUMNS)}; missing {missing}")
        rows = model_input.to_dict("records")
        samples = [
            Sample(id=str(i), image="request", question=str(r["question"]), answer="?")
            for i, r in enumerate(rows)
        ]
        images = [decode_image(str(r["image"])) for r in rows]
        max_new_tokens = int((params or {}).get("max_new_tokens", self.max_new_tokens))
        answers = answer_batch(
            self.model, self.processor, samples, images, AnswerOptions(max_new_tokens=max_new_tokens)
        )
        return pd.DataFrame({"answer": [a or "" for a in answers.extracted], "completion": answers.texts})
