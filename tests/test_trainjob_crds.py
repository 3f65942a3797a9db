"""The multi-node GRPO job specs against the published CRD schemas of the operators that run them.

The schemas are vendored from the operators' releases (tests/data/crds/README.md). The API server
prunes, or with `fieldValidation=Strict` (which `create_and_wait` sets) rejects, every field a
CRD's structural schema does not declare; plain JSON Schema allows them. So every object schema
with declared properties is closed here (`additionalProperties: false`), which is what makes a
misspelled or removed field (Trainer 2.2's dropped `podTemplateOverrides`) fail. List-map and
list-set uniqueness (`x-kubernetes-list-type`) is checked too; CEL rules (`x-kubernetes-validations`)
are not evaluated.
"""

from __future__ import annotations

import copy
import gzip
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

jsonschema = pytest.importorskip("jsonschema")

from sayo.kubeflow.trainjob import RESOURCES, JobRequest, job_manifest  # noqa: E402

CRDS = Path(__file__).parent / "data" / "crds"
# (file, the kind's resource) of every vendored CRD; the TrainJob forms are checked against their releases
SCHEMAS = {
    "trainer-v2.1.0": ("trainjobs-v2.1.0.yaml.gz", "trainjob"),
    "trainer-v2.2.0": ("trainjobs-v2.2.0.yaml.gz", "trainjob"),
    "trainer-v2.3.0": ("trainjobs-v2.3.0.yaml.gz", "trainjob"),
    "training-operator-v1.9.4": ("pytorchjobs-v1.9.4.yaml.gz", "pytorchjob"),
}


def closed(schema: Any) -> Any:
    """A copy of an OpenAPI v3 structural schema in which undeclared object fields are errors."""
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {
        key: (
            {name: closed(sub) for name, sub in value.items()}
            if key == "properties"
            else value
            if key
            in ("enum", "default", "required", "x-kubernetes-validations", "x-kubernetes-list-map-keys")
            else closed(value)
        )
        for key, value in schema.items()
    }
    open_ended = out.get("x-kubernetes-preserve-unknown-fields") or "additionalProperties" in out
    if "properties" in out and not open_ended:
        out["additionalProperties"] = False
    if out.get("nullable"):
        out["type"] = [out["type"], "null"]
    return out


def _list_type(validator: Any, list_type: str, instance: Any, schema: dict[str, Any]) -> Any:
    """The API server's uniqueness of `set` items and of `map` items' keys."""
    if not isinstance(instance, list) or list_type not in ("set", "map"):
        return
    keys = schema.get("x-kubernetes-list-map-keys", [])
    seen = set()
    for item in instance:
        key = repr(item) if list_type == "set" else repr([item.get(k) for k in keys])
        if key in seen:
            yield jsonschema.ValidationError(f"duplicate {list_type} entry {key} (keys {keys})")
        seen.add(key)


