"""Shared fixtures: the tiny policies (built once per session) and an isolated SAYO_HOME.

Equivalence tests (marker `equivalence`) check that two formulations of the same computation
agree (packed vs one row per rollout, shared image features vs pixels, capture vs eager attention,
merged vs unmerged LoRA...). Float sums in another order are not a behaviour change, so they run on
float64 copies of the tiny policies (`policy64`) and compare with `assert_equivalent`, whose
tolerance scales with the tensor's magnitude: they hold on any CPU, thread count and kernel set.
`make test-equivalence` re-runs them with ATen's generic kernels and one thread; the thread count
comes from `SAYO_TEST_NUM_THREADS` (default 2, the CI machine's cores).
"""

from __future__ import annotations

import copy
import os

import pytest
import torch
from PIL import Image

from sayo.data.build import build
from sayo.models import TINY_NAME, TINY_QWEN3_VL_NAME, TinyQwen3VLSpec, TinySpec, build_tiny
from sayo.recipe import load_recipe


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `gpu` need a CUDA device: skipped, with the reason, where there is none."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (run on a GPU machine: make gpu-check)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


ARCHS = (TINY_NAME, TINY_QWEN3_VL_NAME)  # the tiny Qwen2.5-VL and Qwen3-VL policies
SPECS = {TINY_NAME: TinySpec, TINY_QWEN3_VL_NAME: TinyQwen3VLSpec}
_BUILT: dict[str, tuple] = {}  # arch -> (model, processor), float32, shared by the session
_FLOAT64: dict[str, torch.nn.Module] = {}


def _num_threads() -> int:
    return int(os.environ.get("SAYO_TEST_NUM_THREADS", "2"))


def pytest_configure(config: pytest.Config) -> None:
    """Fix torch's intra-op thread count for the whole run (`SAYO_TEST_NUM_THREADS`)."""
    torch.set_num_threads(_num_threads())


def pytest_report_header(config: pytest.Config) -> str:
    """Which kernels and how many threads the floating-point results come from."""
    return f"torch {torch.__version__}: CPU kernels {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} thread(s)"


@pytest.fixture(scope="session", autouse=True)
def _sayo_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the tiny-model cache of the tests out of the user's ~/.cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SAYO_HOME", str(tmp_path_factory.mktemp("sayo_home")))
    yield
    mp.undo()


def tiny_policy(arch: str = TINY_NAME) -> tuple:
    """(model, processor) of a tiny policy, float32, eval mode, SDPA; built once per session."""
    if arch not in _BUILT:
        torch.set_num_threads(_num_threads())
        _BUILT[arch] = build_tiny(SPECS[arch]())
    return _BUILT[arch]


def as_float64(model: torch.nn.Module) -> torch.nn.Module:
    """A float64 copy of `model` (the original is untouched)."""
    return copy.deepcopy(model).to(torch.float64)


def assert_equivalent(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-9, msg: str = "") -> None:
    """`actual` equals `expected` up to float rounding: |a − e| ≤ rel·(|e| + max|e|) elementwise.

    Rounding of a sum grows with the size of its terms, not of its result, so an element that is
    near zero by cancellation gets the tensor's scale as its tolerance (a fixed atol would fail on
    another CPU's summation order). `rel` is 1e-9 for float64 computations (~1e-15 error per op);
    where the model itself rounds to float32 on the way (eager attention's softmax, the vision
    rotary), the caller passes that precision.
    """
    assert actual.shape == expected.shape, f"{msg}: shapes {tuple(actual.shape)} != {tuple(expected.shape)}"
    actual, expected = actual.detach().double(), expected.detach().double()
    assert not actual.isnan().any() and not expected.isnan().any(), f"{msg}: NaN"
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    error = (actual - expected).abs()
    bound = rel * (expected.abs() + scale)
    if (error > bound).any():
        worst = int((error - bound).argmax())
        raise AssertionError(
            f"{msg}: {int((error > bound).sum())} of {error.numel()} elements differ by more than "
            f"rel={rel:g} × (|expected| + max|expected| = {scale:.3g}); largest error {float(error.max()):.3g} "
            f"({float(error.max()) / max(scale, 1e-300):.3g} of the scale), at flat index {worst}: "
            f"{float(actual.flatten()[worst])!r} vs {float(expected.flatten()[worst])!r}"
        )


