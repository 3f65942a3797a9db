"""The promotion gate by hand, and the `register` stage against a real `mlflow server` (slow)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow import MlflowClient
from typer.testing import CliRunner

from sayo.cli import app
from sayo.registry import RegisterConfig, gate_decision, register_checkpoint
from sayo.registry.register import SERVED, checkpoint_metrics, data_version, git_commit, pinned_requirements
from sayo.registry.wheel import build_wheel
from sayo.tracking import TrackingConfig

ROOT = Path(__file__).resolve().parents[1]
GATE = ["synthetic/accuracy"]
CHAMPION = {"synthetic/accuracy": 0.50, "chart/accuracy": 0.40, "synthetic/format_rate": 1.0}


@pytest.mark.parametrize(
    ("challenger", "promote", "why"),
    [
        (
            {"synthetic/accuracy": 0.55, "chart/accuracy": 0.40},
            True,
            "beats",
        ),  # +0.05 >= margin, no regression
        ({"synthetic/accuracy": 0.505, "chart/accuracy": 0.40}, False, "margin"),  # +0.005 < margin 0.01
        ({"synthetic/accuracy": 0.45, "chart/accuracy": 0.60}, False, "margin"),  # worse on the gate metric
        (
            {"synthetic/accuracy": 0.60, "chart/accuracy": 0.37},
            False,
            "tolerance",
        ),  # other benchmark −0.03 > 0.02
        ({"synthetic/accuracy": 0.60, "chart/accuracy": 0.39}, True, "beats"),  # −0.01 is within tolerance
        (
            {"synthetic/accuracy": 0.60, "synthetic/format_rate": 0.0},
            True,
            "beats",
        ),  # only accuracies are guarded
    ],
)
def test_gate_decision_by_hand(challenger: dict[str, float], promote: bool, why: str) -> None:
    decision = gate_decision(challenger, CHAMPION, GATE, margin=0.01, tolerance=0.02)
    assert decision.promote is promote
    assert why in decision.reason
    assert decision.deltas["synthetic/accuracy"] == pytest.approx(challenger["synthetic/accuracy"] - 0.5)


def test_gate_first_version_and_missing_metric() -> None:
    assert gate_decision({"synthetic/accuracy": 0.1}, None, GATE, 0.01, 0.02).promote  # nothing to beat
    with pytest.raises(ValueError, match="not in the challenger"):
        gate_decision({"chart/accuracy": 0.1}, CHAMPION, GATE, 0.01, 0.02)


def test_checkpoint_metrics_and_provenance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nested = {
        "base": {"synthetic": {"accuracy": 0.1}},
        "grpo": {"synthetic": {"accuracy": 0.3, "region_attention": None}},
    }
    (tmp_path / "metrics.json").write_text(json.dumps(nested))
    assert checkpoint_metrics(tmp_path / "metrics.json") == (
        "grpo",
        {"synthetic/accuracy": 0.3},
    )  # last, nulls dropped
    assert checkpoint_metrics(tmp_path / "metrics.json", "base")[1] == {"synthetic/accuracy": 0.1}
    with pytest.raises(ValueError, match="no checkpoint 'sft'"):
        checkpoint_metrics(tmp_path / "metrics.json", "sft")
    (tmp_path / "dvc.lock").write_text(
        "stages:\n  data:\n    outs:\n    - path: data/processed\n      md5: abc.dir\n"
    )
    assert data_version(tmp_path / "dvc.lock") == "abc.dir"
    assert data_version(tmp_path / "missing.lock") == "unknown"
    monkeypatch.chdir(tmp_path)  # not a git repository
    assert git_commit() == "unknown"


@pytest.fixture(scope="module")
def registrations(mlflow_server: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Three versions: the first becomes champion, a worse one is refused, a better one (via the CLI) promoted."""
    tracking = TrackingConfig(tracking_uri=mlflow_server, experiment="registry-test")
    cfg = RegisterConfig(model_name="sayo-registry-test", gate_metrics=GATE, margin=0.01, tolerance=0.02)
    first = register_checkpoint(
        "tiny", {"synthetic/accuracy": 0.30, "chart/accuracy": 0.40}, cfg, tracking, max_new_tokens=8
    )
    worse = register_checkpoint(
        "tiny", {"synthetic/accuracy": 0.25, "chart/accuracy": 0.40}, cfg, tracking, max_new_tokens=8
    )
    folder = tmp_path_factory.mktemp("register")
    metrics = {"grpo": {"synthetic": {"accuracy": 0.45}, "chart": {"accuracy": 0.39}}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    args = ["register", "--checkpoint", "tiny", "--metrics", str(folder / "metrics.json"), "--out", str(folder / "decision.json"),
            "--config", "tiny", f"tracking.tracking_uri={mlflow_server}",
            "tracking.experiment=registry-test", "register.model_name=sayo-registry-test", "evaluate.max_new_tokens=8"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return {"first": first, "worse": worse, "cli": result.output, "decision": json.loads((folder / "decision.json").read_text()),
            "uri": mlflow_server, "name": cfg.model_name}  # fmt: skip


@pytest.mark.slow
def test_versions_aliases_and_gate_tags(registrations: dict) -> None:
    client = MlflowClient(tracking_uri=registrations["uri"], registry_uri=registrations["uri"])
    name = registrations["name"]
    assert (
        registrations["first"].decision.promote
        and registrations["first"].decision.reason == "no champion yet"
    )
    assert not registrations["worse"].decision.promote and registrations["worse"].champion_version == "1"
    assert registrations["decision"]["promote"] is True and registrations["decision"]["version"] == "3"
    assert "promoted to champion" in registrations["cli"]
    assert client.get_model_version_by_alias(name, "champion").version == "3"
    assert client.get_model_version_by_alias(name, "challenger").version == "3"
    refused = client.get_model_version(name, "2")
    assert refused.tags["sayo.gate.decision"] == "refused"
    assert refused.tags["sayo.gate.champion_version"] == "1"
    assert json.loads(refused.tags["sayo.gate.deltas"])["synthetic/accuracy"] == pytest.approx(-0.05)
    promoted = client.get_model_version(name, "3")
    assert promoted.tags["sayo.gate.decision"] == "promoted"
    assert float(promoted.tags["sayo.metric.synthetic/accuracy"]) == 0.45
    assert promoted.tags["sayo.data_version"] == data_version(ROOT / "dvc.lock")
    assert (
        promoted.tags["sayo.git_commit"]
        == subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip()
    )
    assert json.loads(promoted.tags["sayo.config"])["register"]["model_name"] == name
    assert client.get_run(promoted.run_id).data.tags["sayo.stage"] == "register"


# a fresh Python process loads the champion from the server, as a serving container would
LOAD_AND_ANSWER = """
import base64, io, json, sys
import mlflow, pandas as pd
from PIL import Image

buffer = io.BytesIO()
Image.new("RGB", (84, 56), "blue").save(buffer, format="PNG")
image = base64.b64encode(buffer.getvalue()).decode()
model = mlflow.pyfunc.load_model(sys.argv[1])
answers = model.predict(pd.DataFrame({"image": [image] * 2,
                                      "question": ["What colour is the image?", "How many squares?"]}))
print(json.dumps({"columns": list(answers.columns), "rows": answers.to_dict("records"),
                  "class": type(model.unwrap_python_model()).__qualname__}))
"""


@pytest.mark.slow
def test_champion_loads_and_answers_in_a_fresh_process(registrations: dict) -> None:
    uri = f"models:/{registrations['name']}@champion"
    env = {**os.environ, "MLFLOW_TRACKING_URI": registrations["uri"], "PYTHONPATH": str(ROOT),
           "MLFLOW_DISABLE_TELEMETRY": "true"}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", LOAD_AND_ANSWER, uri], env=env, capture_output=True,
                          text=True, timeout=600, cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["columns"] == ["answer", "completion"] and len(result["rows"]) == 2
    assert all(isinstance(r["completion"], str) and r["completion"] for r in result["rows"])  # it babbles
    assert result["class"] == "SayoVisionQA"


@pytest.mark.slow
def test_the_registered_model_is_code_not_a_pickle(registrations: dict, tmp_path: Path) -> None:
    client = MlflowClient(tracking_uri=registrations["uri"], registry_uri=registrations["uri"])
    uri = f"models:/{registrations['name']}@champion"
    with _tracking(registrations["uri"]):
        info = mlflow.models.get_model_info(uri)
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(tmp_path)))
    assert info.signature.inputs.input_names() == ["image", "question"]
    files = [p for p in local.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in (".pkl", ".pickle", ".cloudpickle")], files
    pickles = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")  # a pickle's first bytes
    assert not [p for p in files if p.suffix != ".safetensors" and p.read_bytes()[:2] in pickles]
    flavor = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"]
    assert flavor["loader_module"] == "mlflow.pyfunc.loaders.code_model" and "python_model" not in flavor
    assert (local / Path(flavor["model_code_path"]).name).read_text() == SERVED.read_text()  # the source
    assert flavor["config"] == {"max_new_tokens": 8}
    checkpoint = local / flavor["artifacts"]["checkpoint"]["path"]
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in checkpoint.iterdir()}
    requirements = (local / "requirements.txt").read_text().split()
    assert set(pinned_requirements()) <= set(requirements)
    assert not [r for r in requirements if r.startswith("sayo")]  # on no index: the wheel below instead
    (wheel,) = [r for r in requirements if r.endswith(".whl")]
    assert wheel.startswith("artifacts/sayo-0.1.0+") and (local / wheel).is_file()
    assert f"mlflow=={mlflow.__version__}" in requirements
    for pin in pinned_requirements():
        name, version = pin.split("==")
        assert "+" not in version and metadata.version(name).startswith(version)
    assert client.get_model_version_by_alias(registrations["name"], "champion").version == "3"


