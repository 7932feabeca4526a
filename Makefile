# `make book` executes every notebook source and builds the HTML book; `make test` runs the tests.
# Both create .venv (Python 3.11 + pip) on first use, with the exact versions of requirements/book.txt.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LOCK := requirements/book.txt
PROFILE ?= quick
PARAMS ?=

.PHONY: book html test lock clean-runs

$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r $(LOCK)
	$(PY) -m pip install --no-deps -e .
	touch $(STAMP)

# Execute notebooks/*.py with papermill (profile PROFILE, overrides PARAMS such as "-p n_train 200")
# and build the HTML book with warnings as errors.
book: $(STAMP)
	$(PY) -m infcore.runbook --profile $(PROFILE) $(PARAMS)

# Build the HTML of the committed pages in book/ without executing anything.
html: $(STAMP)
	$(VENV)/bin/jupyter-book build . -W -n --keep-going

# The browser test drives Debian's chromium: say how to get it before anything runs.
test: $(STAMP)
	@command -v chromium >/dev/null 2>&1 || { echo "make test needs Debian's chromium for its browser test; install it with:  sudo apt-get install -y chromium"; exit 2; }
	$(MAKE) html
	$(PY) -m pytest --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg -v

# Regenerate the lock file from pyproject.toml (pip-tools, in a separate environment).
lock:
	test -x .venv-lock/bin/pip-compile || ($(PYTHON) -m venv .venv-lock && .venv-lock/bin/pip install pip-tools)
	.venv-lock/bin/pip-compile --extra=book --extra=test --strip-extras --no-emit-index-url \
	    --no-emit-find-links --output-file=$(LOCK) pyproject.toml

clean-runs:
	rm -rf _build/runs
