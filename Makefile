# The two commands the README promises on a fresh Debian machine:
#   make run    set everything up and start a development node in ./data on [::1]
#   make test   set everything up (including external test tools) and run the suite
# Long runs, kept out of `make test` (their results go in docs/security.md):
#   make fuzz         >= 1,000,000 examples across every parser of outside bytes
#   make crash-test   >= 50 SIGKILLs under mixed load; nothing acknowledged may be lost
#   make flood-test   floods on every listener; a legitimate client's p99 beside the quiet one
#   make soak         10 minutes of random faults on a 4-node devnet (docs/federation.md)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DATA   ?= data

.PHONY: run test venv test-tools clean fuzz crash-test flood-test soak
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

# One pytest worker per CPU; a module's tests run on one worker (they share its nodes).
test: $(VENV)/.stamp-test test-tools
	$(PY) -m pytest -n auto --dist loadfile

fuzz: $(VENV)/.stamp-test
	$(PY) -m tests.fuzz --examples 1000000

crash-test: $(VENV)/.stamp-test
	$(PY) -m tests.crash --kills 50

flood-test: $(VENV)/.stamp-test test-tools
	$(PY) -m tests.flood

soak: $(VENV)/.stamp-test
	$(PY) -m tests.perturbation --minutes 10

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
