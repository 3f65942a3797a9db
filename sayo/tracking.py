"""One MLflow run per stage: `with StageRun(config.tracking, stage="grpo", params=...) as run:`.

Why a small wrapper instead of calling `mlflow.*` in each trainer (docs/architecture.md, "Tracking
and registry"): every stage must log the same way — the whole resolved config as params, per-step
metrics, artifacts — to wherever `MLFLOW_TRACKING_URI` points, and fail fast and clearly when
that server is down instead of hanging in MLflow's own retries (minutes) mid-training.

Choices:
- The URI is `tracking.tracking_uri`, else `$MLFLOW_TRACKING_URI`, else a local sqlite store
  `./mlruns.db` with artifacts in `./mlartifacts`: MLflow 3 deprecates the plain file store
  (`./mlruns`), and sqlite is the local store the server and the model registry fully support.
- An http(s) server is probed (`GET /health`, a few seconds, no retries) before anything else,
  so an unreachable server raises `TrackingUnavailable` and logs nothing.
- `MlflowClient` with explicit run ids, never the fluent `mlflow.start_run` stack: no global
  state. A nested run is a run tagged `mlflow.parentRunId`, created in the parent's experiment
  (which is what the MLflow UI nests by).
- Metrics are logged as given (MLflow stores ±inf as ±max float) except NaN, which is skipped
  and counted in the `sayo.nan_metrics_skipped` tag, so one bad step cannot break a chart.
- A resumed stage continues its run (`resume=`, what `resume_state` returned when the checkpoint
  was written, stored in the checkpoint): the same run id, reopened as RUNNING, params only added
  (a param whose value changed, e.g. `checkpoint.resume`, keeps its first value and the change is
  recorded in a `sayo.resume.<n>` tag), and no step logged twice: each metric batch also sets the
  `sayo.last_step` tag, and steps the interrupted attempt logged after its last checkpoint are not
  logged again (a resume is exact, so they hold the values the resumed run computes). A run that
  is not on this server (resumed elsewhere), deleted, of another stage or in another experiment
  than the recipe names is not continued: a new run starts, with a line saying why.
- mlflow is imported lazily: with `enabled=False` nothing is imported and every method no-ops.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import math
import os
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MAX_PARAM_VALUE = 6000  # mlflow.utils.validation.MAX_PARAM_VAL_LENGTH
MAX_KEY = 250  # mlflow.utils.validation.MAX_ENTITY_KEY_LENGTH
PARAMS_PER_BATCH = 100  # MAX_PARAMS_TAGS_PER_BATCH
METRICS_PER_BATCH = 1000  # MAX_METRICS_PER_BATCH
TRUNCATED = "...[truncated]"
LAST_STEP_TAG = "sayo.last_step"  # the highest step whose metrics are logged
RESUMES_TAG = "sayo.resumes"  # how many times the run was continued; `sayo.resume.<n>` says from where
NAN_TAG = "sayo.nan_metrics_skipped"


@dataclass
class TrackingConfig:
    """MLflow: tracking URI from MLFLOW_TRACKING_URI, else a local sqlite store."""

    experiment: str = "sayo"  # MLflow experiment of every stage's run
    run_name: str | None = None  # run name (default: the stage's name)
    parent_run_id: str | None = None  # nest the stage's run under a pipeline run
    tracking_uri: str | None = None  # overrides MLFLOW_TRACKING_URI
    enabled: bool = True  # false: log nothing (no MLflow import at all)


class TrackingUnavailable(RuntimeError):
    """The MLflow tracking server cannot be reached (or rejects us)."""


def resolve_tracking_uri(config: TrackingConfig) -> str:
    """`config.tracking_uri`, else `$MLFLOW_TRACKING_URI`, else `sqlite:///<cwd>/mlruns.db`."""
    if config.tracking_uri:
        return config.tracking_uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{Path('mlruns.db').resolve()}"


def redact(uri: str) -> str:
    """`uri` without `user:password@`, for messages and logs."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def check_tracking(uri: str, timeout: float = 5.0) -> None:
    """For an http(s) URI, one `GET <uri>/health` (no retries); raise TrackingUnavailable if it fails.

    Other URIs (sqlite, file, databricks) are not probed.
    """
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return
    public = redact(uri)
    request = urllib.request.Request(public.rstrip("/") + "/health")
    if parts.username is not None:  # credentials in the URI: send them as basic auth, never print them
        token = base64.b64encode(f"{parts.username}:{parts.password or ''}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    hint = "start it or unset MLFLOW_TRACKING_URI to log locally"
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return
    except urllib.error.HTTPError as err:
        if err.code in (401, 403):
            raise TrackingUnavailable(
                f"MLflow tracking server at {public} rejected the request (HTTP {err.code}): "
                "set MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN"
            ) from None
        if err.code < 500:  # e.g. a proxy without /health: the server answered, so it is up
            return
        reason = f"HTTP {err.code}"
    except (urllib.error.URLError, OSError) as err:  # refused, DNS, timeout
        reason = str(getattr(err, "reason", err))
    raise TrackingUnavailable(f"MLflow tracking server at {public} is unreachable ({reason}): {hint}")


def notice(message: str) -> None:
    """A line for the user on stderr (the progress bars' stream), outside any logging setup."""
    print(f"sayo: {message}", file=sys.stderr, flush=True)


def prepare_params(params: Mapping[str, Any]) -> dict[str, str]:
    """Params as strings within MLflow's limits: long values end in a marker, long keys in a hash.

    Non-string values are JSON-encoded (`0.0005`, `true`, `null`, `["q_proj", "v_proj"]`).
    """
    out: dict[str, str] = {}
    for key, value in params.items():
        key = str(key)
        if len(key) > MAX_KEY:
            key = key[: MAX_KEY - 9] + "~" + hashlib.sha1(key.encode()).hexdigest()[:8]
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        if len(text) > MAX_PARAM_VALUE:
            text = text[: MAX_PARAM_VALUE - len(TRUNCATED)] + TRUNCATED
        out[key] = text
    return out


class StageRun:
    """The MLflow run of one stage; a context manager. With `config.enabled=False` all no-ops.

    Attributes:
        run_id: the run's id once entered, kept after the `with` (None when disabled).
        enabled: whether anything is logged.
        tracking_uri: where (credentials redacted), once entered.
        nan_skipped: NaN metric values skipped so far.
        resumed: whether the run continues the one in `resume` (else it is new).
    """

    def __init__(
        self,
        config: TrackingConfig,
        stage: str,
        params: Mapping[str, Any] | None = None,
        timeout: float = 5.0,
        resume: Mapping[str, Any] | None = None,
    ) -> None:
        """`resume`: `resume_state(step)` of the run a checkpoint was written in, to continue it."""
        self.config = config
        self.stage = stage
        self.params = dict(params or {})
        self.timeout = timeout
        self.enabled = config.enabled
        self.resume = dict(resume) if resume else None
        self.run_id: str | None = None
        self.tracking_uri: str | None = None
        self.nan_skipped = 0
        self.resumed = False
        self._client: Any = None
        self._active = False  # inside the `with`: the log_* methods write only then
        self._logged_through: int | None = None  # steps up to this one are in the run already

    def __enter__(self) -> StageRun:
        if not self.enabled:
            return self
        uri = resolve_tracking_uri(self.config)
        check_tracking(uri, self.timeout)
        from mlflow import MlflowClient

        self._client = MlflowClient(tracking_uri=uri)
        self.tracking_uri = redact(uri)
        tags = {"sayo.stage": self.stage}
        if self.config.parent_run_id:
            experiment_id = self._parent_experiment(self.config.parent_run_id)
            tags["mlflow.parentRunId"] = self.config.parent_run_id
        else:
            experiment_id = self._experiment_id(uri)
        previous = self._continuable(experiment_id) if self.resume else None
        if previous is not None:
            self._reopen(previous)
            return self
        run = self._client.create_run(experiment_id, run_name=self.config.run_name or self.stage, tags=tags)
        self.run_id = run.info.run_id
        self._active = True
        try:
            self.log_params(self.params)
        except BaseException:  # no `with` body, so no __exit__: close the run here
            self.__exit__(*sys.exc_info())
            raise
        return self

    def resume_state(self, step: int) -> dict[str, Any] | None:
        """What a checkpoint written at `step` stores so a resumed stage continues this run (JSON)."""
        if not self._active:
            return None
        return {"run_id": self.run_id, "tracking_uri": self.tracking_uri, "step": int(step)}

    def _continuable(self, experiment_id: str) -> Any:
        """The checkpoint's run if this stage may continue it here, else None (with a line saying why)."""
        from mlflow.exceptions import MlflowException

        assert self.resume is not None
        run_id = self.resume.get("run_id")
        where = self.resume.get("tracking_uri") or "an unrecorded tracking URI"
        if not run_id:
            notice("the checkpoint records no MLflow run (tracking was off): starting a new run")
            return None
        try:
            run = self._client.get_run(run_id)
        except MlflowException as err:
            if err.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise
            notice(
                f"the checkpoint's MLflow run {run_id} (logged to {where}) is not on {self.tracking_uri}: "
                "starting a new run"
            )
            return None
        why = ""
        if run.info.lifecycle_stage != "active":
            why = "was deleted"
        elif run.data.tags.get("sayo.stage") != self.stage:
            why = f"belongs to stage {run.data.tags.get('sayo.stage')!r}, not {self.stage!r}"
        elif str(run.info.experiment_id) != experiment_id:
            why = f"is in experiment {run.info.experiment_id}, the recipe logs to experiment {experiment_id}"
        if why:
            notice(f"the checkpoint's MLflow run {run_id} {why}: starting a new run")
            return None
        return run

    def _reopen(self, run: Any) -> None:
        """Continue `run`: RUNNING again, new params added, changed ones recorded, logged steps skipped."""
        assert self.resume is not None
        self.run_id = run.info.run_id
        step = int(self.resume.get("step", 0))
        tags = run.data.tags
        logged = prepare_params(run.data.params)
        wanted = prepare_params(self.params)
        changed = {
            k: {"logged": logged[k], "now": v} for k, v in wanted.items() if k in logged and logged[k] != v
        }
        resumes = int(tags.get(RESUMES_TAG, "0")) + 1
        self.nan_skipped = int(tags.get(NAN_TAG, "0"))
        last = int(tags[LAST_STEP_TAG]) if LAST_STEP_TAG in tags else None
        self._logged_through = last if last is not None and last > step else None
        self._client.update_run(self.run_id, status="RUNNING")
        self._active = True
        try:
            self.log_params({k: v for k, v in wanted.items() if k not in logged})
            record = json.dumps({"step": step, "changed_params": changed})
            if len(record) > MAX_PARAM_VALUE:  # too long for a tag: the keys only, still JSON
                record = json.dumps({"step": step, "changed_params": sorted(changed)})[:MAX_PARAM_VALUE]
            self._client.set_tag(self.run_id, f"sayo.resume.{resumes}", record)
            self._client.set_tag(self.run_id, RESUMES_TAG, str(resumes))
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        self.resumed = True
        line = f"resuming MLflow run {self.run_id} at step {step} ({self.tracking_uri})"
        if self._logged_through is not None:
            done = range(step + 1, self._logged_through + 1)
            steps = f"step {done[0]} is" if len(done) == 1 else f"steps {done[0]}..{done[-1]} are"
            line += f"; {steps} in the run already (the interrupted attempt logged them), not logged again"
        notice(line)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._active:
            return
        self._active = False
        status = "FINISHED" if exc_type is None else "KILLED" if exc_type is KeyboardInterrupt else "FAILED"
        try:
            if self.nan_skipped:
                self._client.set_tag(self.run_id, NAN_TAG, str(self.nan_skipped))
            self._terminate(status)
        except Exception:
            if exc_type is None:
                raise  # otherwise keep the stage's own exception, not the tracking one

    def log_params(self, params: Mapping[str, Any]) -> None:
        """More params (MLflow params are write-once: a key already logged must keep its value)."""
        if not self._active:
            return
        from mlflow.entities import Param

        batch = [Param(k, v) for k, v in prepare_params(params).items()]
        for start in range(0, len(batch), PARAMS_PER_BATCH):
            self._client.log_batch(self.run_id, params=batch[start : start + PARAMS_PER_BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Log `metrics` at `step` in one batch; NaN values are skipped and counted.

        In a continued run, steps the interrupted attempt already logged are skipped.
        """
        if not self._active or (self._logged_through is not None and step <= self._logged_through):
            return
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        batch = []
        for key, value in metrics.items():
            try:
                number = float(value)
            except (TypeError, ValueError) as err:
                raise TypeError(f"metric {key!r} = {value!r} is not a number") from err
            if math.isnan(number):
                self.nan_skipped += 1
                continue
            batch.append(Metric(str(key), number, now, int(step)))
        last = [RunTag(LAST_STEP_TAG, str(int(step)))]  # with the metrics: a resume knows what is logged
        for start in range(0, max(len(batch), 1), METRICS_PER_BATCH):
            self._client.log_batch(self.run_id, metrics=batch[start : start + METRICS_PER_BATCH], tags=last)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Upload a file, or a directory's contents, under `artifact_path`."""
        if not self._active:
            return
        if Path(path).is_dir():
            self._client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self._client.log_artifact(self.run_id, str(path), artifact_path)

    def log_image(self, image: Any, name: str) -> None:
        """A PIL image (or array) as artifact `name`, e.g. `heatmaps/step_00010.png`."""
        if self._active:
            self._client.log_image(self.run_id, image, artifact_file=name)

    def log_text(self, text: str, name: str) -> None:
        if self._active:
            self._client.log_text(self.run_id, text, artifact_file=name)

    def log_dict(self, data: Mapping[str, Any], name: str) -> None:
        """A dict as a JSON (or, for `.yaml` names, YAML) artifact."""
        if self._active:
            self._client.log_dict(self.run_id, dict(data), artifact_file=name)

    def log_table(self, records: list[dict[str, Any]], name: str) -> None:
        """Rows as an MLflow table (shown in the UI's artifact and evaluation views); `.json` is added."""
        if not self._active:
            return
        import pandas as pd

        name = name if name.endswith(".json") else f"{name}.json"
        self._client.log_table(self.run_id, data=pd.DataFrame.from_records(records), artifact_file=name)

    def _terminate(self, status: str) -> None:
        """End the run; MLflow prints its UI link then, which we re-print without credentials."""
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            self._client.set_terminated(self.run_id, status)
        sys.stdout.write(re.sub(r"//[^/@\s]+@", "//", printed.getvalue()))

    def _experiment_id(self, uri: str) -> str:
        """The configured experiment, created if missing (sqlite stores keep artifacts beside the db)."""
        found = self._client.get_experiment_by_name(self.config.experiment)
        if found is not None:
            return str(found.experiment_id)
        location = None
        if uri.startswith("sqlite:///"):
            location = (Path(uri[len("sqlite:///") :]).parent / "mlartifacts").resolve().as_uri()
        return str(self._client.create_experiment(self.config.experiment, artifact_location=location))

    def _parent_experiment(self, parent_run_id: str) -> str:
        try:
            return str(self._client.get_run(parent_run_id).info.experiment_id)
        except Exception as err:
            raise ValueError(
                f"tracking.parent_run_id = {parent_run_id!r} is not a run at {self.tracking_uri}: {err}"
            ) from err
