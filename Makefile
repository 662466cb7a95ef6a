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

.PHONY: install demo figure test test-fast lint format notebooks clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev,gguf]"
	touch $(STAMP)

install: $(STAMP)

# IPO vs GR-IPO on the generated default data (same seed, data and steps), each then scored on the
# test split; prints the per-group table side by side and writes the figure.
# One torch thread per run: on 2 cores the tiny model's element-wise kernels ran slower with 2.
DEMO_DIR := logs/demo
demo: $(STAMP)
	OMP_NUM_THREADS=1 $(VENV)/bin/grpo-compare --stage test --log-dir $(DEMO_DIR) --figure $(DEMO_DIR)/comparison.png \
	    --config configs/experiment/default_ipo.yaml --config configs/experiment/default_gripo.yaml --seeds 0
	@echo "Figure: $(DEMO_DIR)/comparison.png; TensorBoard: $(VENV)/bin/tensorboard --logdir $(DEMO_DIR)"

# The README figure is the demo's figure.
figure: demo
	cp $(DEMO_DIR)/comparison.png docs/figures/default_task.png

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

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
