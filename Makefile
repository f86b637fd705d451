# The two commands the README promises on a fresh Debian machine:
#   make run    set everything up and start a development node in ./data on [::1]
#   make test   set everything up (including external test tools) and run the suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DATA   ?= data

.PHONY: run test venv test-tools clean
.DEFAULT_GOAL := run

$(VENV)/.stamp-run: pyproject.toml
	scripts/ensure-python.sh $(PYTHON)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.stamp-test: $(VENV)/.stamp-run
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.stamp-run

run: $(VENV)/.stamp-run
	DATA=$(DATA) VENV=$(VENV) scripts/run-dev-node.sh

test-tools:
	scripts/install-test-tools.sh

test: $(VENV)/.stamp-test test-tools
	$(PY) -m pytest

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
