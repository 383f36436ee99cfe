# One-command entry points; everything runs inside .venv (created on first use).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
CATALOG ?= ../shared/data/fixture
INDEX ?= indexes/fixture

.PHONY: install demo test test-all lint bench

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python  ## create .venv and install torch (CPU) + embedgenre with dev tools
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e ".[dev]"

demo: install  ## install, then index CATALOG into INDEX and describe it
	$(BIN)/embedgenre index $(CATALOG) --out $(INDEX)
	$(BIN)/embedgenre info $(INDEX)

test:  ## the test suite (fast tests; no network, no GPU)
	$(BIN)/python -m pytest -q

test-all:  ## fast and slow tests
	$(BIN)/python -m pytest -q -m ""

lint:
	$(BIN)/ruff check embedgenre cli tests benchmarks
