#!/usr/bin/env bash
# Create or refresh the project's environment (default: .venv) idempotently,
# or collect a wheelhouse for offline nodes.
#
#   tools/setup_env.sh [VENV_DIR]
#   tools/setup_env.sh --wheelhouse DIR          (PYTHON= the target interpreter)
#
# VENV_DIR (or $SGS_VENV) may be relative: it is taken from the caller's working
# directory, as are $SGS_WHEEL_CACHE, $SGS_MMCV_BUILD_LOG, $WHEELHOUSE and
# PIP_FIND_LINKS folders.
#
# Environment variables (the Makefile passes its variables of the same names):
#   PYTHON      interpreter for a new venv (default python3)
#   TORCH=keep  keep the torch of the environment: VENV_DIR may be an existing
#               venv or conda env with torch; a new VENV_DIR is created so that
#               it sees PYTHON's site-packages (also when PYTHON itself lives in
#               a venv: a .pth file adds them). torch, torchvision, numpy and
#               opencv already present are never installed, upgraded or
#               downgraded (their constraint lines become ==present, and their
#               version/files are compared before and after); other pins of
#               requirements/constraints.txt apply only to what setup adds.
#               Without TORCH=keep, setup installs torch 2.14.1 / numpy 1.26.4.
#   MMCV_CUDA=1 build mmcv's CUDA kernels too, for the visible GPUs' arch
#               (default: CPU ops, GPUs hidden from the build)
#   WHEELHOUSE  a folder from `--wheelhouse`: pip uses it and no package index
#   LEAVE_OUT   (--wheelhouse) 'present': leave out what PYTHON's environment
#               has; package names: leave those out too (the target has them)
#
# A complete environment is detected by a stamp (hash of the requirement files,
# this script, and with TORCH=keep the kept versions) plus an import check, and
# then setup takes seconds. mmcv 2.1.0 WITH compiled ops comes from a wheel that
# fits this torch (the cache .cache/wheels/mmcv/<torch>-<cuda>-<cpXY>-<ops>/, the
# wheelhouse's mmcv/<key>/, or a wheel in PIP_FIND_LINKS / the wheelhouse whose
# compiled ops load against this torch), else it is built from the sdist with the
# C++20 patch by tools/build_mmcv.sh and cached under its key (full output in
# .cache/mmcv-build.log). Then the pinned OpenMMLab stack, mmpose and openmim
# (--no-deps, with the dependencies they really need) and sgs_mm (editable).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Every path is made absolute once, here, against the caller's working directory.
abspath() {
  realpath -ms -- "$1" 2>/dev/null \
    || case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac
}
log() { printf '[setup_env %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
# copy_whole FILE DIR: a temporary name in DIR, then renamed: DIR never holds
# a partly copied file (an interrupted setup, a full disk)
copy_whole() {
  local part
  part="$2/.$(basename "$1").part.$$"
  cp "$1" "$part" && mv -f "$part" "$2/$(basename "$1")" || { rm -f "$part"; return 1; }
}
die() { log "ERROR: $*" >&2; exit 1; }

WH_OUT=
if [[ ${1:-} == --wheelhouse ]]; then
  [[ -n ${2:-} ]] || die "usage: $0 --wheelhouse DIR"
  WH_OUT=$(abspath "$2")
  shift 2
fi
VENV=$(abspath "${1:-${SGS_VENV:-$ROOT/.venv}}")
PY=${PYTHON:-python3}
CACHE=$(abspath "${SGS_WHEEL_CACHE:-$ROOT/.cache/wheels}")
BUILD_LOG=$(abspath "${SGS_MMCV_BUILD_LOG:-$ROOT/.cache/mmcv-build.log}")
CONSTRAINTS=$ROOT/requirements/constraints.txt
PROBE=$ROOT/tools/env_probe.py
STAMP=$VENV/.sgs_mm_env_stamp
MMCV_CUDA=${MMCV_CUDA:-0}
case ${TORCH:-} in
  keep) KEEP=1 ;;
  '' | pin | pinned) KEEP=0 ;;
  *) die "TORCH=${TORCH}: TORCH=keep keeps the environment's torch; unset, setup installs torch 2.14.1" ;;
