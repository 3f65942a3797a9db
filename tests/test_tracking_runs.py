"""StageRun against a real MLflow server (slow), a local sqlite store, and servers that misbehave."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from sayo.tracking import (
    MAX_KEY,
    MAX_PARAM_VALUE,
    TRUNCATED,
    StageRun,
    TrackingConfig,
    TrackingUnavailable,
    check_tracking,
    prepare_params,
    redact,
    resolve_tracking_uri,
)


@pytest.fixture(autouse=True)
def _no_ambient_mlflow(monkeypatch: pytest.MonkeyPatch) -> None:
    """No telemetry, and never the developer's own MLFLOW_TRACKING_URI."""
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once the socket is closed


@pytest.fixture
def answering(request: pytest.FixtureRequest) -> Iterator[str]:
    """A local HTTP server that answers every GET with the status in `request.param`."""
    status = request.param

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_resolve_tracking_uri_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_tracking_uri(TrackingConfig()) == f"sqlite:///{tmp_path.resolve() / 'mlruns.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert resolve_tracking_uri(TrackingConfig()) == "http://env:5000"
    assert resolve_tracking_uri(TrackingConfig(tracking_uri="http://cfg:5000")) == "http://cfg:5000"


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("http://user:secret@host:5000/x", "http://host:5000/x"),  # user and password dropped
        ("https://token@host", "https://host"),  # a bare token too
        ("http://host:5000", "http://host:5000"),  # nothing to hide
        ("sqlite:////tmp/mlruns.db", "sqlite:////tmp/mlruns.db"),  # not a network URI
    ],
)
def test_redact(uri: str, shown: str) -> None:
    assert redact(uri) == shown


def test_prepare_params_respects_mlflow_limits() -> None:
    params = prepare_params({"lr": 0.0005, "lora": True, "mods": ["q_proj"], "name": "tiny",
                             "long": "x" * 7000, "k" * 300: 1, "k" * 299: 2})  # fmt: skip
    assert params["lr"] == "0.0005" and params["lora"] == "true" and params["mods"] == '["q_proj"]'
    assert params["name"] == "tiny"
    assert len(params["long"]) == MAX_PARAM_VALUE and params["long"].endswith(TRUNCATED)
    long_keys = [k for k in params if len(k) > 100]
    assert len(long_keys) == 2 and all(len(k) == MAX_KEY for k in long_keys)  # distinct after truncation


def test_unreachable_server_raises_before_anything_is_logged() -> None:
    uri = f"http://admin:hunter2@127.0.0.1:{closed_port()}"
    ran = False
    start = time.monotonic()
    run = StageRun(TrackingConfig(tracking_uri=uri), stage="sft", params={"a": 1}, timeout=2.0)
    with pytest.raises(TrackingUnavailable, match="is unreachable") as caught, run:
        ran = True
    assert time.monotonic() - start < 2.5
    assert not ran and run.run_id is None
    assert "hunter2" not in str(caught.value) and "admin" not in str(caught.value)
    assert "unset MLFLOW_TRACKING_URI" in str(caught.value)


def test_silent_server_times_out() -> None:
    with socket.socket() as sock:  # accepts connections (backlog) but never answers
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        start = time.monotonic()
        with pytest.raises(TrackingUnavailable, match="unreachable"):
            check_tracking(f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=0.5)
        assert time.monotonic() - start < 2.0


@pytest.mark.parametrize(
    ("answering", "error"),
    [
        (200, None),  # healthy
        (404, None),  # answered without /health (a proxy): reachable
        (401, "rejected the request"),  # credentials missing or wrong
        (503, r"unreachable \(HTTP 503\)"),  # up but failing
    ],
    indirect=["answering"],
)
def test_check_tracking_statuses(answering: str, error: str | None) -> None:
    if error is None:
        check_tracking(answering, timeout=2.0)
    else:
        with pytest.raises(TrackingUnavailable, match=error):
            check_tracking(answering, timeout=2.0)


def test_non_http_uris_are_not_probed() -> None:
    check_tracking("sqlite:////nonexistent/dir/mlruns.db")
    check_tracking("databricks")


def test_disabled_is_a_no_op(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    with StageRun(TrackingConfig(enabled=False), stage="sft", params={"a": 1}) as run:
        run.log_params({"b": 2})
        run.log_metrics({"loss": 1.0}, step=0)
        run.log_text("x", "x.txt")
        run.log_table([{"a": 1}], "t.json")
        run.log_dict({"a": 1}, "d.json")
        run.log_image(Image.new("RGB", (4, 4)), "i.png")
        run.log_artifact(tmp_path)
    assert run.run_id is None and not run.enabled
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_local_default_is_sqlite_in_cwd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)
    with StageRun(TrackingConfig(experiment="local"), stage="data", params={"seed": 0}) as run:
        run.log_metrics({"rows": 10}, step=0)
        run.log_text("hello", "notes/hello.txt")
        run_id = run.run_id
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns.db'}")
    logged = client.get_run(run_id)
    assert logged.data.params == {"seed": "0"} and logged.data.metrics == {"rows": 10.0}
    assert logged.info.status == "FINISHED"
    assert (tmp_path / "mlartifacts").is_dir()
    assert [a.path for a in client.list_artifacts(run_id, "notes")] == ["notes/hello.txt"]


