# Everything starts from nothing: a fresh .venv, installs from the package index.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DURATION ?= 35

.PHONY: demo test test-under-load lint bench bench-ilert clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# the first run installs the packages (about a minute): pip shows what it is doing
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	@echo "== installing ixon-agent and its packages into $(VENV) (once) =="
	$(BIN)/python -m pip install --disable-pip-version-check --progress-bar on -e '.[opcua]'
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	@echo "== installing the test tools into $(VENV) (once) =="
	$(BIN)/python -m pip install --disable-pip-version-check --progress-bar on -e '.[test,opcua]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/ixon-agent demo --duration $(DURATION)

test: $(VENV)/.installed-test
	$(BIN)/ruff check agent simulators workbench tests bench
	$(BIN)/mypy agent simulators workbench
	$(BIN)/python -m pytest -n auto

# the suite beside one busy loop per core, RUNS times: what a shared CI machine does to it
test-under-load: $(VENV)/.installed-test
	bash tests/under_load.sh $(or $(RUNS),5)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check agent simulators workbench tests bench
	$(BIN)/ruff format --check agent simulators workbench tests bench
	$(BIN)/mypy agent simulators workbench

# every bench, each on free ports, the real `ixon-agent run` where it applies (~5 min)
bench: $(VENV)/.installed
	$(BIN)/python bench/acquisition.py --seconds 15
	$(BIN)/python bench/alarms.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/latency.py --hog
	$(BIN)/python bench/idle.py --seconds 20
	$(BIN)/python bench/disk.py --seconds 40
	$(BIN)/python bench/state_size.py
	$(BIN)/python bench/opcua.py --seconds 15
	$(BIN)/python bench/s7.py --variables 2000 --seconds 15
	$(BIN)/python bench/login.py
	$(BIN)/python bench/ack.py

# against ilert's limits, in real minutes (~15 min): a storm to one key; a fleet of 100 agents
bench-ilert: $(VENV)/.installed
	$(BIN)/python bench/storm.py
	$(BIN)/python bench/fleet.py

clean:
	rm -rf $(VENV) var .pytest_cache
