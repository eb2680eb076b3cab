# Two commands set everything up on a fresh machine:
#   make reproduce   create .venv, install snlib, run the reproduction on the embedded synthetic data
#   make test        create .venv if absent, run the whole test suite (notebooks included, under nbval)
PYTHON   ?= python3
VENV     ?= .venv
PY       := $(VENV)/bin/python
PRESET   ?= cpu
DATASET  ?= synthetic
DATA_ROOT ?= data/synthetic
NAME     ?= $(DATASET)
STAMP    := $(VENV)/.snlib-installed

.PHONY: reproduce test env bench clean-env

env: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

reproduce: $(STAMP)
	$(PY) -m snlib reproduce --preset $(PRESET) --dataset $(DATASET) --data-root $(DATA_ROOT) --name $(NAME)

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean-env:
	rm -rf $(VENV)
