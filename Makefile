# chatfreeze — set-up, train, test. Each target installs what it needs into .venv first.
#   make train     freeze-tune the default recipe (chatfreeze/recipes/default.yaml), then print a sample reply
#                  (TRAIN_ARGS="--save_trained_only true ..." adds options; THREADS sets CPU threads)
#   make test      the whole test suite (what CI runs)
#   make test-fast the suite without the tests marked slow (real model, subprocesses), for iteration
# TORCH picks the PyTorch build: the default is the CPU build; on a GPU machine use e.g. TORCH=torch.
VENV ?= .venv
PYTHON ?= python3
TORCH ?= torch==2.13.0
RUN_DIR ?= outputs/support-$(shell date +%Y%m%d-%H%M%S)
PROMPT ?= Hi, I ordered a kettle last week and it arrived with a cracked lid. What can I do?
# accelerate launch gives a process one CPU thread unless told otherwise (OMP_NUM_THREADS=1): use every core.
THREADS ?= $(shell nproc 2>/dev/null || echo 1)
TRAIN_ARGS ?=
BIN := $(VENV)/bin

.PHONY: setup setup-dev train test test-fast lint clean-venv

# Two stamps: training needs the package alone; the tests add the dev extras (pytest, gradio, selenium, lm-eval,
# ...), which a first `make train` would otherwise spend about a minute installing.
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e .
	touch $@

setup-dev: $(VENV)/.installed-dev

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

train: setup
	$(BIN)/accelerate launch --num_processes 1 --num_cpu_threads_per_process $(THREADS) \
		-m chatfreeze.cli.train --output_dir $(RUN_DIR) $(TRAIN_ARGS)
	$(BIN)/python -m chatfreeze.chat --model_name_or_path $(RUN_DIR) --prompt "$(PROMPT)"

test: setup-dev
	$(BIN)/python -m pytest -q

test-fast: setup-dev
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup-dev
	$(BIN)/ruff check chatfreeze scripts tests

clean-venv:
	rm -rf $(VENV)
