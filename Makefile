# Two commands do all the set-up on a fresh machine:
#   make run    create .venv, install Keyturn, migrate var/demo.sqlite3, load the demo, serve :8080
#               (make run SPEED=600: the demo's clock runs 600 times faster than real time)
#   make test   the same install, then ruff, mypy and pytest (SQLite and PostgreSQL); the sandbox
#               page's browser test needs Debian's chromium and chromium-driver, installed here
#               when missing and run as root
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SPEED ?= 1

.PHONY: run test lint typecheck pytest browser clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/keyturn demo --speed $(SPEED)

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) browser
	$(BIN)/pytest

browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	  { echo "the sandbox page's browser test needs chromium and chromium-driver:" \
	      "apt-get install chromium chromium-driver"; exit 1; }

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
