# The two commands a newcomer needs: `make run` (local demo) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
# The demo's settings, kept in .demo.env so that `python manage.py ...` works as
# the README writes it in this checkout. Loopback archives are allowed: the demo
# starts one (a small DICOMweb stub) so a healthy server shows beside failing ones.
# The public origin carries the port: links in mail sent without a request (the
# monitor's alerts) would otherwise point at port 80.
DEMO_SETTINGS := DJANGO_DEBUG=1 CONNECTIVITY_ALLOW_PRIVATE=1 \
  REGISTRY_PUBLIC_ORIGIN=http://127.0.0.1:$(PORT)
DEMO_ARCHIVE_PORT ?= 8098

.PHONY: run test lint check bench bench-monitoring fuzz clean requirements

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Stamp files: reinstall only when the requirements change.
$(VENV)/.runtime: $(BIN)/python requirements.txt
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

run: $(VENV)/.runtime
	@printf '%s\n' '# Written by make run: the local demo'"'"'s settings, read by manage.py.' \
	  $(DEMO_SETTINGS) > .demo.env
	$(BIN)/python manage.py migrate --no-input
	$(BIN)/python manage.py seed_demo --archive-port $(DEMO_ARCHIVE_PORT)
	@$(BIN)/python -m bench.stub --port $(DEMO_ARCHIVE_PORT) >/dev/null & stub=$$!; \
	  $(BIN)/python manage.py monitor & monitor=$$!; \
	  trap 'kill $$monitor $$stub 2>/dev/null' EXIT INT TERM; \
	  $(BIN)/python manage.py demo_admin --wait-for 127.0.0.1:$(PORT) --framed & \
	  $(BIN)/python manage.py runserver 127.0.0.1:$(PORT)

# Every test, the slow ones included (bare `pytest` leaves them out).
test: $(VENV)/.dev
	$(BIN)/pytest -m "" $(PYTEST_ARGS)

# mypy's django-stubs plugin imports the settings, which need a secret key and
# the public origin (debug is off).
lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DJANGO_SECRET_KEY=mypy-only REGISTRY_PUBLIC_ORIGIN=https://registry.invalid \
	  $(BIN)/python -m mypy

# The access question against its floor and a bare one-query endpoint, on SQLite
# and PostgreSQL, then wrk against it and /api/v1/health through 2 sync workers
# (see README, "Performance"); QUICK=1: 100,000 users, ~4 minutes.
bench: $(VENV)/.runtime
	$(BIN)/python -m bench $(if $(QUICK),--quick)

# Monitoring alone: one round over 10,000 simulated archives through real
# Celery workers on the local Redis (database 14); see README "Performance".
bench-monitoring: $(VENV)/.runtime
	$(BIN)/python -m bench --monitoring-only

# schemathesis over every operation of a served instance (gunicorn on a fresh
# PostgreSQL database: DATABASE_URL's server, else 127.0.0.1:5432), EXAMPLES
# per operation; prints operations, examples and server errors.
EXAMPLES ?= 1000
fuzz: $(VENV)/.dev
	$(BIN)/python -m tests.fuzz --max-examples $(EXAMPLES)

# Re-pin requirements*.txt from the .in files (direct dependencies only);
# `make requirements UPGRADE=1` moves every pin to the newest allowed release.
requirements: $(VENV)/.dev
	$(BIN)/pip-compile --quiet --allow-unsafe --no-strip-extras --no-emit-index-url \
	  --no-emit-find-links $(if $(UPGRADE),--upgrade) requirements.in -o requirements.txt
	$(BIN)/pip-compile --quiet --allow-unsafe --no-strip-extras --no-emit-index-url \
	  --no-emit-find-links $(if $(UPGRADE),--upgrade) requirements-dev.in -o requirements-dev.txt

clean:
	rm -rf $(VENV) db.sqlite3 .demo-admin-password .demo.env staticfiles
