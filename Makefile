# sgs_mm: two commands on a fresh machine.
#   make test   set up .venv (idempotent) and run the test suite
#   make demo   set up .venv (idempotent) and run the demo on built-in data
VENV ?= .venv
# absolute, so that the recipes and tools/setup_env.sh agree from any folder
override VENV := $(abspath $(VENV))
PY := $(VENV)/bin/python
SHARED_WHEELS := $(wildcard $(CURDIR)/../shared/wheelhouse)
# Prebuilt wheels (mmcv with ops) where a developer/CI machine has them.
export PIP_FIND_LINKS := $(strip $(PIP_FIND_LINKS) $(SHARED_WHEELS))
PYTEST_ARGS ?=

.PHONY: env test test-fast demo bench clean-env

env:
	@bash tools/setup_env.sh '$(VENV)'

test: env
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: env
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

demo: env
	$(PY) tools/demo.py

bench: env
	$(PY) -m pip install -q -c requirements/constraints.txt -r requirements/bench.txt
	$(PY) benchmarks/bench_refresh.py

clean-env:
	rm -rf $(VENV)
