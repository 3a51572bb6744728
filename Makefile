# Every target sets itself up into .venv on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup system-deps demo inspector screenshots test bench bench-full protos tools lint clean deploy-tools certs jaeger jaeger-build

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/stepstream demo

# The inspector's bundle (inspector/static/) rebuilt from inspector/web/ (npm ci from its lockfile).
inspector: $(STAMP)
	$(PY) -m stepstream.inspector.bundle

# The inspector's screenshots in docs/images/, taken by its browser tests (tests/inspector/).
screenshots: $(STAMP)
	STEPSTREAM_SCREENSHOTS=docs/images $(PY) -m pytest tests/inspector -q

# The first run on a fresh machine installs Debian packages (Redis, PostgreSQL, nginx, Chromium,
# the clients' toolchains), the pinned Go/npm/Maven tools and builds Jaeger: ~15 minutes before
# the first test; later runs find them all cached.
test: system-deps tools deploy-tools jaeger-build
	$(PY) -m pytest

# Debian packages the tests start or drive (tools/system-deps.sh says which and why).
system-deps:
	@bash tools/system-deps.sh

bench: $(STAMP)
	$(PY) -m bench --quick

bench-full: $(STAMP)
	$(PY) -m bench

protos: $(STAMP)
	$(PY) protos/generate.py

# The pinned generators, buf and grpcurl (Go, npm and Maven installs; cached per version).
tools: $(STAMP)
	@echo "tools: pinned generators, buf, grpcurl (built once per version, then cached)"
	$(PY) protos/toolchain.py

# Development certificates (CA, localhost server, clients) in certs/; never for production.
certs: $(STAMP)
	$(PY) -m stepstream.security.devcerts certs

# A local Jaeger v2 (built once with Go, cached in ~/.cache/stepstream): see docs/tracing.md.
jaeger-build:
	@echo "jaeger-build: Jaeger v2 for the tracing tests (a Go build of ~7 minutes the first time, then cached)"
	$(PYTHON) tools/jaeger.py build

jaeger: $(STAMP)
	$(PY) tools/jaeger.py run

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) tools/typecheck.py

# Pinned offline validators for deploy/ (kubeconform, kustomize, compose-go, KEDA's CRD).
deploy-tools: build/deploy-tools/versions.txt

build/deploy-tools/versions.txt: deploy/validators.sh
	deploy/validators.sh build/deploy-tools

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
