# precast — one entry point. `make demo` and `make test` build .venv from nothing when missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.DEFAULT_GOAL := help
.PHONY: help prereqs venv demo test lint clean

help:
	@echo "make demo   - generate data, run training + predict end to end, print a summary"
	@echo "make test   - lint, type-check and run the whole test suite"
	@echo "make lint   - ruff + mypy only"
	@echo "make clean  - remove .venv and .precast"

prereqs:
	@v=$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null); \
	  [ -n "$$v" ] || { echo "precast needs Python 3.11+: '$(PYTHON)' was not found (make PYTHON=/path/to/python3.11 ...)"; exit 1; }; \
	  $(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "precast needs Python 3.11+, $(PYTHON) is $$v (make PYTHON=/path/to/python3.11 ...)"; exit 1; }
	@command -v java >/dev/null 2>&1 || { echo "precast needs Java 17+ for Spark: java is not on PATH"; exit 1; }
	@v=$$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1); \
	  [ -n "$$v" ] && [ "$$v" -ge 17 ] || { echo "precast needs Java 17+ for Spark (found: $${v:-unknown})"; exit 1; }

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

venv: prereqs $(STAMP)

demo: venv
	$(BIN)/precast demo

lint: venv
	$(BIN)/ruff check src dags jobs tests sql expectations
	$(BIN)/mypy src/precast

test: lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .precast
