# sayo — the two set-up commands are `make demo` and `make test` (see README).
# Both create .venv on first use. TORCH_SPEC picks the torch build: the CPU wheel by default;
# for CUDA, install the matching wheel, e.g. `make demo TORCH_SPEC="torch==2.13.0" PIP_INDEX_ARGS="--index-url <CUDA wheel index>"`.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PIP_INDEX_ARGS ?=
EXTRAS ?= dev
BIN := $(VENV)/bin
STAMP := $(VENV)/.sayo-installed-$(EXTRAS)

.PHONY: install demo test test-fast test-equivalence lint lint-infra bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(PIP_INDEX_ARGS) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

install: $(STAMP)

# The main job end to end on the embedded defaults (tiny policy, synthetic data, local MLflow in
# mlruns.db): a look at the rewards, then data -> sft -> grpo -> evaluate -> register.
demo: $(STAMP)
	$(BIN)/sayo demo --out outputs/demo
	$(BIN)/sayo data build --no-progress
	$(BIN)/sayo sft
	$(BIN)/sayo grpo
	$(BIN)/sayo evaluate
	$(BIN)/sayo register --checkpoint outputs/checkpoints/grpo/final --metrics outputs/eval/metrics.json
	@echo "done: report outputs/eval/report.html; runs: $(BIN)/mlflow ui --backend-store-uri sqlite:///mlruns.db"

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

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache .mypy_cache
