"""The architecture holds (docs/architecture.md): layers point one way, imports sit at module level,
and every dvc stage depends on the code it runs.

- `lint-imports` (`make lint`) keeps core <- stages <- recipe <- entry points, forbids a stage
  importing another stage, any cycle between sibling modules, the drawing (`sayo.viz`) importing
  the data and the stages importing the synthetic tasks; a test shows it failing on each such import.
- An import inside a function is allowed only where it defers a heavy optional dependency (named
  here with the reason), so reading a module's head shows everything it depends on.
- dvc.yaml's stage deps cover the import closure of each stage's CLI module and library entry, so
  editing any module a stage runs re-runs it under `dvc repro` (tests/test_dvc.py shows `dvc status`
  reacting; tests/test_dvc_stages.py checks the modules a tiny run of each stage really imports).
"""

from __future__ import annotations

import ast
import fnmatch
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
# packages a function may import lazily: optional extras, or heavy and only needed on one path
OPTIONAL = {"mlflow", "pandas", "kfp", "kubernetes", "deepspeed", "peft", "boto3", "botocore", "dvc", "trl"}
# the `hf` sources' readers (the data extra), loaded only when a dataset in those forms is read
OPTIONAL |= {"datasets", "pyarrow", "huggingface_hub"}
# (module, imported module pattern) -> why the import waits until the function runs
DEFERRALS = {
    ("sayo/cli/kubeflow.py", "sayo.kubeflow.*"): "the pipeline commands need kfp (the pipeline extra)",
    ("sayo/registry/register.py", "sayo.registry.model"): "the served model subclasses mlflow's PythonModel",
    ("sayo/kubeflow/trainjob.py", "sayo.storage"): "staging on S3 needs boto3, only in the job's component",
    ("sayo/models/processor.py", "transformers*"): "the fast image processors need torchvision (optional)",
    ("sayo/kubeflow/components.py", "*"): "a lightweight component's body runs on its own in the image",
}
STAGE_ENTRIES = {  # dvc stage -> the CLI module of its command and the library modules it runs
    "data": ["sayo.cli.data", "sayo.data.build"],
    "sft": ["sayo.cli.train", "sayo.train.sft"],
    "grpo": ["sayo.cli.train", "sayo.train.grpo"],
    "evaluate": ["sayo.cli.evaluate", "sayo.evaluate.run"],
    "register": ["sayo.cli.evaluate", "sayo.registry.register"],
    "ablation-grpo": ["sayo.cli.experiment", "sayo.experiment.ablation"],
}
DVC_FILES = ("dvc.yaml", "experiments/dvc.yaml")  # the pipeline; the ablation (its own target)


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_layers_hold() -> None:
    done = _lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    contracts = (ROOT / "pyproject.toml").read_text().count("[[tool.importlinter.contracts]]")
    assert f"Contracts: {contracts} kept, 0 broken." in done.stdout, done.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        # a stage importing another stage
        ("sayo/train/sft.py", "import sayo.evaluate.run", "sayo.train.sft -> sayo.evaluate.run"),
        # the core importing a stage
        ("sayo/scoring.py", "import sayo.train.config", "sayo.scoring -> sayo.train.config"),
        # a stage importing the recipe (the layer above it)
        ("sayo/evaluate/run.py", "import sayo.recipe", "sayo.evaluate.run -> sayo.recipe"),
        # an import that runs back up: regions <- prompts, and now regions -> prompts
        ("sayo/regions.py", "import sayo.prompts", "- .regions -> .prompts"),
        # the drawing importing the data, whose previews it draws
        ("sayo/viz.py", "import sayo.data.schema", "sayo.viz -> sayo.data.schema"),
        # a stage importing a synthetic task (what a sample teaches, it carries)
        (
            "sayo/train/sft.py",
            "import sayo.data.synthetic.search",
            "sayo.train.sft -> sayo.data.synthetic.search",
        ),
        ("sayo/evaluate/run.py", "import sayo.data.synthetic", "sayo.evaluate.run -> sayo.data.synthetic"),
    ],
)
def test_lint_fails_on_an_import_against_the_layers(
    tmp_path: Path, module: str, line: str, broken: str
) -> None:
    shutil.copytree(ROOT / "sayo", tmp_path / "sayo", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{line}  # against the layers\n")
    done = _lint_imports(tmp_path)
    assert done.returncode != 0, done.stdout
    assert "BROKEN" in done.stdout and broken in done.stdout, done.stdout


def _function_imports(path: Path) -> list[str]:
    """Modules imported inside functions of a file."""
    found = []
    for fn in ast.walk(ast.parse(path.read_text())):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    found += [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    found.append(node.module)
    return found


def test_imports_inside_functions_only_defer_heavy_optional_dependencies() -> None:
    unexplained = []
    for path in sorted((ROOT / "sayo").rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        for module in _function_imports(path):
            if module.split(".")[0] in OPTIONAL:
                continue
            if any(name == file and fnmatch.fnmatch(module, pattern) for file, pattern in DEFERRALS):
                continue
            unexplained.append(f"{name}: {module}")
    assert not unexplained, (
        "move these imports to the module's head (or defer an optional dependency):\n"
        + "\n".join(unexplained)
    )


def _module_file(name: str) -> Path | None:
    for path in (ROOT / (name.replace(".", "/") + ".py"), ROOT / name.replace(".", "/") / "__init__.py"):
        if path.is_file():
            return path
    return None


def _module_level(tree: ast.AST) -> list[ast.AST]:
    """The nodes of a module outside its functions and `if TYPE_CHECKING:` blocks (what importing
    it runs; a lazy package's type-only imports run when a name is used, as the probe records)."""
    found: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        found.append(node)
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            todo += node.orelse
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            todo += list(ast.iter_child_nodes(node))
    return found


def _sayo_imports(path: Path) -> set[str]:
    """sayo modules importing a file imports (not those a function defers, which DEFERRALS lists and
    tests/test_dvc_stages.py records when a stage's command runs), with their parent packages."""
    out: set[str] = set()
    for node in _module_level(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            if name.split(".")[0] == "sayo" and _module_file(name) is not None:
                parts = name.split(".")
                out |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return out


def import_closure(*entries: str) -> set[Path]:
    """The files of every sayo module the entries import, transitively."""
    seen: set[str] = set()
    todo = list(entries)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(name)
        if path is not None:
            todo += sorted(_sayo_imports(path) - seen)
    return {path for name in seen if (path := _module_file(name)) is not None}


@pytest.mark.parametrize("stage", sorted(STAGE_ENTRIES))
def test_dvc_stage_deps_cover_the_code_the_stage_imports(stage: str) -> None:
    stages = {k: v for f in DVC_FILES for k, v in yaml.safe_load((ROOT / f).read_text())["stages"].items()}
    deps = stages[stage]["deps"]
    covered = [ROOT / dep for dep in deps]
    missing = sorted(
        path.relative_to(ROOT).as_posix()
        for path in import_closure(*STAGE_ENTRIES[stage])
        if not any(path == dep or dep in path.parents for dep in covered)
    )
    assert not missing, f"add to the `{stage}` stage's deps in dvc.yaml: {missing}"
