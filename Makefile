# The two set-up commands are `make demo` and `make test` (see README.md).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
PG_URL ?= postgres://postgres@127.0.0.1:5432/opsconsole
REDIS_TEST_URL ?= redis://127.0.0.1:6379/15

.PHONY: demo test test-sqlite test-services lint chromium benchmarks wrk clean soak faults prod fuzz

$(INSTALLED): requirements.txt requirements-dev.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt -c constraints.txt
	touch $@

## Install, migrate, load demo data and serve the console on http://127.0.0.1:8000
demo: $(INSTALLED)
	$(PY) manage.py migrate --noinput
	$(PY) manage.py load_demo
	$(PY) manage.py runserver 127.0.0.1:8000

## Production stack here: gunicorn (HTTPS), Celery worker and beat, PostgreSQL, Redis, DEBUG=0 (README: Production)
prod: $(INSTALLED)
	deploy/run-production

## Lint, check migrations, run the suite on SQLite, then on PostgreSQL + Redis if reachable
test: $(INSTALLED) chromium lint test-sqlite test-services

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(PY) manage.py makemigrations --check --dry-run

test-sqlite: $(INSTALLED)
	env -u DATABASE_URL -u REDIS_URL $(VENV)/bin/pytest

test-services: $(INSTALLED)
	@if $(PY) -c "import socket; [socket.create_connection(('127.0.0.1', p), 2).close() for p in (5432, 6379)]" 2>/dev/null; then \
		echo "== PostgreSQL and Redis are reachable: running the suite against them"; \
		DATABASE_URL=$(PG_URL) REDIS_URL=$(REDIS_TEST_URL) $(VENV)/bin/pytest -p no:cacheprovider; \
	elif [ -n "$$REQUIRE_SERVICES" ]; then \
		echo "== PostgreSQL or Redis not reachable on 127.0.0.1, and REQUIRE_SERVICES is set"; exit 1; \
	else \
		echo "== PostgreSQL or Redis not reachable on 127.0.0.1: suite ran on SQLite only"; \
	fi

## Headless Chromium from Debian's packages, for the browser tests
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "== installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null; }

## Serving, explanation and privacy benchmarks on PostgreSQL + Redis + gunicorn (see benchmarks/README.md)
benchmarks: $(INSTALLED) wrk
	$(PY) -m benchmarks.serving
	$(PY) -m benchmarks.explanations
	$(PY) -m benchmarks.privacy

## Soak: rank and snapshot at 2x the serving benchmark's rate for 10 minutes (MINUTES=1 to try)
MINUTES ?= 10
soak: $(INSTALLED) wrk
	$(PY) -m benchmarks.soak --minutes $(MINUTES)

## Fault injection: worker SIGKILLs, Redis, PostgreSQL and console restarts; lost must be 0
faults: $(INSTALLED)
	$(PY) -m benchmarks.faults

## wrk, the HTTP load generator, from Debian's packages
wrk:
	@command -v wrk >/dev/null 2>&1 || { \
		echo "== installing Debian's wrk for the benchmarks"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }

## Longer API fuzzing: schemathesis with 200 examples per operation and mode (README)
fuzz: $(INSTALLED)
	env -u DATABASE_URL -u REDIS_URL SCHEMATHESIS_MAX_EXAMPLES=$${SCHEMATHESIS_MAX_EXAMPLES:-200} $(VENV)/bin/pytest tests/security/test_schemathesis.py -p no:cacheprovider

clean:
	rm -rf $(VENV) var staticfiles
