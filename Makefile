# Lathe — `make up` runs the platform, `make test` runs the suite.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
# This machine kind's pip index config prints one harmless warning per package.
QUIET_PIP := { grep -v "is ignored: it is neither a file nor a directory" || true; }

.PHONY: up install install-test migrate seed test test-fast browser schema check-deploy clean help

help:
	@echo "make up     install, migrate, seed, run web + worker + scheduler (Ctrl-C stops all)"
	@echo "make test   install test dependencies and run the whole suite"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip 2>&1 | $(QUIET_PIP)

# Re-install only when the pins change.
$(VENV)/.installed: requirements.txt | $(PY)
	$(PIP) install -q -r requirements.txt 2>&1 | $(QUIET_PIP)
	@touch $@

$(VENV)/.installed-test: requirements-test.txt $(VENV)/.installed
	$(PIP) install -q -r requirements-test.txt 2>&1 | $(QUIET_PIP)
	@touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

migrate: install
	$(PY) manage.py migrate --noinput

seed: migrate
	$(PY) manage.py seed_demo

up: seed
	@echo "Lathe on http://127.0.0.1:$${LATHE_PORT:-8000}/  (admin: /admin/, API docs: /api/v1/docs)"
	$(VENV)/bin/honcho start -f Procfile

# Debian's Chromium for the browser tests (never a test tool's own download).
browser:
	@if ! command -v chromium >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; fi; \
	fi

test: install-test browser
	$(PY) -m pytest $(PYTEST_ARGS)

schema: install
	$(PY) manage.py spectacular --validate --fail-on-warn --file var/openapi.yaml

clean:
	rm -rf $(VENV) var
