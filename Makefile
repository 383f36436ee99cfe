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

DEMO_ID ?= tt0311429

demo: install  ## index CATALOG into INDEX, train a head, predict one poster, list movies like it
	$(BIN)/embedgenre index $(CATALOG) --out $(INDEX)
	$(BIN)/embedgenre info $(INDEX)
	$(BIN)/embedgenre train $(INDEX) --method linear --modality poster --folds 0
	$(BIN)/embedgenre predict $(CATALOG)/posters/$(DEMO_ID).jpg --index $(INDEX)
	$(BIN)/embedgenre similar --id $(DEMO_ID) --index $(INDEX) -k 5

test:  ## the test suite (fast tests; no network, no GPU)
	$(BIN)/python -m pytest -q

test-all:  ## fast and slow tests
	$(BIN)/python -m pytest -q -m ""

lint:
	$(BIN)/ruff check embedgenre cli tests benchmarks
