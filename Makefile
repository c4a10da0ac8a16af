# Two commands for a fresh machine (Python 3.11, CPU only, package registries reachable):
#   make demo   sets up .venv and evaluates the default model on 20 GSM8K problems
#   make test   sets up .venv with dev extras and runs the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: demo test setup setup-dev browser bench bench-overhead bench-early-stop clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip wheel setuptools

# stamps: re-install only when pyproject.toml changes
$(VENV)/.setup: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[llamacpp,server]'
	touch $@

$(VENV)/.setup-dev: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[dev]'
	touch $@

setup: $(VENV)/.setup
setup-dev: $(VENV)/.setup-dev

demo: setup
	$(BIN)/reasonlab models pull qwen2.5-coder-0.5b
	$(BIN)/reasonlab eval --dataset gsm8k --limit 20 --out runs/demo

# the report test opens report.html in Debian's headless chromium; install it when missing
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -q chromium >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q chromium >/dev/null; }; }
	@echo "browser: $$(command -v chromium)"

test: setup-dev browser
	$(BIN)/reasonlab models pull smollm2-135m
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/reasonlab models pull qwen2.5-coder-0.5b
	$(BIN)/reasonlab bench --out runs/bench

bench-overhead: setup
	$(BIN)/reasonlab models pull qwen2.5-coder-0.5b
	$(BIN)/python benchmarks/overhead.py

bench-early-stop: setup
	$(BIN)/reasonlab models pull qwen2.5-coder-0.5b
	$(BIN)/python benchmarks/early_stop.py

clean:
	rm -rf $(VENV) build src/*.egg-info
