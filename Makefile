# Two commands do all the set-up on a fresh machine: `make train` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
RUN    := $(BIN)/.installed
DEV    := $(BIN)/.installed-dev
ARGS   ?=

.PHONY: train test test-fast lint format bench tensorboard clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# setuptools warns, at length, that an editable install imports from this directory: it does
PIP_QUIET := PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install -q

$(RUN): pyproject.toml | $(BIN)/python
	$(PIP_QUIET) -e .
	touch $@

$(DEV): pyproject.toml | $(BIN)/python
	$(PIP_QUIET) -e '.[dev]'
	touch $@ $(RUN)

train: $(RUN)
	$(BIN)/python train.py $(ARGS)

lint: $(DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(DEV)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# one pytest worker per core, up to 4 (pytest-xdist), each taking whole files: the end-to-end
# tests spend most of their time in train.py processes that use about one core and a half
PYTEST := $(BIN)/python -m pytest -q -n auto --maxprocesses=4 --dist loadfile

test: lint
	$(PYTEST)

test-fast: lint  # the unit tests: without the end-to-end tests (whole runs) marked slow
	$(PYTEST) -m "not slow"

bench: $(DEV)
	$(BIN)/python bench/loaders.py $(ARGS)

tensorboard: $(DEV)
	$(BIN)/tensorboard --logdir outputs --host 127.0.0.1

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache .ruff_cache
