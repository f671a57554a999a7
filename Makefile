# sgs_mm: two commands on a fresh machine.
#   make test   set up .venv (idempotent) and run the test suite
#   make demo   set up .venv (idempotent) and run the demo on built-in data
#               (GPUS=N: N GPUs under torchrun; GPUS=0: the CPU)
# Your own torch (docs/install.md):
#   make env TORCH=keep [VENV=existing venv/conda env | PYTHON=python with torch] [MMCV_CUDA=1]
#   make wheelhouse WHEELHOUSE=DIR PYTHON=target-python [LEAVE_OUT=present]
#   make env TORCH=keep WHEELHOUSE=DIR ...   (offline: no package index)
VENV ?= .venv
# absolute, so that the recipes and tools/setup_env.sh agree from any folder
override VENV := $(abspath $(VENV))
PY := $(VENV)/bin/python
SHARED_WHEELS := $(wildcard $(CURDIR)/../shared/wheelhouse)
# Prebuilt wheels (mmcv with ops) where a developer/CI machine has them.
export PIP_FIND_LINKS := $(strip $(PIP_FIND_LINKS) $(SHARED_WHEELS))
PYTEST_ARGS ?=
# passed to tools/setup_env.sh (empty: its defaults)
SETUP_VARS = TORCH='$(TORCH)' PYTHON='$(PYTHON)' MMCV_CUDA='$(MMCV_CUDA)' \
	WHEELHOUSE='$(WHEELHOUSE)' LEAVE_OUT='$(LEAVE_OUT)'

.PHONY: env wheelhouse test test-fast demo bench clean-env

env:
	@$(SETUP_VARS) bash tools/setup_env.sh '$(VENV)'

wheelhouse:
	@test -n '$(WHEELHOUSE)' || { echo 'make wheelhouse WHEELHOUSE=DIR [PYTHON=target python] [LEAVE_OUT=present]' >&2; exit 2; }
	@$(SETUP_VARS) WHEELHOUSE= bash tools/setup_env.sh --wheelhouse '$(WHEELHOUSE)'

test: env
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: env
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

demo: env
	$(PY) tools/demo.py $(if $(GPUS),--gpus $(GPUS))

bench: env
	$(PY) -m pip install -q -c requirements/constraints.txt -r requirements/bench.txt
	$(PY) benchmarks/bench_refresh.py

clean-env:
	rm -rf $(VENV)
