# changeover — developer and CI entry points.
#
#   make venv          .venv with the package installed editable, with test extras
#   make system-deps   Debian packages the tests need (postgresql, chromium, kubectl)
#   make test          pytest (the PostgreSQL server is started by tests/postgres_fixture.py)
#   make lint          ruff + mypy
#   make demo ARGS=..  changeover demo (installs the package alone, no test extras)
#   make bench         every benchmark script under bench/
#   make chaos         the long chaos tests (fuzzing, races, kill -9, disk full) and their table
#   make clean
#
# CI runs `bash .ci/run`, which runs `make test` on a fresh clone as root.

SHELL := /bin/bash
.DEFAULT_GOAL := test

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.changeover-installed
DEMO_STAMP := $(VENV)/.changeover-demo-installed
# KServe's Python SDK, for the protocol conformance tests: a venv of its own, as kserve pins
# pandas and protobuf below what changeover uses
KSERVE_VENV := .venv-kserve
KSERVE_STAMP := $(KSERVE_VENV)/.installed
ARGS ?=
PYTEST_ARGS ?=

# Benchmark scripts, run in this order by `make bench`.
BENCH_SCRIPTS ?= bench/serving.py bench/judge_simulation.py bench/canary_failfast.py bench/interleaving_simulation.py bench/rollback.py bench/shadow_overhead.py bench/gate_serving.py bench/dataplane.py bench/batching.py

# system-deps installs only what is missing: PostgreSQL server binaries
# (/usr/lib/postgresql/*/bin/initdb), chromium and kubectl (on PATH; Debian's package of kubectl
# is kubernetes-client, for tests/test_deploy_manifests.py).
APT_ENV := DEBIAN_FRONTEND=noninteractive

.PHONY: venv system-deps test lint demo bench chaos clean

venv: $(STAMP)

# Python >= 3.11 and .venv, for both stamps below.
define make_venv
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "changeover needs Python >= 3.11; $(PYTHON) is " + sys.version.split()[0] + " (set PYTHON=...)")'
	@if [ ! -x $(VPY) ]; then \
	  echo "+ $(PYTHON) -m venv $(VENV)"; \
	  $(PYTHON) -m venv $(VENV) || { echo "venv: '$(PYTHON) -m venv' failed (on Debian: apt-get install python3-venv)" >&2; exit 1; }; \
	fi
	$(VPY) -m pip install --upgrade pip
endef

# The stamp depends on pyproject.toml, so a change of dependencies reinstalls.
$(STAMP): pyproject.toml
	$(make_venv)
	$(VPY) -m pip install -e '.[test]'
	@touch $@

# The demo needs the package alone (scikit-learn, skops, the server): not the test extras (Ray,
# Playwright, tritonclient, MLflow...), which would take most of a first `make demo`.
$(DEMO_STAMP): pyproject.toml
	$(make_venv)
	$(VPY) -m pip install -e .
	@touch $@

system-deps:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium fonts-liberation"; \
	command -v kubectl >/dev/null 2>&1 || missing="$$missing kubernetes-client"; \
	if [ -z "$$missing" ]; then echo "system-deps: postgresql, chromium and kubectl are present"; exit 0; fi; \
	echo "system-deps: missing:$$missing"; \
	if [ "$$(id -u)" = 0 ]; then sudo=""; \
	elif command -v sudo >/dev/null 2>&1 && { [ -t 0 ] || sudo -n true 2>/dev/null; }; then \
	  if [ -t 0 ]; then sudo="sudo"; else sudo="sudo -n"; fi; \
	else \
	  echo "system-deps: not root and no usable sudo; install them yourself:" >&2; \
	  echo "  apt-get update && apt-get install -y$$missing" >&2; \
	  exit 0; \
	fi; \
	set -x; \
	$$sudo env $(APT_ENV) apt-get -o DPkg::Lock::Timeout=600 update </dev/null && \
	$$sudo env $(APT_ENV) apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends $$missing </dev/null

$(KSERVE_STAMP):
	@[ -x $(KSERVE_VENV)/bin/python ] || $(PYTHON) -m venv $(KSERVE_VENV)
	$(KSERVE_VENV)/bin/python -m pip install -q --upgrade pip
	$(KSERVE_VENV)/bin/python -m pip install -q 'kserve==0.21.*' || echo "kserve-venv: could not install kserve; its tests will skip"
	@touch $@

test: venv system-deps $(KSERVE_STAMP)
	$(VPY) -m pytest -q --durations=30 $(PYTEST_ARGS)

lint: venv
	@rc=0; \
	echo "+ $(VENV)/bin/ruff check src tests bench"; $(VENV)/bin/ruff check src tests bench || rc=1; \
	echo "+ $(VENV)/bin/mypy src"; $(VENV)/bin/mypy src || rc=1; \
	exit $$rc

demo: $(DEMO_STAMP)
	$(VENV)/bin/changeover demo $(ARGS)

bench: venv
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk </dev/null; } \
	  || echo "bench: wrk is not installed; closed-loop load falls back to bench/loadgen.py"
	@set -e; for script in $(BENCH_SCRIPTS); do \
	  echo "== $$script"; \
	  $(VPY) $$script; \
	done

# The long versions of tests/chaos (issue 13): >= 1,000 schemathesis cases, every management
# write pair raced on SQLite and PostgreSQL, kill -9 ten times at each rollout phase, the disk
# filled and freed (a tmpfs home: needs root); one Rich table of what was tried and survived.
# `make test` runs the same tests at their short scale.  make chaos ARGS="-k races"
chaos: venv system-deps
	$(VPY) bench/chaos.py $(ARGS)

# The data plane side by side: bare Starlette, changeover (champion, 10% canary, shadow,
# hanging shadow) and MLServer (its own venv, bench/.venv-mlserver, made on first use).
#   make bench-dataplane ARGS="--seconds 4 --rounds 2 --no-mlserver"
.PHONY: bench-dataplane
bench-dataplane: venv
	$(VPY) bench/dataplane.py $(ARGS)

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -not -path './.git/*' -exec rm -rf {} +