FLOAT32_REL = 1e-5  # float32 rounding (eps ~6e-8) grown over a few training steps, with room


def assert_same_metrics(actual: dict, expected: dict, rel: float = FLOAT32_REL, msg: str = "") -> None:
    """Two runs' scalar metrics (same keys) agree up to float32 rounding: |a − e| ≤ rel·(|e| + 1).

    What a resumed run promises (README, "Train"): the same samples, rewards and updates as an
    uninterrupted one up to float32 rounding, not bit for bit: BLAS/oneDNN kernels may round a
    product differently for weights that were reloaded (another memory alignment), on another kernel
    set or thread count. The `+ 1` is the scale of the terms of metrics that cancel towards zero
    (kl, a mean advantage: differences of log-probabilities and rewards of order 1). A wrong resume
    (other prompts, other RNG draws, a lost optimizer state) moves them far more than this.
    """
    assert actual.keys() == expected.keys(), f"{msg}: keys {sorted(actual)} != {sorted(expected)}"
    off = {
        key: (actual[key], value)
        for key, value in expected.items()
        if not abs(float(actual[key]) - float(value)) <= rel * (abs(float(value)) + 1.0)
    }
    assert not off, f"{msg}: differ by more than rel={rel:g} x (|expected| + 1): {off}"


@pytest.fixture(scope="session")
def tiny():
    """(model, processor) of the tiny default, in eval mode, SDPA attention."""
    return tiny_policy(TINY_NAME)


@pytest.fixture(scope="session", params=ARCHS)
def arch(request: pytest.FixtureRequest) -> str:
    """Each tiny architecture in turn: `tiny` (Qwen2.5-VL) and `tiny-qwen3-vl`."""
    return request.param


@pytest.fixture(scope="session")
def policy(arch: str) -> tuple:
    """(model, processor) of the tiny policy of `arch`, float32."""
    return tiny_policy(arch)


@pytest.fixture(scope="session")
def policy64(arch: str) -> tuple:
    """(model, processor) of the tiny policy of `arch`, float64 (equivalence tests)."""
    model, processor = tiny_policy(arch)
    if arch not in _FLOAT64:
        _FLOAT64[arch] = as_float64(model)
    return _FLOAT64[arch], processor


def build_tiny_dataset(out, num_samples: int, *overrides: str):
    """A synthetic dataset of the tiny recipe at `out`, built by the real `data` stage."""
    recipe = load_recipe(
        "tiny", [f"data.path={out}", f"data.synthetic.num_samples={num_samples}", *overrides]
    )
    build(recipe.data, progress=False)
    return out


def train_recipe(tmp_path, dataset, *overrides: str):
    """The tiny recipe sized for tests: the dataset at `dataset`, checkpoints under `tmp_path`, no
    tracking, CPU, small GRPO steps from the untrained policy (unless a test trains SFT first)."""
    base = [
        f"data.path={dataset}",
        f"checkpoint.dir={tmp_path / 'ckpt'}",
        "tracking.enabled=false",
        "device=cpu",
        "sft.eval_every=0",
        "grpo.probe_every=0",
        "grpo.prompts_per_step=2",
        "grpo.group_size=4",
        "grpo.micro_batch_size=4",
        "grpo.max_new_tokens=12",
        "grpo.init_from=model",
    ]
    return load_recipe("tiny", [*base, *overrides])


def chat_prompt(processor, question: str) -> str:
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def prompt_batch(processor):
    """Two prompts of different lengths and image sizes (so the first is left-padded)."""
    texts = [chat_prompt(processor, "What colour is the square?"), chat_prompt(processor, "Hi")]
    images = [Image.new("RGB", (300, 200), "red"), Image.new("RGB", (112, 140), "blue")]
    processor.tokenizer.padding_side = "left"
    return processor(text=texts, images=images, padding=True, return_tensors="pt"), images, texts


@pytest.fixture(scope="session")
def two_prompt_batch(tiny):
    """`prompt_batch` of the tiny default."""
    return prompt_batch(tiny[1])


@pytest.fixture(scope="session")
def arch_batch(policy):
    """`prompt_batch` of the tiny policy of `arch`."""
    return prompt_batch(policy[1])


# A real MLflow server for tests/test_tracking_runs.py (kept in its own module).
from mlflow_fixtures import mlflow_server  # noqa: E402, F401
