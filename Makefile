# chartlight: `make demo` runs the main job, `make test` passes the tests. Both set up everything
# they need on a fresh machine (Debian packages, Maven artifacts, Python packages).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
# Locked third-party packages live in one virtual environment per lock-file content, shared by
# every checkout on the machine, so a warm re-run (or CI's fresh clone) reuses it. The checkout's
# own .venv holds only chartlight itself (editable) plus a .pth line pointing at that environment.
CACHE_DIR ?= $(HOME)/.cache/chartlight
LOCK_HASH := $(shell sha256sum requirements.lock | cut -c1-16)
DEPS_ENV := $(CACHE_DIR)/deps-$(LOCK_HASH)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(LOCK_HASH)

# Debian packages the code and tests call: Java + Maven build the HAPI sandbox, Tesseract OCRs
# scans, espeak-ng speaks the synthetic dictation, libsndfile reads/writes audio; kenlm (locked
# Python package, built from source) links zlib, bzip2 and xz; Orthanc + its DICOMweb plugin are the
# PACS sandbox; Chromium runs the SMART app browser tests (Playwright drives it, never its own browser);
# PostgreSQL holds the job and session tables in the tests of that database (the fixtures start it).
APT_PACKAGES := default-jdk-headless maven tesseract-ocr tesseract-ocr-eng espeak-ng libsndfile1 \
	g++ cmake zlib1g-dev libbz2-dev liblzma-dev orthanc orthanc-dicomweb chromium \
	postgresql redis-server

# Tests use their own sandbox port so a running demo sandbox is left alone.
TEST_SANDBOX_PORT ?= 8091

.PHONY: help deps system-deps venv lint typecheck test demo sandbox-up sandbox-down sandbox-seed \
	serve bench wheel-check clean

help:
	@echo "make demo          start the sandboxes, seed the synthetic patient, run every pipeline"
	@echo "                   (on tiny random-weight TEST models when MedASR/MedGemma weights are absent)"
	@echo "make test          lint, type-check and run every test (starts the sandboxes itself)"
	@echo "make sandbox-up    start HAPI FHIR (8080), Orthanc PACS (8042), the sandbox EHR (9090)"
	@echo "make sandbox-down  stop them"
	@echo "make serve         run the web service under gunicorn"
	@echo "make wheel-check   build the wheel, install it outside the checkout, run the sandbox and demo from it"

deps: system-deps venv

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@if [ ! -f "$(DEPS_ENV)/.complete" ]; then \
		echo "installing locked Python packages into $(DEPS_ENV) (first time: a few minutes)"; \
		rm -rf "$(DEPS_ENV)"; $(PYTHON) -m venv "$(DEPS_ENV)"; \
		"$(DEPS_ENV)/bin/python" -m pip install -q --upgrade pip; \
		"$(DEPS_ENV)/bin/python" -m pip install -q -r requirements.lock; \
		touch "$(DEPS_ENV)/.complete"; \
	fi
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	"$(DEPS_ENV)/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" \
		> "$$($(PY) -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/chartlight-deps.pth"
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

lint: venv
	$(PY) -m ruff check plugin fhir_mappers cds_hooks smart_launch tests bench

typecheck: venv
	$(PY) -m mypy

test: deps lint typecheck
	CHARTLIGHT_SANDBOX_PORT=$(TEST_SANDBOX_PORT) $(PY) -m pytest

# Non-interactive: when MedASR or MedGemma weights are absent, speech and imaging run on tiny
# random-weight test models (it says so loudly; every such result is marked TEST OUTPUT, not clinical).
demo: deps
	$(VENV)/bin/chartlight demo --auto-test-models

sandbox-up: deps
	$(VENV)/bin/chartlight sandbox up

sandbox-down: venv
	$(VENV)/bin/chartlight sandbox down

sandbox-seed: venv
	$(VENV)/bin/chartlight sandbox seed

serve: deps
	$(VENV)/bin/chartlight serve

wheel-check: deps
	.ci/wheel_check.sh

bench: deps
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b; done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache plugin/sandbox/hapi_launcher/target .sandbox dist build
