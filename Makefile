# Quick start: `make demo` trains the embedded default problem, `make test` runs the tests.
# Both create .venv (python3 -m venv) and install the package into it on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# PoCL compiles kernels into a cache; keep it writable and inside the tree.
export POCL_CACHE_DIR ?= $(CURDIR)/.venv/pocl-cache

.PHONY: demo test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	mkdir -p $(POCL_CACHE_DIR)
	touch $(STAMP)

# The demo's plot needs matplotlib (the 'plot' extra); the tests do not.
$(VENV)/.plot: $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,plot]'
	touch $@

demo: $(VENV)/.plot
	$(VENV)/bin/duhl-cl demo

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m pip install --quiet ruff
	$(VENV)/bin/ruff check duhl_cl tests benchmarks
	$(VENV)/bin/ruff format --check duhl_cl tests benchmarks

clean:
	rm -rf $(VENV) build dist *.egg-info