@cache
def validator(name: str) -> Any:
    file, kind = SCHEMAS[name]
    with gzip.open(CRDS / file, "rt", encoding="utf-8") as stream:
        crd = yaml.load(stream, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    group, version, plural = RESOURCES[kind]
    assert (crd["spec"]["group"], crd["spec"]["names"]["plural"]) == (group, plural), file
    [served] = [v for v in crd["spec"]["versions"] if v["name"] == version]
    # OpenAPI 3.0 schemas are JSON Schema draft 4 plus extensions (draft 4's exclusiveMinimum, no `const`)
    cls = jsonschema.validators.extend(jsonschema.Draft4Validator, {"x-kubernetes-list-type": _list_type})
    schema = closed(served["schema"]["openAPIV3Schema"])
    cls.check_schema(schema)
    return cls(schema)


def errors(manifest: dict[str, Any], schema: str) -> list[str]:
    found = validator(schema).iter_errors(manifest)
    return sorted(f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in found)


def request(**changes: Any) -> JobRequest:
    base: dict[str, Any] = {
        "name": "sayo-grpo-abc-job",
        "namespace": "ml",
        "image": "ghcr.io/sayo-ml/sayo:0123abc-cuda",
        "config": "qwen2_5_vl_7b",
        "overrides": ["grpo.group_size=8", "deepspeed.config=zero3"],
        "staging_uri": "s3://sayo-artifacts/trainjobs/run-1",
        "nodes": 4,
        "gpus_per_node": 8,
        "service_account": "sayo-pipeline",
    }
    return JobRequest(**{**base, **changes})


@pytest.mark.parametrize(
    ("changes", "schema"),
    [
        ({"trainer_api": "v2.2"}, "trainer-v2.2.0"),  # the default form, on the release that introduced it
        ({"trainer_api": "v2.2"}, "trainer-v2.3.0"),  # ... and on the current release
        ({"trainer_api": "v2.1"}, "trainer-v2.1.0"),
        ({"kind": "pytorchjob"}, "training-operator-v1.9.4"),
        ({"kind": "pytorchjob", "nodes": 1}, "training-operator-v1.9.4"),  # Master only
    ],
)
def test_job_spec_is_valid_for_its_operator(changes: dict[str, Any], schema: str) -> None:
    assert errors(job_manifest(request(**changes)), schema) == []


@pytest.mark.parametrize(
    ("changes", "schema", "message"),
    [
        # each TrainJob form on the other release: the field that moved is reported
        ({"trainer_api": "v2.1"}, "trainer-v2.2.0", "'podTemplateOverrides' was unexpected"),
        ({"trainer_api": "v2.2"}, "trainer-v2.1.0", "'runtimePatches' was unexpected"),
    ],
)
def test_each_trainjob_form_fails_on_the_other_release(
    changes: dict[str, Any], schema: str, message: str
) -> None:
    found = errors(job_manifest(request(**changes)), schema)
    assert any(message in e for e in found), found


def _node_patch(job: dict[str, Any]) -> dict[str, Any]:
    patch = job["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    return patch["template"]["spec"]["template"]["spec"]


def _break_container(job: dict[str, Any]) -> None:
    _node_patch(job)["containers"][0]["envFrom"] = [{"secretRef": {"name": "sayo-s3"}}]  # not patchable


def _break_numnodes(job: dict[str, Any]) -> None:
    job["spec"]["trainer"]["numNodes"] = "4"  # a string where the CRD wants an integer


def _duplicate_env(job: dict[str, Any]) -> None:
    job["spec"]["trainer"]["env"].append(dict(job["spec"]["trainer"]["env"][0]))  # list-map key twice


def _break_replicas(job: dict[str, Any]) -> None:
    job["spec"]["pytorchReplicaSpecs"]["Master"]["replica"] = 1  # misspelled `replicas`


def _drop_manager(job: dict[str, Any]) -> None:
    del job["spec"]["runtimePatches"][0]["manager"]  # required: patches are keyed by it


@pytest.mark.parametrize(
    ("changes", "schema", "mutate", "message"),
    [
        ({}, "trainer-v2.2.0", _break_container, "'envFrom' was unexpected"),
        ({}, "trainer-v2.2.0", _break_numnodes, "is not of type 'integer'"),
        ({}, "trainer-v2.2.0", _duplicate_env, "duplicate map entry"),
        ({}, "trainer-v2.2.0", _drop_manager, "'manager' is a required property"),
        ({"kind": "pytorchjob"}, "training-operator-v1.9.4", _break_replicas, "'replica' was unexpected"),
    ],
)
def test_a_wrong_field_fails_validation(
    changes: dict[str, Any], schema: str, mutate: Any, message: str
) -> None:
    job = copy.deepcopy(job_manifest(request(**changes)))
    assert errors(job, schema) == []
    mutate(job)
    found = errors(job, schema)
    assert any(message in e for e in found), found
