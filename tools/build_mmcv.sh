#!/usr/bin/env bash
# Build an mmcv wheel WITH compiled ops (CPU) from its sdist or source tree.
#
#   tools/build_mmcv.sh PYTHON SOURCE WHEEL_DIR [LOG_FILE]
#
# PYTHON     the interpreter of the target environment (torch, setuptools,
#            ninja and wheel installed; the build runs --no-build-isolation)
# SOURCE     mmcv-X.Y.Z.tar.gz (extracted into a temporary folder) or a
#            source folder (built in place)
# WHEEL_DIR  where the wheel is written (created if missing)
# LOG_FILE   the full pip/compiler output (default: WHEEL_DIR/../mmcv-build.log)
#
# Relative paths are taken from the caller's working directory. The console gets
# the compiler's [n/N] steps and a heartbeat line every minute; the log file gets
# everything. On failure its first 20 error lines (compiler errors, ninja's FAILED
# steps, Python exceptions, pip's ERROR lines) and its last $SGS_BUILD_LOG_TAIL
# (40) lines are printed with its path, and the exit status is 1.
# Called by tools/setup_env.sh; MAX_JOBS sets the compile parallelism (2),
# SGS_BUILD_HEARTBEAT_S the heartbeat's period in seconds (60).
# MMCV_CUDA=1 also compiles the CUDA kernels (FORCE_CUDA=1) for
# TORCH_CUDA_ARCH_LIST (default: the visible GPUs' compute capability). By
# default only the CPU ops are built and the GPUs are hidden from the build
# (CUDA_VISIBLE_DEVICES=): mmcv's setup.py adds the CUDA kernels whenever torch
# sees a GPU.
set -euo pipefail

