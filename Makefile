# vaultbridge — the two commands a new machine needs are `make demo` and `make test`.
# Every target installs what it needs first, idempotently (apt packages, .venv, Go-built binaries).

SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := ceph-mon ceph-common python3-rados openssl mmdebstrap gcc libc6-dev binutils \
  containerd runc containernetworking-plugins
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
RADOS_SO := $(shell ls /usr/lib/python3/dist-packages/rados.cpython-311-*.so 2>/dev/null | head -1)
PYTEST_ARGS ?=

.PHONY: setup apt venv bins demo test unit fuzz chaos lint bench image clean testenv-up testenv-down

setup: apt venv bins

apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null \
	    || { echo "apt-get install$$missing failed" >&2; exit 1; }; \
	fi

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' \
	  || { echo "need CPython 3.11 as '$(PY)' (Debian's python3-rados is built for 3.11); set PY=..." >&2; exit 1; }
	@test -d $(VENV) || $(PY) -m venv $(VENV)
	@$(BIN)/pip install -q --upgrade pip
	@$(BIN)/pip install -q -e '.[dev]'
	@# rados comes from Debian's python3-rados: expose just that module to the venv
	@so="$$(ls /usr/lib/python3/dist-packages/rados.cpython-311-*.so | head -1)"; \
	  test -n "$$so" || { echo "python3-rados is not installed (make apt)" >&2; exit 1; }; \
	  mkdir -p $(VENV)/rados && ln -sf "$$so" $(VENV)/rados/ && \
	  echo "$(CURDIR)/$(VENV)/rados" > "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/vaultbridge-rados.pth"
	@$(BIN)/python -c 'import rados, hvac, kubernetes, apscheduler' || { echo "venv imports failed" >&2; exit 1; }
	@rm -f $(VENV)/.installed-* && touch $@

bins:
	@command -v go >/dev/null || { echo "Go toolchain not found: install Go >= 1.25 (needed to build kube-apiserver, etcd, helm)" >&2; exit 1; }
	@testenv/build-bins >/dev/null

demo: setup
	$(BIN)/vaultbridge demo

lint: venv
	$(BIN)/ruff check vaultbridge tests testenv bench
	$(BIN)/ruff format --check vaultbridge tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: venv
	$(BIN)/pytest tests/unit -q $(PYTEST_ARGS)

# every parser of outside input under Hypothesis, 10,000 examples each (make test runs 300)
fuzz: venv
	VAULTBRIDGE_FUZZ_PROFILE=fuzz $(BIN)/pytest tests/fuzz -q -p no:cacheprovider $(PYTEST_ARGS)

# the whole fault-injection matrix (make test runs a subset), then its table
CHAOS_REPORT ?= .chaos/report.jsonl
chaos: setup
	mkdir -p $(dir $(CHAOS_REPORT)) && rm -f $(CHAOS_REPORT)
	VAULTBRIDGE_CHAOS=1 VAULTBRIDGE_CHAOS_REPORT=$(abspath $(CHAOS_REPORT)) $(BIN)/pytest tests/integration/test_faults_wire.py tests/integration/test_faults_crash.py tests/integration/test_faults_outage.py -q -s -p no:cacheprovider $(PYTEST_ARGS) || true
	$(BIN)/python -m vaultbridge.testenv.chaos_table $(CHAOS_REPORT)

test: setup lint
	$(BIN)/pytest tests $(PYTEST_ARGS)

bench: setup
	$(BIN)/python -m bench $(BENCH_ARGS)

# OCI archives of the vaultbridge, pause, openbao and consumer images, cached by content
image: setup
	$(BIN)/python -m vaultbridge.testenv.images

testenv-up: setup
	testenv/up

testenv-down:
	testenv/down

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .import_linter_cache .hypothesis
