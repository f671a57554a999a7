#!/usr/bin/env bash
# The oldest supported stack for `make test-compat`, idempotently:
# a Python 3.10 venv (default .venv-compat) with requirements/compat.txt
# (torch 2.1.2, torchvision 0.16.2, numpy 1.26.4), then `TORCH=keep` setup
# (tools/setup_env.sh) for mmcv with ops and the OpenMMLab stack on top.
#
#   tools/setup_compat.sh [VENV_DIR]
#
#   COMPAT_PYTHON  the Python 3.10 interpreter (default: python3.10 on PATH,
#                  else pyenv's newest 3.10)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$(realpath -ms -- "${1:-$ROOT/.venv-compat}")
REQS=$ROOT/requirements/compat.txt
log() { printf '[setup_compat %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { log "ERROR: $*" >&2; exit 1; }

is_py310() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1; }
find_python() {
  if [[ -n ${COMPAT_PYTHON:-} ]]; then
    is_py310 "$COMPAT_PYTHON" || die "COMPAT_PYTHON=$COMPAT_PYTHON is not a working Python 3.10"
    echo "$COMPAT_PYTHON"
    return
  fi
  # python3.10 on PATH (a pyenv shim there may not run: each candidate is tried)
  local c root
  root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
  for c in $(command -v python3.10 2>/dev/null) \
           $(ls -d "$root"/versions/3.10.*/bin/python3.10 2>/dev/null | sort -rV); do
    is_py310 "$c" && { echo "$c"; return; }
  done
  die "no working Python 3.10 (python3.10 on PATH or pyenv's 3.10.x); set COMPAT_PYTHON=/path/to/python3.10"
}

# the pinned versions present: nothing to install (also offline)
pins_present() {
  "$VENV/bin/python" - "$REQS" <<'PY' 2>/dev/null
import sys
from importlib import metadata
for line in open(sys.argv[1]):
    line = line.split('#')[0].strip()
    if line:
        name, want = line.split('==')
        if metadata.version(name).split('+')[0] != want:
            sys.exit(1)
PY
}

if [[ ! -x $VENV/bin/python ]]; then
  PY=$(find_python)
  log "creating virtualenv $VENV with $("$PY" --version 2>&1)"
  "$PY" -m venv "$VENV"
fi
if ! pins_present; then
  log "installing $(grep -v '^#' "$REQS" | tr '\n' ' ')into $VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQS"
  pins_present || die "$VENV does not have the versions of $REQS after installing them"
fi
TORCH=keep PYTHON= bash "$ROOT/tools/setup_env.sh" "$VENV"
