# sgs_mm: two commands on a fresh machine.
#   make test   set up .venv (idempotent) and run the test suite
#   make test-compat  the oldest supported stack (Python 3.10, torch 2.1.2,
#               numpy 1.26) in .venv-compat, and the tests that matter there
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

# The oldest supported stack (requirements/compat.txt): engine, hook,
# state/resume, faults, checkpoint security, analysis tools, real mmseg/mmpose
# training with SGS. COMPAT_PYTHON= a Python 3.10 (default: found on PATH/pyenv).
COMPAT_VENV ?= .venv-compat
override COMPAT_VENV := $(abspath $(COMPAT_VENV))
COMPAT_TESTS ?= tests/test_scaler.py tests/test_sgs_estimators.py tests/test_sgs_lemma1.py \
	tests/test_sgs_padding.py tests/test_sgs_chunking.py tests/test_sgs_state.py \
	tests/test_hook_runner.py tests/test_hook_schedule.py tests/test_hook_edge_cases.py \
	tests/test_hook_faults.py tests/test_torch_load_security.py tests/test_env_compat.py \
	tests/test_env_resume.py tests/test_analysis_tools.py tests/test_hook_mm_models.py \
	tests/test_env_train_step.py tests/test_readme_snippets.py tests/test_fsdp2.py
# intermittent hang (about 1 run in 6 here) of the two-rank gloo out-of-memory
# retry under torch 2.1, not yet diagnosed; it runs in `make test` (newest torch)
COMPAT_DESELECT ?= --deselect \
	'tests/test_sgs_state.py::test_out_of_memory_on_one_rank_all_ranks_retry_or_give_up_together'

.PHONY: env wheelhouse test test-fast test-compat demo bench clean-env

env:
	@$(SETUP_VARS) bash tools/setup_env.sh '$(VENV)'

wheelhouse:
	@test -n '$(WHEELHOUSE)' || { echo 'make wheelhouse WHEELHOUSE=DIR [PYTHON=target python] [LEAVE_OUT=present]' >&2; exit 2; }
	@$(SETUP_VARS) WHEELHOUSE= bash tools/setup_env.sh --wheelhouse '$(WHEELHOUSE)'

test: env
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: env
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-compat:
	@COMPAT_PYTHON='$(COMPAT_PYTHON)' bash tools/setup_compat.sh '$(COMPAT_VENV)'
	$(COMPAT_VENV)/bin/python -m pytest $(COMPAT_TESTS) $(COMPAT_DESELECT) $(PYTEST_ARGS)

demo: env
	$(PY) tools/demo.py $(if $(GPUS),--gpus $(GPUS))

bench: env
	$(PY) -m pip install -q -c requirements/constraints.txt -r requirements/bench.txt
	$(PY) benchmarks/bench_refresh.py

clean-env:
	rm -rf $(VENV)