@pytest.mark.slow
def test_server_run_logs_params_metrics_and_artifacts(mlflow_server: str, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    file = tmp_path / "report.md"
    file.write_text("# report")
    config = TrackingConfig(tracking_uri=mlflow_server, experiment="full", run_name="grpo-test")
    params = {"grpo.beta": 0.04, "model.name_or_path": "tiny", "long": "y" * 7000}
    with StageRun(config, stage="grpo", params=params) as run:
        for step in range(3):
            run.log_metrics({"reward": 0.5 * step, "kl": float("nan") if step == 1 else 0.1}, step=step)
        run.log_image(Image.new("RGB", (8, 8), "red"), "heatmaps/step_2.png")
        run.log_table([{"id": "a", "reward": 1.0}, {"id": "b", "reward": 0.0}], "probes/completions")
        run.log_dict({"accuracy": 0.5}, "metrics.json")
        run.log_artifact(file, "reports")
        run.log_params({"data.rows": 12})  # learnt during the stage
        run_id = run.run_id

    assert run.run_id == run_id  # still there for the stage's outputs
    run.log_metrics({"late": 1.0}, step=3)  # after the `with`: a no-op
    client = MlflowClient(mlflow_server)
    logged = client.get_run(run_id)
    assert logged.info.status == "FINISHED" and logged.info.run_name == "grpo-test"
    assert "late" not in logged.data.metrics
    assert logged.data.tags["sayo.stage"] == "grpo" and logged.data.tags["sayo.nan_metrics_skipped"] == "1"
    assert logged.data.params["data.rows"] == "12"
    assert logged.data.params["grpo.beta"] == "0.04" and logged.data.params["long"].endswith(TRUNCATED)
    history = client.get_metric_history(run_id, "reward")
    assert [(m.step, m.value) for m in history] == [(0, 0.0), (1, 0.5), (2, 1.0)]
    assert [m.step for m in client.get_metric_history(run_id, "kl")] == [0, 2]  # the NaN was skipped
    paths = {a.path for top in ("heatmaps", "probes", "reports") for a in client.list_artifacts(run_id, top)}
    assert paths == {"heatmaps/step_2.png", "probes/completions.json", "reports/report.md"}
    image = Image.open(client.download_artifacts(run_id, "heatmaps/step_2.png", str(tmp_path)))
    assert image.size == (8, 8)
    table = Path(client.download_artifacts(run_id, "probes/completions.json", str(tmp_path))).read_text()
    assert '"reward"' in table and '"b"' in table


@pytest.mark.slow
def test_nested_run_has_parent_tag(mlflow_server: str) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server)
    experiment_id = client.create_experiment("pipeline")
    parent = client.create_run(experiment_id, run_name="pipeline").info.run_id
    with StageRun(TrackingConfig(tracking_uri=mlflow_server, parent_run_id=parent), stage="sft") as run:
        child = run.run_id
    logged = client.get_run(child)
    assert logged.data.tags["mlflow.parentRunId"] == parent
    assert logged.info.experiment_id == experiment_id  # where the UI nests it


@pytest.mark.slow
def test_unknown_parent_is_an_error(mlflow_server: str) -> None:
    config = TrackingConfig(tracking_uri=mlflow_server, parent_run_id="0" * 32)
    with pytest.raises(ValueError, match=r"tracking\.parent_run_id"), StageRun(config, stage="sft"):
        pass


@pytest.mark.slow
def test_exception_marks_run_failed_and_propagates(mlflow_server: str) -> None:
    from mlflow import MlflowClient

    run = StageRun(TrackingConfig(tracking_uri=mlflow_server, experiment="failing"), stage="sft")
    with pytest.raises(ZeroDivisionError), run:
        run_id = run.run_id
        run.log_metrics({"loss": 2.0}, step=0)
        _ = 1 / 0
    assert MlflowClient(mlflow_server).get_run(run_id).info.status == "FAILED"