# the champion loaded and asked one row in a venv that installed the model's requirements
FRESH_LOAD = """
import base64, io, json, sys
import mlflow, pandas as pd, sayo
from PIL import Image

buffer = io.BytesIO()
Image.new("RGB", (56, 56), "green").save(buffer, format="PNG")
model = mlflow.pyfunc.load_model(sys.argv[1])
answer = model.predict(pd.DataFrame({"image": [base64.b64encode(buffer.getvalue()).decode()],
                                     "question": ["What colour is the image?"]}))
print(json.dumps({"sayo": sayo.__file__, "rows": answer.to_dict("records")}))
"""


def _venv_without_sayo(where: Path) -> Path:
    """A fresh venv that sees this venv's installed packages except sayo (the CI's dependencies,
    already installed: torch & co. cannot be installed offline from nothing); returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    purelib = [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]
    fresh_site = Path(subprocess.run(purelib, capture_output=True, text=True, check=True).stdout.strip())
    deps = where / "deps"
    deps.mkdir()
    for entry in Path(sysconfig.get_path("purelib")).iterdir():
        if "sayo" not in entry.name.lower():  # sayo's dist-info and its editable finder stay behind
            (deps / entry.name).symlink_to(entry)
    (fresh_site / "deps.pth").write_text(f"import site; site.addsitedir({str(deps)!r})\n")  # and its .pth
    return python


@pytest.mark.slow
def test_the_champion_installs_sayo_from_its_own_artifacts(registrations: dict, tmp_path: Path) -> None:
    """`pip install --no-index -r requirements.txt` in the model's directory (as `mlflow models serve`
    does) gets sayo from the wheel logged with the model: no index holds sayo."""
    uri = f"models:/{registrations['name']}@champion"
    with _tracking(registrations["uri"]):
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(tmp_path / "model")))
    python = _venv_without_sayo(tmp_path / "venv")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        PYTHONNOUSERSITE="1", MLFLOW_TRACKING_URI=registrations["uri"], MLFLOW_DISABLE_TELEMETRY="true"
    )
    absent = subprocess.run(
        [python, "-c", "import sayo"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert absent.returncode != 0 and "No module named 'sayo'" in absent.stderr  # not there before

    pip = [python, "-m", "pip", "install", "--no-index", "--find-links", str(local / "artifacts"),
           "--disable-pip-version-check", "-r", "requirements.txt"]  # fmt: skip
    installed = subprocess.run(pip, env=env, cwd=local, capture_output=True, text=True, timeout=600)
    print(installed.stdout[-2000:], installed.stderr[-2000:])
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    assert "Successfully installed sayo-0.1.0+" in installed.stdout

    done = subprocess.run([python, "-c", FRESH_LOAD, uri], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print("fresh venv:", result)
    assert result["sayo"].startswith(str(tmp_path / "venv")) and "site-packages" in result["sayo"]
    (row,) = result["rows"]
    assert isinstance(row["completion"], str) and row["completion"] and isinstance(row["answer"], str)


def test_the_wheel_is_the_code_that_registered(tmp_path: Path) -> None:
    """The same code packs to the same bytes; another byte of code gives another version."""
    package = tmp_path / "pkg" / "sayo"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("x = 1\n")
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "junk.pyc").write_bytes(b"\0")
    first, again = build_wheel(tmp_path / "a", package), build_wheel(tmp_path / "b", package)
    assert first.name == again.name and first.read_bytes() == again.read_bytes()
    with zipfile.ZipFile(first) as wheel:
        names = wheel.namelist()
    version = first.name.split("-")[1]
    assert names[0] == "sayo/__init__.py" and not [n for n in names if "__pycache__" in n]
    assert f"sayo-{version}.dist-info/RECORD" == names[-1] and version.startswith("0.1.0+")
    (package / "__init__.py").write_text("x = 2\n")
    assert build_wheel(tmp_path / "c", package).name != first.name


def test_the_wheel_builds_from_an_editable_checkout_as_the_working_directory(tmp_path: Path) -> None:
    """In the checkout, `sayo` is found through its `sayo.egg-info` (PKG-INFO, no METADATA file):
    the wheel still carries the distribution's metadata with its own version."""
    egg = tmp_path / "sayo.egg-info"
    egg.mkdir()
    (egg / "PKG-INFO").write_text(
        "Metadata-Version: 2.4\nName: sayo\nVersion: 0.1.0\nRequires-Dist: numpy\n\nlong text\n"
    )
    code = (
        "import sys; from sayo.registry.wheel import build_wheel; "
        f"print(build_wheel({str(tmp_path / 'out')!r}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    wheel = Path(done.stdout.strip().splitlines()[-1])
    version = wheel.name.split("-")[1]
    with zipfile.ZipFile(wheel) as archive:
        meta = archive.read(f"sayo-{version}.dist-info/METADATA").decode()
    assert f"Version: {version}" in meta and "Requires-Dist: numpy" in meta and "long text" in meta


@contextlib.contextmanager
def _tracking(uri: str) -> Iterator[None]:
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]
