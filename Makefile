# authserver: `make run` serves on http://127.0.0.1:8000 (SQLite; `make run PORT=8001` for another
# port, the issuer following it unless AUTHSERVER_ISSUER is set); `make test` runs the whole suite;
# `make docs` serves the documentation site on http://127.0.0.1:8008.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
ARGS   ?=
PORT   ?= 8000
# The port `make docs` serves the documentation site on.
DOCS_PORT ?= 8008
# The issuer `make run` serves as: AUTHSERVER_ISSUER from the environment, else this address.
RUN_ISSUER = $(or $(AUTHSERVER_ISSUER),http://127.0.0.1:$(PORT))

.PHONY: run test docs resilience lint format messages bench bench-scale clean

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "authserver needs Python 3.11 or newer")'
	@$(PYTHON) -m venv $(VENV) || { echo "make: cannot create $(VENV): install python3-venv (apt-get install python3-venv)"; exit 1; }

$(VENV)/.prod-installed: requirements/base.txt requirements/prod.txt | $(VENV)/bin/python
	$(PIP) install --quiet -r requirements/prod.txt
	@touch $@

$(VENV)/.test-installed: requirements/base.txt requirements/prod.txt requirements/test.txt | $(VENV)/bin/python
	$(PIP) install --quiet -r requirements/test.txt
	@touch $@

run: $(VENV)/.prod-installed
	@case "$(PORT)" in ''|*[!0-9]*) echo "make: PORT must be a port number, got '$(PORT)'"; exit 2;; esac
	AUTHSERVER_ISSUER='$(RUN_ISSUER)' $(PY) manage.py migrate --noinput
	@echo
	@echo "  authserver is starting on http://127.0.0.1:$(PORT)  (admin: http://127.0.0.1:$(PORT)/admin/)"
	@echo "  Issuer: $(RUN_ISSUER)"
	@echo "  Create an admin account in another terminal (the password is read from stdin):"
	@echo "    $(PY) manage.py create_user admin --email admin@example.com --superuser"
	@echo
	@echo "  Mail (password reset links) is printed here by the email worker started alongside."
	@echo
	export AUTHSERVER_ISSUER='$(RUN_ISSUER)'; \
	  $(PY) manage.py deliver_email & worker=$$!; trap 'kill $$worker 2>/dev/null' EXIT INT TERM; \
	  $(PY) manage.py runserver 127.0.0.1:$(PORT)

test: $(VENV)/.test-installed
	$(PY) scripts/runtests.py $(ARGS)

# The documentation site (mkdocs.yml, docs/) on http://127.0.0.1:8008, rebuilt on every edit;
# `make docs DOCS_PORT=8010` for another port. `make test` builds it with --strict (tests/docs/).
docs: $(VENV)/.test-installed
	@case "$(DOCS_PORT)" in ''|*[!0-9]*) echo "make: DOCS_PORT must be a port number, got '$(DOCS_PORT)'"; exit 2;; esac
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs serve --strict --dev-addr 127.0.0.1:$(DOCS_PORT)

# The resilience test alone, with its figures printed (about 1.5 minutes; `make test` runs it
# too): nginx + TLS, two instances, a throwaway PostgreSQL and Redis, and each fault in turn.
resilience: $(VENV)/.test-installed
	$(PY) scripts/runtests.py tests/resilience -s -p no:cacheprovider $(ARGS)

$(VENV)/.bench-installed: requirements/base.txt requirements/prod.txt requirements/bench.txt | $(VENV)/bin/python
	$(PIP) install --quiet -r requirements/bench.txt
	@touch $@

# Benchmark (bench/README.md): a few minutes; PostgreSQL from DATABASE_URL (default the local
# server on 127.0.0.1:5432) and Redis from REDIS_URL. `make bench ARGS="--scenarios refresh"`.
bench: $(VENV)/.bench-installed
	$(PY) bench/run.py $(ARGS)

# The data-scale benchmark (bench/README.md "Scale"): two databases of its own, the large one
# with a million users (about an hour and 40 GB). `make bench-scale ARGS="--scale-factor 0.01"`.
bench-scale: $(VENV)/.bench-installed
	$(PY) bench/scale.py $(ARGS)

# The translation catalogs (locale/): extract the marked strings into each language's django.po,
# then compile the .mo files the server reads (needs GNU gettext; docs: Reference > Languages).
messages: $(VENV)/.prod-installed
	$(PY) scripts/messages.py

lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.test-installed
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache staticfiles site
