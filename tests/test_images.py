"""The images and the one constraints file, checked statically (Docker does not run here; hadolint
and actionlint run in `make lint-infra`): pinned bases, every pip install pinned by constraints.txt,
sayo from the build context, a non-root user; constraints.txt itself; the workflow wiring."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "infra" / "docker"
DOCKERFILES = {name: DOCKER / f"Dockerfile.{name}" for name in ("cpu", "cuda", "mlflow")}
sys.path.insert(0, str(ROOT / "infra"))

import constraints as constraints_script  # noqa: E402


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            keyword, _, args = pending.partition(" ")
            out.append((keyword.upper(), " ".join(args.split())))
            pending = ""
    return out


def _project() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    return dict(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"])


def pins() -> dict[str, str]:
    lines = [
        line
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    return dict(line.split("==", 1) for line in lines)


def test_dockerfile_parser_joins_continuations(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("# c\nFROM a:1.2.3\nRUN x \\\n    && y\n\nUSER 1000\n")
    assert instructions(tmp_path / "Dockerfile") == [("FROM", "a:1.2.3"), ("RUN", "x && y"), ("USER", "1000")]


def bases(name: str) -> list[str]:
    return [args.split()[0] for keyword, args in instructions(DOCKERFILES[name]) if keyword == "FROM"]


# `python:3.11.13-slim-bookworm@sha256:<64 hex>`: the tag for the reader, the digest for the build
PINNED = re.compile(r"(?P<name>[^:@\s]+):(?P<tag>[^:@\s]*\d+\.\d+\.\d+[^:@\s]*)@sha256:[0-9a-f]{64}")


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_base_image_is_pinned_by_digest(name: str) -> None:
    """A tag moves (the official images are rebuilt on every Debian update); a digest does not."""
    assert bases(name)
    for base in bases(name):
        assert PINNED.fullmatch(base), f"{name}: {base} is not <image>:<x.y.z tag>@sha256:<digest>"


def test_images_share_one_base_on_the_python_constraints_txt_was_resolved_on() -> None:
    """The versions in constraints.txt were resolved on one Python: every image runs that Python
    (x.y), from one base image, and none installs another one."""
    header = re.search(r"Resolved on Python (\d+\.\d+)\.\d+", (ROOT / "constraints.txt").read_text())
    assert header, "constraints.txt does not say which Python it was resolved on"
    every = {base for name in DOCKERFILES for base in bases(name)}
    assert len(every) == 1, f"the images have different bases: {sorted(every)}"
    base = PINNED.fullmatch(every.pop())
    assert base and base["name"] in ("python", "docker.io/library/python"), base
    assert base["tag"].startswith(f"{header.group(1)}."), (base["tag"], header.group(1))
    assert constraints_script.image_python() == header.group(1)
    for name in DOCKERFILES:
        runs = [args for keyword, args in instructions(DOCKERFILES[name]) if keyword == "RUN"]
        apt = [c for args in runs for c in re.split(r"&&|;", args) if "apt-get install" in c]
        assert not [c for c in apt if re.search(r"\bpython", c)], f"{name} installs a second Python: {apt}"


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_every_pip_install_is_pinned_by_constraints_txt(name: str) -> None:
    steps = instructions(DOCKERFILES[name])
    copied = next(i for i, (k, a) in enumerate(steps) if k == "COPY" and a.split()[0] == "constraints.txt")
    installs = [(i, a) for i, (k, a) in enumerate(steps) if k == "RUN" and "pip install" in a]
    assert installs
    for index, args in installs:
        for command in re.split(r"&&|;", args):
            if "pip install" in command:
                assert index > copied and re.search(r"-c \S*constraints\.txt", command), command
                assert not re.search(r"==|>=", command), f"a version outside constraints.txt: {command}"


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_runs_as_a_non_root_user(name: str) -> None:
    steps = instructions(DOCKERFILES[name])
    users = [i for i, (k, _) in enumerate(steps) if k == "USER"]
    assert users, "no USER"
    last = users[-1]
    user = steps[last][1].split(":")[0]
    assert user not in ("0", "root") and (not user.isdigit() or int(user) >= 1000)
    assert all(k != "RUN" for k, _ in steps[last:]), "RUN after USER: the image was left as root"


@pytest.mark.parametrize("name", ["cpu", "cuda"])
def test_sayo_comes_from_the_build_context_at_its_commit(name: str) -> None:
    steps = instructions(DOCKERFILES[name])
    assert ("COPY", "sayo ./sayo") in steps and ("COPY", "pyproject.toml README.md ./") in steps
    install = next(a for k, a in steps if k == "RUN" and '".[train,data,pipeline]"' in a)
    assert "pip check" in install
    assert ("ARG", "SAYO_COMMIT=unknown") in steps
    assert any(k == "LABEL" and 'org.opencontainers.image.revision="${SAYO_COMMIT}"' in a for k, a in steps)
    torch = next(a for k, a in steps if k == "RUN" and "torch" in a.split())
    # the build (CPU/CUDA) from its own index, at the version constraints.txt pins
    assert "--no-deps" in torch and "--index-url" in torch


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_build_context_lets_constraints_txt_in(name: str) -> None:
    ignore = (DOCKER / f"Dockerfile.{name}.dockerignore").read_text().splitlines()
    assert "*" in ignore and "!constraints.txt" in ignore


def test_mlflow_image_installs_the_mlflow_server_extra() -> None:
    project = _project()
    wanted = {Requirement(r).name for r in project["optional-dependencies"]["mlflow-server"]}
    run = next(a for k, a in instructions(DOCKERFILES["mlflow"]) if k == "RUN" and "pip install" in a)
    command = run.split("&&")[0].split()
    named = {word for word in command[command.index("install") + 1 :] if not word.startswith("-")}
    assert named - {"/tmp/constraints.txt"} == wanted


def test_constraints_pin_every_requirement_within_its_range() -> None:
    """Each requirement of sayo and of the extras constraints.txt covers (all but `bench`, the TRL
    comparison installed on its own) has a pin, and the pin satisfies the requirement."""
    project = _project()
    extras = {name: reqs for name, reqs in project["optional-dependencies"].items() if name != "bench"}
    requirements = [*project["dependencies"], *(r for reqs in extras.values() for r in reqs)]
    pinned = pins()
    for text in requirements:
        requirement = Requirement(text)
        if requirement.name == "sayo":
            continue  # sayo[data] inside dev: the checkout itself
        name = constraints_script.canonical(requirement.name)
        assert name in pinned, f"{name} ({text}) is not in constraints.txt: run `make constraints`"
        assert requirement.specifier.contains(Version(pinned[name]), prereleases=True), (text, pinned[name])


def test_constraints_txt_is_well_formed() -> None:
    lines = [
        line
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    names = [line.split("==")[0] for line in lines]
    assert names == sorted(names) and len(names) == len(set(names))
    for line in lines:
        assert re.fullmatch(r"[a-z0-9][a-z0-9.-]*==[0-9][A-Za-z0-9.!]*", line), (
            line
        )  # no local labels, no URLs
    assert not [n for n in names if n in ("sayo", "pip", "setuptools") or n.startswith("nvidia-")]


def test_makefile_installs_with_the_constraints_and_the_pinned_torch() -> None:
    makefile = (ROOT / "Makefile").read_text()
    torch_spec = re.search(r"^TORCH_SPEC \?= torch==(\S+)$", makefile, re.M)
    assert torch_spec and pins()["torch"] == torch_spec.group(1)  # the CPU wheel of the pinned version
    recipe = makefile.split("$(STAMP): pyproject.toml $(CONSTRAINTS)\n", 1)[1].split("\n\n", 1)[0]
    installs = [line for line in recipe.splitlines() if "pip install" in line and "--upgrade pip" not in line]
    assert len(installs) == 2 and all("-c $(CONSTRAINTS)" in line for line in installs)
    assert re.search(r"^constraints:$", makefile, re.M) and "CONSTRAINTS := constraints.txt" in makefile


@pytest.mark.parametrize(
    ("dists", "lines"),
    [
        (
            {"torch": "2.13.0+cpu", "NumPy": "2.4.6"},
            ["numpy==2.4.6", "torch==2.13.0"],
        ),  # label dropped, sorted
        ({"sayo": "0.1.0", "pip": "26", "setuptools": "80", "wheel": "1"}, []),  # the checkout, the installer
        (
            {"nvidia-cudnn-cu12": "9.1", "triton": "3.4.0", "cuda-bindings": "13.5", "Jinja2": "3.1.6"},
            ["jinja2==3.1.6"],
        ),
        (
            {"ruamel.yaml": "0.18.1", "typing_extensions": "4.15"},
            ["ruamel-yaml==0.18.1", "typing-extensions==4.15"],
        ),
    ],
)
def test_constraint_lines(dists: dict[str, str], lines: list[str]) -> None:
    assert constraints_script.constraint_lines(dists) == lines


def _workflow(name: str) -> dict:
    data = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def test_images_are_tagged_with_the_commit_and_retrain_submits_exactly_them() -> None:
    images = _workflow("images.yml")
    assert {"push", "workflow_dispatch", "workflow_call"} <= set(images["on"])
    names = "\n".join(step.get("run", "") for step in images["jobs"]["plan"]["steps"])
    assert "image=$registry/sayo:$SHA-cpu" in names and "gpu_image=$registry/sayo:$SHA-cuda" in names
    builds = {
        entry["name"]: entry["dockerfile"]
        for entry in images["jobs"]["build"]["strategy"]["matrix"]["include"]
    }
    assert builds == {name: f"infra/docker/Dockerfile.{name}" for name in ("cpu", "cuda", "mlflow")}
    text = (ROOT / ".github" / "workflows" / "images.yml").read_text()
    assert "password: ${{ secrets." in text and "REGISTRY_PASSWORD" in text  # credentials from secrets only

    retrain = _workflow("retrain.yml")
    assert retrain["jobs"]["images"]["uses"] == "./.github/workflows/images.yml"
    assert retrain["jobs"]["retrain"]["needs"] == "images"
    submit = next(s for s in retrain["jobs"]["retrain"]["steps"] if s.get("name") == "Submit to the cluster")
    assert submit["env"]["IMAGE"] == "${{ needs.images.outputs.image }}"
    assert submit["env"]["GPU_IMAGE"] == "${{ needs.images.outputs.gpu_image }}"
    assert '--arg "image=$IMAGE" --arg "gpu_image=$GPU_IMAGE"' in submit["run"]


@pytest.mark.parametrize(("python", "code"), [("3.11.7", 0), ("3.12.3", 2), ("3.1.2", 2)])
def test_constraints_are_resolved_only_on_the_images_python(
    python: str, code: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    facts = {"python": python, "system": "Linux", "machine": "x86_64"}
    monkeypatch.setattr(
        constraints_script, "installed", lambda _: ({"sayo": "0.1.0", "numpy": "2.4.6"}, facts)
    )
    assert constraints_script.main(["--python", "py"]) == code
    out, err = capsys.readouterr()
    if code:
        assert not out and f"is Python {python}, the images' is 3.11" in err
    else:
        assert out.endswith("numpy==2.4.6\n") and "Resolved on Python 3.11.7" in out


def test_components_default_to_the_release_images_ci_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pipeline's default images are tags images.yml pushes: for the release tag v<version>,
    `<registry>/sayo:<version>-cpu` and `-cuda`, the registry defaulting to ghcr.io/<owner>."""
    pytest.importorskip("kfp")
    import importlib

    monkeypatch.delenv("SAYO_IMAGE", raising=False)
    components = importlib.reload(importlib.import_module("sayo.kubeflow.components"))
    version = _project()["version"]
    images = _workflow("images.yml")
    assert images["on"]["push"]["tags"] == ["v*"]
    plan = "\n".join(step.get("run", "") for step in images["jobs"]["plan"]["steps"])
    assert '"$REF_NAME" != "v$version"' in plan  # a release tag must be pyproject.toml's version
    assert "release_image=$registry/sayo:$version-cpu" in plan
    assert "release_gpu_image=$registry/sayo:$version-cuda" in plan
    assert 'registry="${REGISTRY_INPUT:-${REGISTRY_VAR:-ghcr.io/$OWNER}}"' in plan
    build = next(s for s in images["jobs"]["build"]["steps"] if s.get("name") == "Build and push")
    assert "needs.plan.outputs[matrix.release]" in build["with"]["tags"]
    assert "SAYO_VERSION=${{ needs.plan.outputs.version }}" in build["with"]["build-args"]
    releases = {e["name"]: e["release"] for e in images["jobs"]["build"]["strategy"]["matrix"]["include"]}
    assert releases == {"cpu": "release_image", "cuda": "release_gpu_image", "mlflow": "release_mlflow_image"}
    owner = components.REGISTRY.removeprefix("ghcr.io/")
    defaults = (components.IMAGE, components.GPU_IMAGE)
    assert defaults == (f"ghcr.io/{owner}/sayo:{version}-cpu", f"ghcr.io/{owner}/sayo:{version}-cuda")
    kustomization = yaml.safe_load((ROOT / "infra/k8s/base/kustomization.yaml").read_text())
    assert {i["newName"] for i in kustomization["images"]} == {f"ghcr.io/{owner}/sayo-mlflow"}  # one owner


@pytest.mark.parametrize(
    ("image", "gpu"),
    [
        ("ghcr.io/o/sayo:0123abc-cpu", "ghcr.io/o/sayo:0123abc-cuda"),  # images.yml's pair
        ("ghcr.io/o/sayo:0.2.0-cpu", "ghcr.io/o/sayo:0.2.0-cuda"),
        ("registry.example/sayo:1.2", "registry.example/sayo:1.2-cuda"),
    ],
)
def test_the_gpu_image_beside_a_cpu_image(image: str, gpu: str) -> None:
    components = pytest.importorskip("sayo.kubeflow.components")
    assert components.gpu_image_for(image) == gpu
