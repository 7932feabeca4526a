# `make book` executes every notebook source and builds the HTML book; `make test` runs the tests.
# Both create .venv (Python 3.11 + pip) on first use.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= quick
PARAMS ?=

.PHONY: book html test clean-runs

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[book,test]"
	touch $(STAMP)

# Execute notebooks/*.py with papermill (profile PROFILE, overrides PARAMS such as "-p n_train 200")
# and build the HTML book with warnings as errors.
book: $(STAMP)
	$(PY) -m infcore.runbook --profile $(PROFILE) $(PARAMS)

# Build the HTML of the committed pages in book/ without executing anything.
html: $(STAMP)
	$(VENV)/bin/jupyter-book build . -W -n --keep-going

test: $(STAMP) html
	$(PY) -m pytest --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg -v

clean-runs:
	rm -rf _build/runs
