# precast — one entry point. `make demo` and `make test` build .venv from nothing when missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.DEFAULT_GOAL := help
.PHONY: help prereqs venv demo test test-fast lint clean airflow browser browser-if-required bench bench-prereqs bench-train bench-keys

help:
	@echo "make demo   - generate data, run training + predict end to end, print a summary"
	@echo "make test   - lint, type-check and run the whole test suite (2 workers, random order)"
	@echo "make test-fast - code, data and model tests only (no Airflow, cluster or scenario)"
	@echo "make lint   - ruff, mypy (strict on src, and the tests) and deptry (every import declared in pyproject.toml)"
	@echo "make airflow - start Airflow's components on this machine (precast airflow up)"
	@echo "make browser - install Debian's chromium + chromium-driver for the browser test"
	@echo "make bench  - benchmarks vs baselines, same run: publish, score, lookup, pipeline"
	@echo "              (BENCH_ROWS=100000, BENCH_SCALES=1 or BENCH_ARGS=--quick)"
	@echo "make bench-train - training time by rows (100k, 1M, 5M) on this machine's devices"
	@echo "make bench-keys - the HTTP API with an API key, a rate limit and metering vs open"
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

# USE_CASE=examples/shop make demo runs another use case's folder.
USE_CASE ?= examples/churn
demo: venv
	$(BIN)/precast --use-case $(USE_CASE) demo

lint: venv
	$(BIN)/ruff check src dags jobs tests sql expectations examples
	$(BIN)/mypy src/precast tests
	$(BIN)/deptry src dags jobs
	$(BIN)/deptry tests bench examples -kf precast -kf tests -kf bench --exclude '\.venv' \
	  --ignore DEP002,DEP004

airflow: venv
	$(BIN)/precast --use-case $(USE_CASE) airflow up

# $(call apt_install,PACKAGES,WHO): install Debian packages with apt-get (sudo when not root),
# updating the package lists once if the first try fails; one line of reason when it cannot.
apt_install = \
	if ! command -v apt-get >/dev/null 2>&1; then \
	  echo "$(2) needs apt-get (Debian/Ubuntu): install $(1) yourself"; exit 1; \
	fi; \
	sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	export DEBIAN_FRONTEND=noninteractive; \
	$$sudo apt-get install -y -q --no-install-recommends $(1) >/dev/null || \
	{ $$sudo apt-get update -q >/dev/null && \
	  $$sudo apt-get install -y -q --no-install-recommends $(1) >/dev/null; } || \
	{ echo "could not install $(1) with apt-get"; exit 1; }

# The Airflow UI test drives Debian's Chromium through chromedriver (no browser downloads).
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then \
	  echo "chromium and chromedriver are installed"; \
	else $(call apt_install,chromium chromium-driver,make browser); fi

# With PRECAST_TEST_REQUIRE_BROWSER=1 (CI) the browser test must run: install what it needs first.
browser-if-required:
	@case "$${PRECAST_TEST_REQUIRE_BROWSER:-}" in 1|true|yes) $(MAKE) --no-print-directory browser;; esac

# The Spark JDBC baseline of `make bench` uses Debian's PostgreSQL JDBC driver (no downloads).
bench-prereqs:
	@if [ -f /usr/share/java/postgresql.jar ]; then \
	  echo "the PostgreSQL JDBC driver is installed (/usr/share/java/postgresql.jar)"; \
	else $(call apt_install,libpostgresql-jdbc-java,make bench-prereqs); fi
	@command -v pgbench >/dev/null 2>&1 || echo "note: pgbench is not on PATH; the lookup family reports it as missing"

# Sizes: BENCH_ROWS (default 1000000; 10x for the large publish), BENCH_SCALES (pipeline worlds,
# default 1,10), BENCH_ARGS (e.g. --quick, lookup).
# Without the JDBC driver the Spark rows say so and the other measurements still run.
bench: venv
	@$(MAKE) --no-print-directory bench-prereqs || echo "continuing without the Spark JDBC baseline"
	nice -n 10 $(BIN)/python -m bench $(BENCH_ARGS)

# Training time vs rows on the current device(s) (CPU; CUDA too when XGBoost sees a GPU).
bench-train: venv
	nice -n 10 $(BIN)/python -m bench train $(BENCH_ARGS)

bench-keys: venv
	nice -n 10 $(BIN)/python -m bench lookup-keys $(BENCH_ARGS)

# Two workers (pytest-xdist): the tests of the session's world, and those of one module, stay
# on one worker, longest first (work_unit in tests/conftest.py); the order is
# otherwise random (pytest-randomly prints the seed; PYTEST_ARGS=--randomly-seed=N replays it).
PYTEST_WORKERS ?= 2
PYTEST_ARGS ?=
PYTEST := $(BIN)/pytest -n $(PYTEST_WORKERS) --no-loadscope-reorder $(PYTEST_ARGS)

test: lint browser-if-required
	$(PYTEST)

# The edit loop: units, suites and the model's behaviour; no Airflow deployment, no Spark
# cluster, no drift scenario.
test-fast: venv
	$(PYTEST) tests/code tests/data tests/model

clean:
	rm -rf $(VENV) .precast
