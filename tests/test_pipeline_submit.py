"""`sayo pipeline submit` against a local HTTP server speaking the KFP v2beta1 API (no cluster)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from typer.testing import CliRunner

from sayo.cli import app
from sayo.kubeflow.submit import parse_arguments

pytest.importorskip("kfp")
ROOT = Path(__file__).resolve().parents[1]
API = "/apis/v2beta1"


class FakeKFP(BaseHTTPRequestHandler):
    """Just enough of the KFP API: healthz, experiments, runs, recurring runs; records the posts."""

    posts: ClassVar[list[tuple[str, dict[str, Any]]]] = []
    headers_seen: ClassVar[list[dict[str, str]]] = []

    def _reply(self, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.headers_seen.append(dict(self.headers))
        path = self.path.split("?")[0]
        if path == f"{API}/healthz":
            self._reply({"multi_user": False})
        elif path == f"{API}/experiments":
            self._reply({})  # no experiment of that name yet: the client creates it
        elif path.startswith(f"{API}/runs/"):
            self._reply({"run_id": path.rsplit("/", 1)[1], "state": "SUCCEEDED"})
        else:
            self.send_error(404)

    def do_POST(self) -> None:
        self.headers_seen.append(dict(self.headers))
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        self.posts.append((self.path, body))
        if self.path == f"{API}/experiments":
            self._reply({"experiment_id": "exp-1", "display_name": body.get("display_name")})
        elif self.path == f"{API}/runs":
            self._reply({"run_id": "run-42", "display_name": body.get("display_name"), "state": "PENDING"})
        elif self.path == f"{API}/recurringruns":
            self._reply({"recurring_run_id": "rec-7", "display_name": body.get("display_name")})
        else:
            self.send_error(404)

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def kfp_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    FakeKFP.posts, FakeKFP.headers_seen = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeKFP)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("KFP_TOKEN", "test-token-123")
    monkeypatch.setenv("HOME", str(tmp_path))  # no user ~/.config/kfp/context.json
    monkeypatch.chdir(ROOT)
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _post(path: str) -> dict[str, Any]:
    bodies = [body for where, body in FakeKFP.posts if where == path]
    assert len(bodies) == 1, f"expected one POST {path}, got {FakeKFP.posts}"
    return bodies[0]


def test_submit_run_sends_compiled_spec_and_parameters(kfp_server: str) -> None:
    args = ["pipeline", "submit", "--host", kfp_server, "--experiment", "nightly", "--wait"]
    args += ["--service-account", "sayo-pipeline"]
    args += ["-a", "grpo_steps=200", "-a", "reward_weights={accuracy: 1.0, region_attention: 0.5}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"{kfp_server}/#/runs/details/run-42" in result.output
    assert _post(f"{API}/experiments")["display_name"] == "nightly"
    run = _post(f"{API}/runs")
    assert run["experiment_id"] == "exp-1" and run["service_account"] == "sayo-pipeline"
    # pipeline and platform spec (placement, secrets) as compiled: equal to the checked-in YAML
    sent = run["pipeline_spec"]
    spec, platform = yaml.safe_load_all((ROOT / "pipelines/sayo_pipeline.yaml").read_text())
    assert sent["pipeline_spec"]["root"] == spec["root"]
    assert sent["pipeline_spec"]["deploymentSpec"] == spec["deploymentSpec"]
    assert sent["platform_spec"] == platform
    params = run["runtime_config"]["parameters"]
    assert params["grpo_steps"] == 200
    assert params["reward_weights"] == {"accuracy": 1.0, "region_attention": 0.5}
    # the token travels as a bearer header, never in a body
    assert any(h.get("authorization") == "Bearer test-token-123" for h in FakeKFP.headers_seen)
    assert "test-token-123" not in json.dumps(FakeKFP.posts)


def test_submit_recurring(kfp_server: str) -> None:
    args = ["pipeline", "submit", "--host", kfp_server, "--recurring", "0 0 3 * * 1", "-a", "sft_steps=5"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "recurring rec-7" in result.output
    job = _post(f"{API}/recurringruns")
    assert job["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * 1"
    assert job["runtime_config"]["parameters"] == {"sft_steps": 5}
    assert job["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "sayo"


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (["grpo_steps=3"], {"grpo_steps": 3}),  # YAML int
        (["config=configs/x.yaml"], {"config": "configs/x.yaml"}),  # plain string
        (["data_overrides=[a=1, b=2]"], {"data_overrides": ["a=1", "b=2"]}),  # a YAML list
        (["mlflow_experiment="], {"mlflow_experiment": ""}),  # empty value
    ],
)
def test_parse_arguments(items: list[str], expected: dict[str, Any]) -> None:
    assert parse_arguments(items) == expected


def test_parse_arguments_rejects_missing_equals() -> None:
    with pytest.raises(ValueError, match="name=value"):
        parse_arguments(["grpo_steps"])
