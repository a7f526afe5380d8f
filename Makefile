# Two entry points: `make demo` (the built-in default run) and `make test`.
# Both create .venv when missing and install torch 2.13.0 (CPU build) before the project,
# so pip never pulls a multi-GB CUDA build.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.xdistil-installed

.PHONY: demo test install clean mutation

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[test,ray]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/xdistil demo --out runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest

# mutation testing of the core modules (not part of CI; about an hour on 2 cores)
mutation: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[test,mutation]"
	$(BIN)/python benchmarks/mutation.py

clean:
	rm -rf $(VENV) runs mutants
