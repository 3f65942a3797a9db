# sayo — the two set-up commands are `make demo` and `make test` (see README).
# Both create .venv on first use. TORCH_SPEC picks the torch build: the CPU wheel by default;
# for CUDA, install the matching wheel, e.g. `make demo TORCH_SPEC="torch==2.13.0" PIP_INDEX_ARGS="--index-url <CUDA wheel index>"`.
# Every version comes from constraints.txt (`make constraints` regenerates it), the same file the
# images in infra/docker/ install with, so tests and images run the same versions.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PIP_INDEX_ARGS ?=
EXTRAS ?= dev
BIN := $(VENV)/bin
STAMP := $(VENV)/.sayo-installed-$(EXTRAS)
CONSTRAINTS := constraints.txt
SCRATCH := .venv-constraints

.PHONY: install constraints demo test test-fast test-equivalence lint lint-infra bench gpu-check clean

# torch alone first, from PIP_INDEX_ARGS' index and without its dependencies (a CUDA wheel index need
# not carry the pinned versions of those); the second install takes them, and everything else, from
# the package registry, pinned by constraints.txt
$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-deps $(PIP_INDEX_ARGS) -c $(CONSTRAINTS) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e ".[$(EXTRAS)]"
	touch $@

install: $(STAMP)

# Regenerate constraints.txt after a dependency change in pyproject.toml: resolve `.[dev,mlflow-server]`
# (dev holds every extra the sayo images install; mlflow-server is the tracking server image's) afresh in a
# scratch venv, CPU torch first, and pin what it installed (infra/constraints.py). Commit the result;
# `make install` and the image builds then pick it up.
constraints:
	rm -rf $(SCRATCH)
	$(PYTHON) -m venv $(SCRATCH)
	$(SCRATCH)/bin/python -m pip install --quiet --upgrade pip
	$(SCRATCH)/bin/python -m pip install --quiet --no-deps $(PIP_INDEX_ARGS) "$(TORCH_SPEC)"
	$(SCRATCH)/bin/python -m pip install --quiet -e ".[dev,mlflow-server]"
	$(SCRATCH)/bin/python -m pip check
	$(SCRATCH)/bin/python infra/constraints.py > $(CONSTRAINTS).tmp
	mv $(CONSTRAINTS).tmp $(CONSTRAINTS)
	rm -rf $(SCRATCH)

# The main job end to end on the embedded defaults: the CPU miniature (tiny policy, synthetic
# `search` data, local MLflow in mlruns.db) at demo size, about 10 minutes on 2 CPU cores (README): a look at the rewards, then
# data -> sft -> grpo -> evaluate -> register. `evaluate` ends with GRPO − SFT on the same test
# samples (paired intervals) and says when a difference is within noise at this size; the
# full-size measurement is `sayo experiment ablation` (docs/results.md).
DEMO_RECIPE ?= miniature
DEMO_SIZE ?= data.synthetic.num_samples=3000 sft.max_steps=900 sft.direct_steps=450
DEMO_CLOCK := outputs/.demo-started
# one demo step: its name, the command, then how long it took and how long the demo has run so far
demo_step = @echo "== demo $(1): $(2)"; t0=$$(date +%s); $(2) && t1=$$(date +%s) && \
	echo "== demo $(1): done in $$((t1 - t0)) s ($$((t1 - $$(cat $(DEMO_CLOCK)))) s since the demo started)"
demo: $(STAMP)
	@mkdir -p outputs && date +%s > $(DEMO_CLOCK)
	$(call demo_step,rewards,$(BIN)/sayo demo --out outputs/demo --config $(DEMO_RECIPE))
	$(call demo_step,data,$(BIN)/sayo data build --no-progress --config $(DEMO_RECIPE) $(DEMO_SIZE))
	$(call demo_step,sft,$(BIN)/sayo sft --config $(DEMO_RECIPE) $(DEMO_SIZE))
	$(call demo_step,grpo,$(BIN)/sayo grpo --config $(DEMO_RECIPE) $(DEMO_SIZE))
	$(call demo_step,evaluate,$(BIN)/sayo evaluate --config $(DEMO_RECIPE) $(DEMO_SIZE))
	$(call demo_step,register,$(BIN)/sayo register --config $(DEMO_RECIPE) --checkpoint outputs/miniature/grpo/final --metrics outputs/miniature/eval/metrics.json)
	@echo "done: report outputs/miniature/eval/report.html; runs: $(BIN)/mlflow ui --backend-store-uri sqlite:///mlruns.db"

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# The equivalence tests (two formulations of one computation, compared in float64 or with tolerances
# scaled to the values) once more on ATen's generic kernels with one thread: another CPU's kernels
# and summation order must not change their verdict.
test-equivalence: $(STAMP)
	ATEN_CPU_CAPABILITY=default OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 SAYO_TEST_NUM_THREADS=1 \
		$(BIN)/python -m pytest -q -m equivalence

DOCKERFILES := infra/docker/Dockerfile.cpu infra/docker/Dockerfile.cuda infra/docker/Dockerfile.mlflow
KUSTOMIZATIONS := infra/k8s/base infra/k8s/gpu-nodepool

lint: $(STAMP)
	$(BIN)/ruff check sayo tests benchmarks
	$(BIN)/ruff format --check sayo tests benchmarks
	$(BIN)/mypy sayo
	$(BIN)/lint-imports --no-cache
	$(MAKE) lint-infra

# Dockerfiles (hadolint), Kubernetes manifests (kubernetes-validate, each file and, where kubectl is
# installed, each rendered kustomization), the CI workflow (actionlint), the compiled pipeline (fresh).
lint-infra: $(STAMP)
	$(BIN)/hadolint $(DOCKERFILES)
	$(BIN)/kubernetes-validate --strict --quiet $$(find infra/k8s -name '*.yaml' ! -name kustomization.yaml | sort)
	@if command -v kubectl >/dev/null; then \
		for k in $(KUSTOMIZATIONS); do kubectl kustomize $$k | $(BIN)/kubernetes-validate --strict --quiet - || exit 1; done; \
	else echo "kubectl not found: validated the files listed above one by one"; fi
	$(BIN)/actionlint .github/workflows/*.yml
	$(BIN)/sayo pipeline compile --check

bench: $(STAMP)
	$(BIN)/python benchmarks/attention_capture.py

# On a machine with one CUDA GPU (and the CUDA build of torch, see TORCH_SPEC above), in <= 8 min: the
# tests marked gpu, the ZeRO-2 GRPO benchmark at the 3B shape and the full-depth attention capture,
# results in benchmarks/results/*_gpu.md. Without a GPU it says so and exits 0.
# It installs nothing (a GPU machine may have no package registry): it runs the venv's python after
# `make install`, else GPU_PYTHON (python3) with this checkout on PYTHONPATH; it needs torch,
# transformers, pydantic, pytest and deepspeed, not the pipeline stack (mlflow, kfp, dvc, boto3).
GPU_PYTHON ?= $(if $(wildcard $(STAMP)),$(BIN)/python,python3)
gpu-check:
	PYTHONPATH="$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH}" $(GPU_PYTHON) benchmarks/gpu_check.py

clean:
	rm -rf $(VENV) $(SCRATCH) outputs .pytest_cache .ruff_cache .mypy_cache