log() { printf '[build_mmcv %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
abspath() {
  realpath -ms -- "$1" 2>/dev/null \
    || case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac
}

if [[ $# -lt 3 || $# -gt 4 ]]; then
  echo "usage: $0 PYTHON SOURCE WHEEL_DIR [LOG_FILE]" >&2
  exit 2
fi
# A python given as a bare command name (python3) is looked up on PATH.
if [[ $1 == */* ]]; then PYBIN=$(abspath "$1"); else PYBIN=$(command -v "$1" || echo "$1"); fi
SOURCE=$(abspath "$2")
WHEEL_DIR=$(abspath "$3")
LOG_FILE=$(abspath "${4:-$WHEEL_DIR/../mmcv-build.log}")
TAIL_LINES=${SGS_BUILD_LOG_TAIL:-40}

mkdir -p "$WHEEL_DIR" "$(dirname "$LOG_FILE")"
: > "$LOG_FILE"

tmp=
heartbeat=
# pip writes the wheel here, in WHEEL_DIR's file system; it is renamed into
# WHEEL_DIR once complete, so the cache never holds a partly written wheel
STAGE="$WHEEL_DIR/.incoming.$$"
cleanup() {
  [[ -n $heartbeat ]] && kill "$heartbeat" 2>/dev/null || true
  [[ -n $tmp ]] && rm -rf "$tmp" || true
  rm -rf "$STAGE"
}
trap cleanup EXIT

# compiler errors, ninja's FAILED steps, Python exceptions, pip's ERROR lines
ERROR_RE='(^\s*|: )(fatal )?error:|^\s*FAILED: |[A-Za-z]+Error: |^\s*ERROR: |No such file or directory'
fail() {
  log "mmcv build FAILED: $*"
  local errors
  errors=$(grep -nE "$ERROR_RE" "$LOG_FILE" | head -n 20 || true)
  if [[ -n $errors ]]; then
    log "first error lines of the build log (line number: text):"
    printf '%s\n' "$errors" | sed 's/^/    /'
  fi
  log "last $TAIL_LINES lines of the build log $LOG_FILE:"
  tail -n "$TAIL_LINES" "$LOG_FILE" | sed 's/^/    /'
  log "full build log: $LOG_FILE"
  exit 1
}

if [[ -d $SOURCE ]]; then
  src=$SOURCE
elif [[ -f $SOURCE ]]; then
  tmp=$(mktemp -d)
  tar xzf "$SOURCE" -C "$tmp" >>"$LOG_FILE" 2>&1 || fail "cannot extract $SOURCE"
  src=$(find "$tmp" -mindepth 1 -maxdepth 1 -type d | head -n 1)
  [[ -n $src ]] || fail "$SOURCE holds no source folder"
else
  fail "no such source: $SOURCE"
fi
[[ -f $src/setup.py ]] || fail "$src has no setup.py"
# torch >= 2.10 headers require C++20; mmcv 2.1.0's setup.py asks for C++17.
sed -i "s/'-std=c++17'/'-std=c++20'/" "$src/setup.py"

log "building $(basename "$src") with ops; full output in $LOG_FILE"
# a heartbeat every minute, and the compiler's [n/N] steps as they come
beat=${SGS_BUILD_HEARTBEAT_S:-60}
( start=$SECONDS
  while sleep "$beat" </dev/null >/dev/null 2>&1; do
    t=$((SECONDS - start))
    if ((beat % 60 == 0)); then m="$(((t + 30) / 60)) min"; else m="$t s"; fi
    log "mmcv build running, $m"
  done ) &
heartbeat=$!

# No debug info: Python's CFLAGS carry -g, which more than doubles the compile
# time of each torch-extension file (measured 32 s -> 13 s CPU for carafe.cpp)
# and bloats the wheel. setuptools REPLACES its CFLAGS with $CFLAGS, so pass
# Python's own flags (-O3 ...) followed by -g0. SGS_MMCV_CFLAGS= (empty) keeps -g.
extra=${SGS_MMCV_CFLAGS--g0}
pyflags=$("$PYBIN" -c 'import sysconfig; print(sysconfig.get_config_var("CFLAGS") or "")' 2>/dev/null || true)
cflags="${CFLAGS:-$pyflags}${extra:+ $extra}"
cxxflags="${CXXFLAGS:-${CFLAGS:-$pyflags}}${extra:+ $extra}"
log "compile flags: $cflags"

if [[ ${MMCV_CUDA:-0} == 1 ]]; then
  if [[ -z ${TORCH_CUDA_ARCH_LIST:-} ]]; then
    TORCH_CUDA_ARCH_LIST=$("$PYBIN" -c 'import torch
assert torch.cuda.is_available(), "no GPU visible to torch"
print(";".join(sorted({"%d.%d" % torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})))' 2>&1) \
      || fail "MMCV_CUDA=1 needs a visible GPU or TORCH_CUDA_ARCH_LIST: $TORCH_CUDA_ARCH_LIST"
  fi
  command -v nvcc >/dev/null || [[ -x ${CUDA_HOME:-/nonexistent}/bin/nvcc ]] \
    || fail "MMCV_CUDA=1 needs nvcc (on PATH or in \$CUDA_HOME/bin)"
  cuda_env=(FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="$TORCH_CUDA_ARCH_LIST")
  log "CUDA kernels for TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST"
else
  cuda_env=(FORCE_CUDA=0 CUDA_VISIBLE_DEVICES=)
  log "CPU ops only (GPUs hidden from the build; MMCV_CUDA=1 adds the CUDA kernels)"
fi

status=0
( cd "$src" && env "${cuda_env[@]}" MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2} CFLAGS="$cflags" CXXFLAGS="$cxxflags" \
    "$PYBIN" -m pip wheel --no-build-isolation --no-deps -v . -w "$STAGE" ) 2>&1 \
  | tee -a "$LOG_FILE" \
  | { grep --line-buffered -E '^\s*\[[0-9]+/[0-9]+\]|Created wheel' || true; } \
  | sed -uE 's/^\s*(\[[0-9]+\/[0-9]+\]).* -c ([^ ]*\/)?(mmcv\/[^ ]+).*/  \1 \3/' \
  || status=$?
kill "$heartbeat" 2>/dev/null || true
heartbeat=
if [[ $status -ne 0 ]]; then
  fail "pip wheel exited with status $status"
fi
# a wheel without compiled ops (setup.py did not see torch) must not be cached
wheel=$(ls -t "$STAGE"/mmcv-*.whl 2>/dev/null | head -n 1)
if [[ -z $wheel ]] || ! "$PYBIN" -c 'import sys, zipfile; sys.exit(not any(
    n.startswith("mmcv/_ext") for n in zipfile.ZipFile(sys.argv[1]).namelist()))' "$wheel"; then
  [[ -n $wheel ]] && rm -f "$wheel"
  fail "the wheel has no compiled ops (mmcv/_ext): does $PYBIN import torch?"
fi
mv -f "$wheel" "$WHEEL_DIR/" || fail "cannot move the wheel into $WHEEL_DIR"
wheel="$WHEEL_DIR/$(basename "$wheel")"
log "mmcv wheel written to $wheel (build log: $LOG_FILE)"
