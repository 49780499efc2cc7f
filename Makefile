# Two commands for a fresh machine: `make run` and `make test`. Everything they need is
# installed by `make setup`, which is idempotent and cheap when nothing changed.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTHON ?= python3
# Debian packages: the astronomy tools behind the optional adapters (with the Tycho-2 index
# files for 30-44 arcmin fields), and Chromium for the page tests.
APT_PACKAGES := source-extractor scamp psfex swarp astrometry.net astrometry-data-tycho2-08 chromium chromium-driver
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup apt venv bytecode run test lint typecheck unit bench clean

setup: apt venv bytecode

apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

venv: $(STAMP)

$(STAMP): pyproject.toml
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[web,online,postgres,celery,stdpipe,sfft,dev]"
	@touch $(STAMP)

# An editable install leaves the package's modules uncompiled, and with
# PYTHONDONTWRITEBYTECODE set (as on CI and in the image) every `skyphot measure` would
# compile ~50 of them again (~0.1-0.15 s of its start-up). Only changed files are recompiled.
bytecode: venv
	@$(PY) -m compileall -q src >/dev/null

# The web application on http://localhost:5000 with a demo source and a simulated frame.
run: setup
	$(VENV)/bin/skyphot serve --demo

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

unit: setup
	$(VENV)/bin/pytest -q

test: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q

bench: setup
	$(PY) benchmarks/run.py
	$(PY) benchmarks/catalogs_astrometry.py
	$(PY) benchmarks/real_loo.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
