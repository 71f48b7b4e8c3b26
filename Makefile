# Two entry points a newcomer needs; both create the environment first.
PY ?= python3
VENV ?= .venv
WORKDIR ?= workdir/quickstart
BIN := $(VENV)/bin

.PHONY: setup quickstart test bench tokenizer clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# constraints.txt: the exact versions the tests passed with, inside setup.py's ranges
setup: $(BIN)/python
	$(BIN)/pip install -q -c constraints.txt -e ".[test]"

quickstart: setup
	$(BIN)/python -m rtc.main --config=experiments/configs/quickstart.py --workdir=$(WORKDIR)

test: setup
	$(BIN)/python -m pytest -q tests --durations=20

bench: setup
	$(BIN)/pip install -q -c constraints.txt -e ".[bench]"
	$(BIN)/python bench/throughput.py

tokenizer: setup
	$(BIN)/python -m rtc.tokenizer.build

clean:
	rm -rf $(VENV) workdir *.egg-info