@pytest.mark.slow
def test_disabled_creates_no_run_on_server(mlflow_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    with StageRun(TrackingConfig(experiment="disabled", enabled=False), stage="sft", params={"a": 1}) as run:
        run.log_metrics({"loss": 1.0}, step=0)
    assert MlflowClient(mlflow_server).get_experiment_by_name("disabled") is None


@pytest.mark.slow
def test_credentials_in_uri_are_never_printed(mlflow_server: str, capfd: pytest.CaptureFixture[str]) -> None:
    uri = mlflow_server.replace("http://", "http://admin:hunter2@")
    with StageRun(TrackingConfig(tracking_uri=uri, experiment="creds"), stage="sft", params={"a": 1}) as run:
        run.log_metrics({"loss": 1.0}, step=0)
        assert run.tracking_uri == mlflow_server
    out, err = capfd.readouterr()
    assert "hunter2" not in out + err and "admin" not in out + err


@pytest.mark.slow
def test_failing_params_close_the_run(mlflow_server: str) -> None:
    from mlflow import MlflowClient

    run = StageRun(
        TrackingConfig(tracking_uri=mlflow_server, experiment="bad"), stage="sft", params={"bad!key": 1}
    )
    with pytest.raises(Exception, match="bad!key"), run:
        pass
    assert MlflowClient(mlflow_server).get_run(run.run_id).info.status == "FAILED"  # not left RUNNING


def _interrupted(config: TrackingConfig, stage: str = "grpo") -> tuple[str, dict]:
    """A run that logged steps 1-3, was checkpointed at step 2 and then died (status FAILED)."""
    run = StageRun(config, stage=stage, params={"lr": 0.1, "checkpoint.resume": False})
    with pytest.raises(RuntimeError), run:
        for step in (1, 2, 3):
            run.log_metrics({"loss": float(step), "kl": float("nan") if step == 1 else 0.0}, step=step)
            if step == 2:
                state = run.resume_state(step)
        raise RuntimeError("killed")
    assert run.run_id is not None
    return run.run_id, state


@pytest.mark.slow
def test_resumed_stage_continues_its_run(mlflow_server: str, capsys: pytest.CaptureFixture[str]) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server)
    config = TrackingConfig(tracking_uri=mlflow_server, experiment="resume")
    run_id, state = _interrupted(config)
    assert state == {"run_id": run_id, "tracking_uri": mlflow_server, "step": 2}
    assert client.get_run(run_id).info.status == "FAILED"
    params = {"lr": 0.1, "checkpoint.resume": True, "data.rows": 12}  # one changed, one new
    for attempt in (1, 2):  # resumed twice from the same checkpoint (e.g. two preemptions)
        with StageRun(config, stage="grpo", params=params, resume=state) as run:
            assert run.run_id == run_id and run.resumed
            assert client.get_run(run_id).info.status == "RUNNING"
            for step in (3, 4):
                run.log_metrics({"loss": 10.0 * step, "kl": 0.0}, step=step)
        line = capsys.readouterr().err
        assert f"resuming MLflow run {run_id} at step 2" in line
        assert "not logged again" in line  # step 3 (and, the second time, 4) were logged already
        assert client.get_run(run_id).data.tags["sayo.resumes"] == str(attempt)
    logged = client.get_run(run_id)
    assert logged.info.status == "FINISHED"
    assert len(client.search_runs([logged.info.experiment_id])) == 1
    assert logged.data.params == {"lr": "0.1", "checkpoint.resume": "false", "data.rows": "12"}
    record = json.loads(logged.data.tags["sayo.resume.1"])
    assert record == {"step": 2, "changed_params": {"checkpoint.resume": {"logged": "false", "now": "true"}}}
    assert logged.data.tags["sayo.nan_metrics_skipped"] == "1"  # the count carries over
    history = [(m.step, m.value) for m in client.get_metric_history(run_id, "loss")]
    assert history == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0)]  # step 3: the first attempt's, once


@pytest.mark.slow
@pytest.mark.parametrize(
    ("change", "why"),
    [
        ("elsewhere", "is not on"),  # resumed against another tracking store
        ("experiment", "is in experiment"),  # the recipe now logs to another experiment
        ("stage", "belongs to stage 'sft'"),  # a state of another stage's run
        ("deleted", "was deleted"),
        ("untracked", "records no MLflow run"),  # the checkpoint was written with tracking off
    ],
)
def test_a_run_that_cannot_be_continued_gives_a_new_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: str, why: str
) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'first.db'}"
    config = TrackingConfig(tracking_uri=uri, experiment="first")
    run_id, state = _interrupted(config, stage="sft" if change == "stage" else "grpo")
    if change == "elsewhere":
        config = TrackingConfig(tracking_uri=f"sqlite:///{tmp_path / 'other.db'}", experiment="first")
    elif change == "experiment":
        config = TrackingConfig(tracking_uri=uri, experiment="second")
    elif change == "deleted":
        MlflowClient(uri).delete_run(run_id)
    elif change == "untracked":
        state = {"run_id": None, "step": 2}
    capsys.readouterr()
    with StageRun(config, stage="grpo", params={"lr": 0.2}, resume=state) as run:  # lr may change now
        run.log_metrics({"loss": 3.0}, step=3)
    assert run.run_id != run_id and not run.resumed
    err = capsys.readouterr().err
    assert why in err and "starting a new run" in err
    assert change == "untracked" or f"the checkpoint's MLflow run {run_id}" in err
    logged = MlflowClient(resolve_tracking_uri(config)).get_run(run.run_id)
    assert logged.info.status == "FINISHED" and logged.data.params == {"lr": "0.2"}
