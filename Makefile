# Two commands set everything up on a fresh machine:
#   make reproduce   create .venv, install snlib, run the reproduction on the embedded synthetic data
#                    (.venv gets the exact versions of requirements.lock, snlib editable with its test extras)
#   make test        create .venv if absent, run the whole test suite (notebooks included, under nbval)
#   make lab         JupyterLab on the notebooks at http://127.0.0.1:8888 (as root too: containers)
# (also: make env, the .venv alone; make bench, every benchmarks/bench_*.py; make clean-env, removes .venv)
PYTHON   ?= python3
VENV     ?= .venv
PY       := $(VENV)/bin/python
PRESET   ?= cpu
DATASET  ?= synthetic
DATA_ROOT ?= data
NAME     ?= $(DATASET)
# more snlib reproduce arguments, e.g. ARGS=--plan (what it would train, and how long) or ARGS="--records-root DIR"
ARGS     ?=
STAMP    := $(VENV)/.snlib-installed
# jupyter lab refuses to run as root (containers) unless given --allow-root: passed only when the user is root
LAB_UID  ?= $(shell id -u)
LAB_ARGS  = --ip=127.0.0.1 --no-browser$(if $(filter 0,$(LAB_UID)), --allow-root)

.PHONY: reproduce test env bench lab clean-env

env: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock -e '.[test]'
	touch $(STAMP)

reproduce: $(STAMP)
	$(PY) -m snlib reproduce --preset $(PRESET) --dataset $(DATASET) --data-root $(DATA_ROOT) --name $(NAME) $(ARGS)

test: $(STAMP)
	$(PY) -m pytest

lab: $(STAMP)
	$(VENV)/bin/jupyter lab $(LAB_ARGS) notebooks/

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean-env:
	rm -rf $(VENV)
