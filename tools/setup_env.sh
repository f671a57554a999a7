#!/usr/bin/env bash
# Create or refresh the project's virtualenv (default: .venv) idempotently.
#
#   tools/setup_env.sh [VENV_DIR]
#
# VENV_DIR (or $SGS_VENV) may be relative: it is taken from the caller's working
# directory, as are $SGS_WHEEL_CACHE, $SGS_MMCV_BUILD_LOG and PIP_FIND_LINKS folders.
# A complete environment is detected by a stamp (hash of the requirement files and
# this script) plus an import check, and then setup takes seconds. Otherwise it
# installs torch/torchvision, mmcv 2.1.0 WITH compiled ops (a wheel from
# PIP_FIND_LINKS or from the local cache .cache/wheels when one fits, else built
# from the sdist with the C++20 patch by tools/build_mmcv.sh and cached; its full
# output goes to .cache/mmcv-build.log), the pinned OpenMMLab stack, mmpose and
# openmim (--no-deps, with the dependencies they really need) and sgs_mm in
# editable mode.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Every path is made absolute once, here, against the caller's working directory.
abspath() {
  realpath -ms -- "$1" 2>/dev/null \
    || case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac
}
VENV=$(abspath "${1:-${SGS_VENV:-$ROOT/.venv}}")
PY=${PYTHON:-python3}
CACHE=$(abspath "${SGS_WHEEL_CACHE:-$ROOT/.cache/wheels}")
BUILD_LOG=$(abspath "${SGS_MMCV_BUILD_LOG:-$ROOT/.cache/mmcv-build.log}")
CONSTRAINTS=$ROOT/requirements/constraints.txt
STAMP=$VENV/.sgs_mm_env_stamp
IMPORT_CHECK='import torch, torchvision, mmengine, mmcv.ops, mmseg, mmpose, mmpretrain, mmdet, mim, sgs_mm'

log() { printf '[setup_env %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

want=$(cat "$ROOT"/requirements/*.txt "$ROOT/setup.cfg" "$ROOT/tools/build_mmcv.sh" "${BASH_SOURCE[0]}" \
  | sha256sum | cut -c1-16)
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
  for d in ${PIP_FIND_LINKS:-}; do
    case $d in *://*) links+=(--find-links "$d") ;; *) links+=(--find-links "$(abspath "$d")") ;; esac
  done
  log "looking for a prebuilt mmcv 2.1.0 wheel in: $CACHE ${PIP_FIND_LINKS:-}"
  if "$VPY" -m pip install --no-index --no-deps --only-binary=:all: "${links[@]}" mmcv==2.1.0 \
      && mmcv_fits; then
    log "mmcv 2.1.0 with ops installed from a wheel"
  else
    "$VPY" -m pip uninstall -y mmcv >/dev/null 2>&1 || true
    log "no fitting mmcv wheel: building mmcv 2.1.0 with ops from source."
    log "This takes 10-30 minutes on 2 cores; the wheel is cached in $CACHE."
    build=$(mktemp -d)
    trap 'rm -rf "$build"' EXIT
    "$VPY" -m pip download --no-deps --no-binary=:all: -d "$build" mmcv==2.1.0
    bash "$ROOT/tools/build_mmcv.sh" "$VPY" "$build/mmcv-2.1.0.tar.gz" "$CACHE" "$BUILD_LOG" \
      || { log "mmcv build failed; the reason is in the lines above and in $BUILD_LOG"; exit 1; }
    rm -rf "$build"
    "$VPY" -m pip install --no-index --no-deps --find-links "$CACHE" mmcv==2.1.0
    mmcv_fits || { log "built mmcv does not import mmcv.ops"; exit 1; }
  fi
fi

log "installing the pinned OpenMMLab stack"
pipi -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/tests.txt"
# mmpose's chumpy does not build; openmim's opendatalab/openxlab downgrade
# setuptools and requests: both --no-deps, their real dependencies are in the
# requirement files above.
pipi --no-deps mmpose openmim
pipi --no-deps --no-build-isolation -e "$ROOT"

"$VPY" -c "$IMPORT_CHECK"
echo "$want" > "$STAMP"
log "environment $VENV is complete"
