# One-command entry points; everything runs inside .venv (created on first use).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
CATALOG ?= ../shared/data/fixture
INDEX ?= indexes/fixture

# command-line tools the tests drive, in a venv of their own
TOOLS := .tools
.PHONY: install demo test test-fast lint bench

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

# openapi-python-client pins older typer and httpx than embedgenre, so it gets its own venv
$(TOOLS)/bin/openapi-python-client:
	$(PY) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q "openapi-python-client>=0.21"

test: $(TOOLS)/bin/openapi-python-client  ## the whole suite, as CI runs it (no network, no GPU)
	$(BIN)/python -m pytest -q

test-fast:  ## the inner loop: every test not marked slow
	$(BIN)/python -m pytest -q -m "not slow"

lint:  ## ruff's lint rules and formatter (the suite checks both too)
	$(BIN)/ruff check embedgenre cli tests benchmarks
	$(BIN)/ruff format --check embedgenre cli tests benchmarks
