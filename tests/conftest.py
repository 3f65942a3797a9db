"""Shared fixtures: the tiny policy (built once per session) and an isolated SAYO_HOME."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from sayo.data.build import build
from sayo.models import build_tiny
from sayo.recipe import load_recipe


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `gpu` need a CUDA device: skipped, with the reason, where there is none."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (run on a GPU machine: make gpu-check)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _sayo_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the tiny-model cache of the tests out of the user's ~/.cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SAYO_HOME", str(tmp_path_factory.mktemp("sayo_home")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def tiny():
    """(model, processor) of the tiny default, in eval mode, SDPA attention."""
    torch.set_num_threads(2)
    return build_tiny()


def build_tiny_dataset(out, num_samples: int, *overrides: str):
    """A synthetic dataset of the tiny recipe at `out`, built by the real `data` stage."""
    recipe = load_recipe(
        "tiny", [f"data.path={out}", f"data.synthetic.num_samples={num_samples}", *overrides]
    )
    build(recipe.data, progress=False)
    return out


def chat_prompt(processor, question: str) -> str:
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


@pytest.fixture(scope="session")
def two_prompt_batch(tiny):
    """Two prompts of different lengths and image sizes (so the first is left-padded)."""
    _, processor = tiny
    texts = [chat_prompt(processor, "What colour is the square?"), chat_prompt(processor, "Hi")]
    images = [Image.new("RGB", (300, 200), "red"), Image.new("RGB", (112, 140), "blue")]
    processor.tokenizer.padding_side = "left"
    return processor(text=texts, images=images, padding=True, return_tensors="pt"), images, texts


# A real MLflow server for tests/test_tracking_runs.py (kept in its own module).
from mlflow_fixtures import mlflow_server  # noqa: E402, F401
