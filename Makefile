# Two commands for a fresh machine (Python 3.11, CPU only, package registries reachable):
#   make demo   sets up .venv and evaluates the default model on 20 GSM8K problems
#   make test   sets up .venv with dev extras and runs the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check

# llama.cpp built with -march=native compiles its AMX kernels on Xeons that have AMX, and on the Xeon machines
# here every decode through them segfaults (2026-11-23, llama-cpp-python 0.3.36, Q4_K_M and Q4_1 alike; with the
# extra buffer types off it runs). Build llama.cpp without AMX (the AVX-512/AVX2 kernels remain): CMake takes
# CFLAGS/CXXFLAGS from the environment, for the pip build of llama-cpp-python and for llama-server alike.
ifeq ($(shell uname -m),x86_64)
NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
export CFLAGS := $(strip $(CFLAGS) $(NO_AMX))
export CXXFLAGS := $(strip $(CXXFLAGS) $(NO_AMX))
endif

.PHONY: demo test setup setup-dev browser llama-server bench bench-overhead bench-early-stop clean

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

# llama.cpp's own server (continuous batching, /apply-template, /tokenize), built once from the llama.cpp
# sources vendored in the llama-cpp-python sdist we already pin (PyPI), without the web UI (its build
# would download assets). Tests and `reasonlab bench` find it at $(LLAMA_SERVER).
LLAMA_CPP_PY := $(shell sed -n 's/.*"llama-cpp-python==\([0-9.]*\)".*/\1/p' pyproject.toml | head -1)
LLAMA_SERVER_BUILT := .cache/llama-server/$(LLAMA_CPP_PY)/llama-server
LLAMA_SERVER_SRC := .cache/llama-server/src
JOBS ?= $(shell nproc)

llama-server: $(LLAMA_SERVER_BUILT)
	ln -sf $(LLAMA_CPP_PY)/llama-server .cache/llama-server/llama-server

$(LLAMA_SERVER_BUILT): | $(BIN)/python
	rm -rf $(LLAMA_SERVER_SRC) && mkdir -p $(LLAMA_SERVER_SRC) $(@D)
	$(PIP) download -q --no-deps --no-binary :all: llama-cpp-python==$(LLAMA_CPP_PY) -d $(LLAMA_SERVER_SRC)
	tar xzf $(LLAMA_SERVER_SRC)/llama_cpp_python-$(LLAMA_CPP_PY).tar.gz -C $(LLAMA_SERVER_SRC)
	cmake -S $(LLAMA_SERVER_SRC)/llama_cpp_python-$(LLAMA_CPP_PY)/vendor/llama.cpp -B $(LLAMA_SERVER_SRC)/build \
	  -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF \
	  -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON \
	  -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_APP=OFF > .cache/llama-server/build.log 2>&1 \
	  || { tail -40 .cache/llama-server/build.log; exit 1; }
	@echo "building llama-server (about 5 minutes on 2 cores; log: .cache/llama-server/build.log)"
	cmake --build $(LLAMA_SERVER_SRC)/build --target llama-server -j $(JOBS) >> .cache/llama-server/build.log 2>&1 \
	  || { tail -40 .cache/llama-server/build.log; exit 1; }
	cp $(LLAMA_SERVER_SRC)/build/bin/llama-server $@
	rm -rf $(LLAMA_SERVER_SRC)

test: setup-dev browser llama-server
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
