#!/usr/bin/env bash
# Create or refresh the project's virtualenv (default: .venv) idempotently.
#
#   tools/setup_env.sh [VENV_DIR]
#
# A complete environment is detected by a stamp (hash of the requirement files and
# this script) plus an import check, and then setup takes seconds. Otherwise it
# installs torch/torchvision, mmcv 2.1.0 WITH compiled ops (a wheel from
# PIP_FIND_LINKS or from the local cache .cache/wheels when one fits, else built
# from the sdist with the C++20 patch and cached), the pinned OpenMMLab stack,
# mmpose (--no-deps) and sgs_mm in editable mode.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${1:-${SGS_VENV:-$ROOT/.venv}}
PY=${PYTHON:-python3}
CACHE=${SGS_WHEEL_CACHE:-$ROOT/.cache/wheels}
CONSTRAINTS=$ROOT/requirements/constraints.txt
STAMP=$VENV/.sgs_mm_env_stamp
IMPORT_CHECK='import torch, torchvision, mmengine, mmcv.ops, mmseg, mmpose, mmpretrain, mmdet, sgs_mm'

log() { printf '[setup_env %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

want=$(cat "$ROOT"/requirements/*.txt "$ROOT/setup.cfg" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)
if [[ -f $STAMP && $(cat "$STAMP") == "$want" ]] && "$VENV/bin/python" -c "$IMPORT_CHECK" 2>/dev/null; then
  log "environment $VENV is complete"
  exit 0
fi

if [[ ! -x $VENV/bin/python ]]; then
  log "creating virtualenv $VENV with $($PY --version)"
  "$PY" -m venv "$VENV"
fi
VPY=$VENV/bin/python
pipi() { "$VPY" -m pip install --disable-pip-version-check -c "$CONSTRAINTS" "$@"; }

log "installing torch, torchvision, build tools and mmcv's own dependencies"
pipi torch torchvision setuptools numpy wheel ninja mmengine opencv-python addict packaging pyyaml yapf

mkdir -p "$CACHE"
mmcv_fits() { "$VPY" -c 'import mmcv, mmcv.ops; assert mmcv.__version__ == "2.1.0"'; }
if ! mmcv_fits 2>/dev/null; then
  links=(--find-links "$CACHE")
  for d in ${PIP_FIND_LINKS:-}; do links+=(--find-links "$d"); done
  log "looking for a prebuilt mmcv 2.1.0 wheel in: $CACHE ${PIP_FIND_LINKS:-}"
  if "$VPY" -m pip install --no-index --no-deps --only-binary=:all: "${links[@]}" mmcv==2.1.0 \
      && mmcv_fits; then
    log "mmcv 2.1.0 with ops installed from a wheel"
  else
    "$VPY" -m pip uninstall -y mmcv >/dev/null 2>&1 || true
    log "no fitting mmcv wheel: building mmcv 2.1.0 with ops from source."
    log "This takes 10-40 minutes on 2 cores; the wheel is cached in $CACHE."
    build=$(mktemp -d)
    "$VPY" -m pip download --no-deps --no-binary=:all: -d "$build" mmcv==2.1.0
    tar xzf "$build"/mmcv-2.1.0.tar.gz -C "$build"
    sed -i "s/'-std=c++17'/'-std=c++20'/" "$build/mmcv-2.1.0/setup.py"
    # a heartbeat every minute, and the compiler's [n/N] steps as they come
    ( minutes=0; while sleep 60; do minutes=$((minutes + 1)); log "mmcv build running, ${minutes} min"; done ) &
    heartbeat=$!
    trap 'kill $heartbeat 2>/dev/null || true' EXIT
    ( cd "$build/mmcv-2.1.0" && MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-2} \
        "$VPY" -m pip wheel --no-build-isolation --no-deps -v . -w "$CACHE" 2>&1 \
        | { grep --line-buffered -E '^\s*\[[0-9]+/[0-9]+\]|Created wheel|error:' || true; } \
        | sed -uE 's/^\s*(\[[0-9]+\/[0-9]+\]).* -c [^ ]*mmcv-2\.1\.0\/([^ ]+).*/  \1 \2/' ) \
      || { log "mmcv build failed (see the errors above)"; exit 1; }
    kill $heartbeat 2>/dev/null || true
    rm -rf "$build"
    "$VPY" -m pip install --no-index --no-deps --find-links "$CACHE" mmcv==2.1.0
    mmcv_fits || { log "built mmcv does not import mmcv.ops"; exit 1; }
  fi
fi

log "installing the pinned OpenMMLab stack"
pipi -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/tests.txt"
pipi --no-deps mmpose
pipi --no-deps --no-build-isolation -e "$ROOT"

"$VPY" -c "$IMPORT_CHECK"
echo "$want" > "$STAMP"
log "environment $VENV is complete"