esac
WHEELHOUSE=${WHEELHOUSE:+$(abspath "$WHEELHOUSE")}
IMPORT_CHECK='import torch, torchvision, mmengine, mmcv.ops, mmseg, mmpose, mmpretrain, mmdet, mim, sgs_mm'
MMCV_SDIST=mmcv-2.1.0.tar.gz
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# An interpreter given as a bare command name (python3) is looked up on PATH.
resolve_py() {
  local p
  if [[ $1 == */* ]]; then p=$(abspath "$1"); else p=$(command -v "$1" || true); fi
  [[ -n $p && -x $p ]] || die "no such interpreter: PYTHON=$1"
  printf '%s\n' "$p"
}
torch_of() { "$1" -c 'import torch, sys; print(torch.__version__, torch.__file__)' 2>/dev/null; }
no_torch() {
  die "TORCH=keep: $1 ($("$1" --version 2>&1)) has no torch ('import torch' fails).
    Install torch and torchvision for your CUDA into that environment first, or point
    setup at one that has them: make env TORCH=keep VENV=/path/to/env (an existing venv
    or conda env) or PYTHON=/path/to/python (a new venv that sees its packages).
    Without TORCH=keep, setup installs its own torch 2.14.1."
}

# ------------------------------------------------------------ wheelhouse
if [[ -n $WH_OUT ]]; then
  WPY=$(resolve_py "$PY")
  mkdir -p "$WH_OUT"
  pytag=$("$WPY" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
  log "collecting a wheelhouse for $WPY ($("$WPY" --version 2>&1), $pytag) in $WH_OUT"
  "$WPY" -m pip --version >/dev/null 2>&1 || die "$WPY has no pip (python -m ensurepip)"
  mapfile -t present < <("$WPY" "$PROBE" protected)
  log "present in that environment (kept by TORCH=keep): ${present[*]:-nothing}"
  "$WPY" "$PROBE" keep-reqs "$TMP/reqs.txt" "$ROOT"/requirements/{runtime,tests,keep_torch}.txt
  np_major=$("$WPY" "$PROBE" numpy-major)
  # LEAVE_OUT: 'present' (what PYTHON's environment has) and/or package names
  leave_present=0 leave_names=()
  for w in ${LEAVE_OUT:-}; do
    if [[ $w == present ]]; then leave_present=1; else leave_names+=("$w"); fi
  done
  if ((leave_present)); then
    # exactly what TORCH=keep setup would install into that environment
    "$WPY" "$PROBE" constraints "$CONSTRAINTS" "$TMP/cons.txt"
    resolve=(--dry-run)
  else
    # everything but torch/torchvision, at the pinned (or present) versions
    "$WPY" "$PROBE" constraints "$CONSTRAINTS" "$TMP/cons.txt" --all-pins
    for p in "${present[@]}"; do
      case $p in torch==* | torchvision==*) ;; *) echo "$p" >> "$TMP/reqs.txt" ;; esac
    done
    resolve=(--dry-run --ignore-installed)
  fi
  # the --no-deps packages (xtcocotools: below)
  nodeps=(mmengine mmpose openmim)
  log "resolving"
  "$WPY" -m pip install --disable-pip-version-check "${resolve[@]}" -q --report "$TMP/report.json" \
    -c "$TMP/cons.txt" -r "$TMP/reqs.txt"
  "$WPY" "$PROBE" report-pins "$TMP/report.json" torch torchvision "${leave_names[@]}" \
    > "$TMP/pins.txt"
  ((${#leave_names[@]})) && log "left out by name: ${leave_names[*]}"
  for n in "${nodeps[@]}"; do
    grep -iE "^${n}==" "$TMP/cons.txt" >> "$TMP/pins.txt" || echo "$n" >> "$TMP/pins.txt"
  done
  log "downloading $(wc -l < "$TMP/pins.txt") packages"
  "$WPY" -m pip download --disable-pip-version-check -q --no-deps -d "$WH_OUT" -r "$TMP/pins.txt"
  # The sdists' setup.py import pkg_resources (setuptools < 81) and numpy without
  # declaring them, so pip's isolated metadata build fails: a throwaway venv
  # with both prepares their metadata (--no-build-isolation).
  xtc=$(grep -iE '^xtcocotools==' "$TMP/cons.txt" | cut -d' ' -f1 || echo xtcocotools)
  sdists=(mmcv==2.1.0 "$xtc")
  if ((np_major < 2)); then  # numpy 1.x: the PyPI wheel, where one exists for this Python
    "$WPY" -m pip download --disable-pip-version-check -q --no-deps --only-binary=:all: \
      -d "$WH_OUT" "$xtc" 2>/dev/null || log "no $xtc wheel for $pytag: the sdist is built on the target"
  fi
  log "sdists: ${sdists[*]} (built on the target)"
  "$WPY" -m venv "$TMP/dl"
  "$TMP/dl/bin/python" -m pip install --disable-pip-version-check -q --find-links "$WH_OUT" \
    'setuptools<81' numpy wheel
  "$TMP/dl/bin/python" -m pip download --disable-pip-version-check -q --no-deps --no-build-isolation \
    --no-binary=:all: -d "$WH_OUT" "${sdists[@]}"
  # a prebuilt mmcv fitting the target torch: from the cache (by key) or a
  # PIP_FIND_LINKS folder (its ops must load against that torch)
  if tinfo=$(torch_of "$WPY"); then
    # wheels built here for this torch/CUDA/Python: every ops variant in the cache
    base=$("$WPY" "$PROBE" mmcv-key OPS)
    base=${base%-OPS}
    found=
    for d in "$CACHE/mmcv/$base"-*/; do
      for w in "$d"mmcv-2.1.0-*.whl; do
        [[ -f $w ]] || continue
        mkdir -p "$WH_OUT/mmcv/$(basename "$d")"
        copy_whole "$w" "$WH_OUT/mmcv/$(basename "$d")"
        found=$w
        log "prebuilt mmcv for torch ${tinfo%% *}: $w -> mmcv/$(basename "$d")/"
      done
    done
    if [[ -z $found ]]; then  # else a wheel whose compiled ops load against that torch
      for d in $CACHE ${PIP_FIND_LINKS:-}; do
        case $d in *://*) continue ;; esac
        for w in "$(abspath "$d")"/mmcv-2.1.0-"$pytag"-*.whl; do
          if [[ -f $w ]] && "$WPY" "$PROBE" ext-loads "$w" 2>/dev/null; then
            mkdir -p "$WH_OUT/mmcv/$base-cpu"
            copy_whole "$w" "$WH_OUT/mmcv/$base-cpu"
            found=$w
            log "prebuilt mmcv for torch ${tinfo%% *}: $w -> mmcv/$base-cpu/"
            break 2
          fi
        done
      done
    fi
    [[ -n $found ]] \
      || log "no prebuilt mmcv wheel fits torch ${tinfo%% *} ($base): the target builds it from the sdist"
  else
    log "$WPY has no torch: the target builds mmcv from the sdist"
  fi
  log "wheelhouse $WH_OUT: $(find "$WH_OUT" -type f | wc -l) files, $(du -sh "$WH_OUT" | cut -f1)"
  exit 0
fi

# ------------------------------------------------------------ environment
pip_flags=()
if [[ -n $WHEELHOUSE ]]; then
  [[ -d $WHEELHOUSE ]] || die "WHEELHOUSE=$WHEELHOUSE is not a folder"
  # no package index at all, and no other wheel folder
  export PIP_NO_INDEX=1 PIP_FIND_LINKS=$WHEELHOUSE
  pip_flags=(--no-index --find-links "$WHEELHOUSE")
fi

# the stamp of a complete environment: the setup's inputs and, with
# TORCH=keep, the kept packages of the interpreter $1
stamp_of() {
  local parts
  parts=$(cat "$ROOT"/requirements/*.txt "$ROOT/setup.cfg" "$ROOT/tools/build_mmcv.sh" \
    "$PROBE" "${BASH_SOURCE[0]}")
  if ((KEEP)) && [[ -x $1 ]]; then
    parts+="keep MMCV_CUDA=$MMCV_CUDA $("$1" "$PROBE" protected 2>/dev/null || true)"
  fi
  printf '%s' "$parts" | sha256sum | cut -c1-16
}
want=$(stamp_of "$VENV/bin/python")
if [[ -f $STAMP && $(cat "$STAMP") == "$want" ]] && "$VENV/bin/python" -c "$IMPORT_CHECK" 2>/dev/null; then
  log "environment $VENV is complete"
  exit 0
fi

if [[ ! -x $VENV/bin/python ]]; then
  if ((KEEP)); then
    BPY=$(resolve_py "$PY")
    tinfo=$(torch_of "$BPY") || no_torch "$BPY"
    log "creating virtualenv $VENV with $("$BPY" --version 2>&1) that sees $BPY's packages (torch ${tinfo%% *})"
    "$BPY" -m venv --system-site-packages "$VENV"
    if [[ $(torch_of "$VENV/bin/python" || true) != "$tinfo" ]]; then
      # $BPY lives in a venv (or its packages are elsewhere): --system-site-packages
      # gave the base interpreter's. Add $BPY's own site folders after the new venv's.
      site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
      "$BPY" "$PROBE" site-dirs | sed "s/.*/import site; site.addsitedir(r'&')/" \
        > "$site/_sgs_mm_base_site.pth"
      log "$BPY's site-packages added through $site/_sgs_mm_base_site.pth"
      [[ $(torch_of "$VENV/bin/python" || true) == "$tinfo" ]] \
        || die "the new venv $VENV does not see $BPY's torch ($tinfo)"
    fi
  else
    log "creating virtualenv $VENV with $($PY --version)"
    "$PY" -m venv "$VENV"
  fi
fi
VPY=$VENV/bin/python

if ((KEEP)); then
  tinfo=$(torch_of "$VPY") || no_torch "$VPY"
  "$VPY" -c 'import torchvision' 2>/dev/null || die \
    "TORCH=keep: $VPY has torch ${tinfo%% *} but no torchvision ('import torchvision' fails);
    install the torchvision release that matches this torch into it first"
  "$VPY" -m pip --version >/dev/null 2>&1 || die "$VPY has no pip (python -m ensurepip)"
  mapfile -t present < <("$VPY" "$PROBE" protected)
  log "TORCH=keep in $VENV: kept as they are: ${present[*]}"
  "$VPY" "$PROBE" fingerprint > "$TMP/before.txt"
  "$VPY" "$PROBE" constraints "$CONSTRAINTS" "$TMP/constraints.txt"
  CONSTRAINTS=$TMP/constraints.txt
fi

missing_from_wheelhouse() {
  # pip names the requirement it found no file for ("No matching distribution",
  # or, under a constraint, "Cannot install X because"): say which files the
  # wheelhouse lacks
  local out=$1 req name files
  [[ -n $WHEELHOUSE ]] || return 0
  grep -oE 'No matching distribution found for [^ ]+|satisfies the requirement [^ ]+|Cannot install [^ ]+ because' "$out" \
    | sed -E 's/^(No matching distribution found for|satisfies the requirement|Cannot install) //; s/ because$//' \
    | sort -u | while read -r req; do
      name=$(printf '%s' "$req" | sed -E 's/[<>=!~;[ ].*//' | tr 'A-Z_.' 'a-z--')
      files=$(cd "$WHEELHOUSE" && ls 2>/dev/null | tr 'A-Z_.' 'a-z--' | grep -E "^${name}-[0-9]" || true)
      if [[ -z $files ]]; then
        log "ERROR: the wheelhouse $WHEELHOUSE has no file for $req (collect it again with make wheelhouse, or add that file)" >&2
      else
        log "ERROR: the wheelhouse $WHEELHOUSE has $name, but no file of it fits $req and this Python/constraints" >&2
      fi
    done
}
pipi() {
  local out=$TMP/pip.out status=0
  "$VPY" -m pip install --disable-pip-version-check "${pip_flags[@]}" -c "$CONSTRAINTS" "$@" 2>&1 \
    | tee "$out" || status=$?
  if ((status)); then missing_from_wheelhouse "$out"; return "$status"; fi
}

if ((KEEP)); then
  "$VPY" "$PROBE" keep-reqs "$TMP/reqs.txt" "$ROOT"/requirements/{runtime,tests,keep_torch}.txt
  log "installing the OpenMMLab stack's dependencies and build tools"
  pipi -r "$TMP/reqs.txt"
  # mmengine requires opencv-python, which must not join an opencv-python-headless
  pipi --no-deps mmengine
else
  log "installing torch, torchvision, build tools and mmcv's own dependencies"
  pipi torch torchvision setuptools numpy wheel ninja mmengine opencv-python addict packaging pyyaml yapf
fi
# xtcocotools (mmpose): its setup.py imports numpy without declaring it, and
# its PyPI wheels are built for numpy 1.x ("numpy.dtype size changed") and
# exist for some Pythons only: built against the numpy present where needed.
np_major=$("$VPY" "$PROBE" numpy-major || true)
if ((${np_major:-0} >= 2)); then
  if ! "$VPY" -c 'import xtcocotools._mask' 2>/dev/null; then
    log "numpy 2: building xtcocotools from its sdist against the numpy present"
    # --no-deps: --force-reinstall would reinstall numpy too
    pipi --no-deps --no-build-isolation --no-binary=xtcocotools --no-cache-dir --force-reinstall \
      xtcocotools
  fi
  pipi --no-build-isolation xtcocotools  # its dependencies, where missing
else
  pipi --no-build-isolation xtcocotools
fi

# ------------------------------------------------------------ mmcv with ops
ops=cpu
if [[ $MMCV_CUDA == 1 ]]; then
  arch=${TORCH_CUDA_ARCH_LIST:-$("$VPY" "$PROBE" cuda-arch)} \
    || die "MMCV_CUDA=1: no GPU visible to $VPY; set TORCH_CUDA_ARCH_LIST (e.g. 9.0) to build for one"
  ops="cuda-sm${arch//[^0-9;]/}"
  ops=${ops//;/_}
fi
key=$("$VPY" "$PROBE" mmcv-key "$ops") && [[ -n $key ]] \
  || die "cannot read the torch / CUDA / Python versions of $VPY (the mmcv wheel cache key)"
KEYDIR=$CACHE/mmcv/$key
mmcv_fits() {
  "$VPY" -c 'import mmcv, mmcv.ops; assert mmcv.__version__ == "2.1.0"' || return 1
  if [[ $MMCV_CUDA == 1 ]]; then
    "$VPY" -c 'from mmcv.ops import get_compiling_cuda_version as v; assert v() != "not available", "CPU ops only"'
  fi
}
install_wheel() {
  "$VPY" -m pip install --disable-pip-version-check --no-index --no-deps --force-reinstall -q "$1" \
    && mmcv_fits
}
mkdir -p "$CACHE"
if ! mmcv_fits 2>/dev/null; then
  log "mmcv 2.1.0 with $ops ops for $key"
  done_mmcv=
  # 1. wheels stored under this key (built here for exactly this torch)
  for d in "$KEYDIR" ${WHEELHOUSE:+"$WHEELHOUSE/mmcv/$key"}; do
    for w in "$d"/mmcv-2.1.0-*.whl; do
      if [[ -f $w ]] && install_wheel "$w"; then done_mmcv=$w; break 2; fi
    done
  done
  # 2. other wheels (PIP_FIND_LINKS, the wheelhouse, the cache's top folder):
  #    only one whose compiled ops load against this torch
  if [[ -z $done_mmcv ]]; then
    links=("$CACHE")
    for d in ${PIP_FIND_LINKS:-}; do
      case $d in *://*) links+=("$d") ;; *) links+=("$(abspath "$d")") ;; esac
    done
    log "looking for a prebuilt mmcv 2.1.0 wheel in: ${links[*]}"
    for d in "${links[@]}"; do
      rm -rf "$TMP/dl" && mkdir -p "$TMP/dl"
      # this source only (PIP_FIND_LINKS and pip.conf would add theirs to --find-links)
      PIP_FIND_LINKS=$d "$VPY" -m pip download --disable-pip-version-check --no-index --no-deps \
        --only-binary=:all: --find-links "$d" -d "$TMP/dl" -q mmcv==2.1.0 >/dev/null 2>&1 || continue
      for w in "$TMP"/dl/mmcv-2.1.0-*.whl; do
        [[ -f $w ]] || continue
        if ! "$VPY" "$PROBE" ext-loads "$w"; then
          log "not used: $d/$(basename "$w") was built for another torch"
        elif install_wheel "$w"; then
          done_mmcv="$d/$(basename "$w")"; break 2
        fi
      done
    done
  fi
  if [[ -n $done_mmcv ]]; then
    log "mmcv 2.1.0 with ops installed from $done_mmcv"
  else
    "$VPY" -m pip uninstall -y mmcv >/dev/null 2>&1 || true
    log "no fitting mmcv wheel: building mmcv 2.1.0 with $ops ops from source."
    log "This takes 10-30 minutes on 2 cores; the wheel is cached in $KEYDIR."
    build=$TMP/build
    mkdir -p "$build"
    if [[ -n $WHEELHOUSE ]]; then
      [[ -f $WHEELHOUSE/$MMCV_SDIST ]] \
        || die "the wheelhouse $WHEELHOUSE has no file $MMCV_SDIST (and no mmcv wheel for $key)"
      cp "$WHEELHOUSE/$MMCV_SDIST" "$build/"
    else
      "$VPY" -m pip download --no-deps --no-binary=:all: -d "$build" mmcv==2.1.0
    fi
    MMCV_CUDA=$MMCV_CUDA TORCH_CUDA_ARCH_LIST=${arch:-${TORCH_CUDA_ARCH_LIST:-}} \
      bash "$ROOT/tools/build_mmcv.sh" "$VPY" "$build/$MMCV_SDIST" "$KEYDIR" "$BUILD_LOG" \
      || { log "mmcv build failed; the reason is in the lines above and in $BUILD_LOG"; exit 1; }
    "$VPY" -m pip install --no-index --no-deps --find-links "$KEYDIR" mmcv==2.1.0
    mmcv_fits || { log "built mmcv does not import mmcv.ops"; exit 1; }
  fi
else  # e.g. OpenMMLab's own wheel (mim install mmcv==2.1.0): never rebuilt or replaced
  log "mmcv 2.1.0 with compiled ops is present in $VENV: kept as it is"
fi

log "installing the pinned OpenMMLab stack"
if ((KEEP)); then
  : # installed above with its dependencies (mmengine --no-deps)
else
  pipi -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/tests.txt"
fi
# mmpose's chumpy does not build; openmim's opendatalab/openxlab downgrade
# setuptools and requests: both --no-deps, their real dependencies are in the
# requirement files above.
pipi --no-deps mmpose openmim
pipi --no-deps --no-build-isolation -e "$ROOT"

# the import check's only expected warning is setuptools' own pkg_resources notice (mim)
"$VPY" -W "ignore:pkg_resources is deprecated:UserWarning" -c "$IMPORT_CHECK"
if ((KEEP)); then
  # the packages present before (one absent then, e.g. opencv, may have been added)
  "$VPY" "$PROBE" fingerprint | grep -F -f <(cut -d' ' -f1 "$TMP/before.txt" | sed 's/$/ /') \
    > "$TMP/after.txt" || true
  if ! cmp -s "$TMP/before.txt" "$TMP/after.txt"; then
    log "ERROR: setup changed a package it must keep (torch, torchvision, numpy, opencv):" >&2
    diff "$TMP/before.txt" "$TMP/after.txt" >&2 || true
    exit 1
  fi
  log "kept unchanged: ${present[*]}"
  want=$(stamp_of "$VPY")  # with what is kept now (an absent opencv may have been added)
fi
echo "$want" > "$STAMP"
log "environment $VENV is complete"
