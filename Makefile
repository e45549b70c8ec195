# The two commands of the README. Both create .venv at the repo root and install into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
# Applies to every install, build environments included.
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt

.PHONY: install run test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet --config-settings editable_mode=compat -e ".[test]"
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/resell-studio serve

test: install
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache
