#!/usr/bin/env bash
# One prepared check of a GPU machine (torch + CUDA present, no internet needed):
#   1. install the stack on that torch, offline: TORCH=keep WHEELHOUSE=...
#      (tools/setup_env.sh; mmcv's CPU ops are built with MAX_JOBS=nproc when
#      the wheelhouse has no mmcv wheel for this torch);
#   2. the whole test suite, on CUDA where a GPU is visible (pytest-xdist -n
#      when installed);
#   3. the demo (tools/demo.py) on the GPU;
#   4. ONE summary file: versions, GPU, tests passed/skipped/failed, the demo's
#      results table, the time of each part.
#
#   tools/gpu_check.sh [--skip-suite] [--skip-demo] [--out FILE]
#
# Environment variables:
#   WHEELHOUSE    the wheelhouse (make wheelhouse); default ../wheelhouse or
#                 ./wheelhouse beside the project, else the package index is used
#   PYTHON        interpreter with torch + CUDA (default python3); VENV the
#                 environment to install into (default .venv-gpu, a new venv that
#                 sees PYTHON's packages; an existing venv/conda env with torch works)
#   MMCV_CUDA=1   build mmcv's CUDA kernels too (longer)
#   JOBS          pytest-xdist workers (default: nproc, at most 16)
#   SUITE_ARGS    pytest arguments (default: the whole suite)
#   BUDGET        seconds for the whole check (510): the suite gets what the
#                 install left minus DEMO_RESERVE (150 s), the demo the rest (at
#                 least 60 s each); a part cut short is reported as timed out.
#                 SUITE_TIMEOUT / DEMO_TIMEOUT cap them further.
#   DEMO_ARGS     extra arguments for tools/demo.py
# Exit status: 0 when every part that ran passed.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RUN_SUITE=1 RUN_DEMO=1
OUT=$ROOT/work_dirs/gpu_check/summary.md
while [[ $# -gt 0 ]]; do
  case $1 in
    --skip-suite) RUN_SUITE=0 ;;
    --skip-demo) RUN_DEMO=0 ;;
    --out) OUT=$(realpath -m "$2"); shift ;;
    -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
DIR=$(dirname "$OUT")
mkdir -p "$DIR"
NPROC=$(nproc)
JOBS=${JOBS:-$((NPROC < 16 ? NPROC : 16))}
export MAX_JOBS=${MAX_JOBS:-$NPROC}
VENV=$(realpath -m "${VENV:-$ROOT/.venv-gpu}")
if [[ -z ${WHEELHOUSE:-} ]]; then
  for d in "$ROOT/../wheelhouse" "$ROOT/wheelhouse"; do
    [[ -d $d ]] && WHEELHOUSE=$(realpath "$d") && break
  done
fi
VPY=$VENV/bin/python
DEMO_ROOT=$DIR/demo
BUDGET=${BUDGET:-510}
DEMO_RESERVE=${DEMO_RESERVE:-150}
log() { printf '[gpu_check %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

declare -A TIME STATUS
part() {  # part NAME TIMEOUT_S LOGFILE CMD...: runs CMD, records its time and status
  local name=$1 limit=$2 logf=$3 t0=$SECONDS rc
  shift 3
  log "$name: $* (log: $logf)"
  if [[ $limit -gt 0 ]]; then
    timeout --signal=TERM --kill-after=20 "$limit" "$@" > "$logf" 2>&1; rc=$?
  else
    "$@" > "$logf" 2>&1; rc=$?
  fi
  TIME[$name]=$((SECONDS - t0))
  case $rc in
    0) STATUS[$name]=ok ;;
    124 | 137) STATUS[$name]="timed out after ${limit} s" ;;
    *) STATUS[$name]="failed (exit $rc)" ;;
  esac
  log "$name: ${STATUS[$name]} in ${TIME[$name]} s"
  tail -n 3 "$logf" | sed 's/^/    /'
  return $rc
}

start=$SECONDS
overall=0
# 1. install
install_env=(TORCH=keep VENV="$VENV" PYTHON="${PYTHON:-python3}" MMCV_CUDA="${MMCV_CUDA:-0}")
[[ -n ${WHEELHOUSE:-} ]] && install_env+=(WHEELHOUSE="$WHEELHOUSE")
part install 0 "$DIR/install.log" env "${install_env[@]}" bash tools/setup_env.sh "$VENV" \
  || overall=1

# 2. the test suite
TESTS="not run"
if [[ ${STATUS[install]} == ok && $RUN_SUITE == 1 ]]; then
  xdist=()
  if "$VPY" -c 'import xdist' 2>/dev/null && ((JOBS > 1)); then xdist=(-n "$JOBS"); fi
  # the fresh-setup build test downloads torch: it needs a package index
  read -r -a suite_args <<< "${SUITE_ARGS:-}"
  left=$((BUDGET - (SECONDS - start) - DEMO_RESERVE * RUN_DEMO))
  limit=$((left > 60 ? left : 60))
  [[ -n ${SUITE_TIMEOUT:-} && $SUITE_TIMEOUT -lt $limit ]] && limit=$SUITE_TIMEOUT
  SUITE_CMD="pytest ${xdist[*]} ${suite_args[*]:-(whole suite)}, limit ${limit} s"
  part suite "$limit" "$DIR/pytest.log" env OMP_NUM_THREADS=1 \
    "$VPY" -m pytest -p no:cacheprovider -q "${xdist[@]}" --junitxml="$DIR/junit.xml" \
    --deselect tests/test_setup_env.py::test_fresh_setup_builds_mmcv_with_cxx20 \
    "${suite_args[@]}" || overall=1
  TESTS=$("$VPY" - "$DIR/junit.xml" <<'EOF'
import sys
import xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except (OSError, ET.ParseError) as exc:
    print(f'no result file ({exc.__class__.__name__})')
    sys.exit()
suites = [root] if root.tag == 'testsuite' else list(root.iter('testsuite'))
n = {k: sum(int(s.get(k, 0)) for s in suites) for k in ('tests', 'failures', 'errors', 'skipped')}
passed = n['tests'] - n['failures'] - n['errors'] - n['skipped']
print(f"{passed} passed, {n['skipped']} skipped, {n['failures']} failed, {n['errors']} errors "
      f"({n['tests']} collected)")
for case in root.iter('testcase'):
    if case.find('failure') is not None or case.find('error') is not None:
        print(f"  FAILED {case.get('classname')}::{case.get('name')}")
EOF
)
fi

# 3. the demo
if [[ ${STATUS[install]} == ok && $RUN_DEMO == 1 ]]; then
  read -r -a demo_args <<< "${DEMO_ARGS:-}"
  touch "$DIR/.demo_start"
  left=$((BUDGET - (SECONDS - start)))
  limit=$((left > 60 ? left : 60))
  [[ -n ${DEMO_TIMEOUT:-} && $DEMO_TIMEOUT -lt $limit ]] && limit=$DEMO_TIMEOUT
  # its own work and data roots, every stage rerun: never the results of an
  # earlier `make demo` in this checkout (other device, other environment)
  part demo "$limit" "$DIR/demo.log" "$VPY" tools/demo.py --force \
    --work-root "$DEMO_ROOT" --data-root "$DIR/demo_data" "${demo_args[@]}" || overall=1
fi

# 4. the summary
vpy=$VPY
[[ -x $vpy ]] || vpy=$(command -v "${PYTHON:-python3}")
versions=$("$vpy" - <<'EOF' 2>&1
import platform, subprocess, sys
from importlib import metadata
def ver(mod):
    try:
        m = __import__(mod)
    except Exception as exc:  # noqa: BLE001
        return f'not importable ({exc.__class__.__name__})'
    try:  # xtcocotools has no __version__: its distribution's version
        return getattr(m, '__version__', None) or metadata.version(mod)
    except metadata.PackageNotFoundError:
        return '?'
print(f'- Python {platform.python_version()} ({sys.executable})')
try:
    import torch
except ImportError as exc:
    print(f'- torch: not importable ({exc})')
    sys.exit()
print(f'- torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN '
      f'{torch.backends.cudnn.version() if torch.cuda.is_available() else "-"}')
if torch.cuda.is_available():
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        print(f'- GPU {i}: {p.name}, {p.total_memory / 2**30:.0f} GiB, '
              f'compute capability {p.major}.{p.minor}')
else:
    print('- no GPU visible to torch: the CUDA tests skip and the demo runs on the CPU')
for mod in ('torchvision', 'numpy', 'cv2', 'mmengine', 'mmcv', 'mmseg', 'mmpose', 'mmpretrain',
            'mmdet', 'xtcocotools', 'sgs_mm'):
    print(f'- {mod} {ver(mod)}')
try:
    from mmcv.ops import get_compiling_cuda_version
    print(f'- mmcv ops compiled with CUDA: {get_compiling_cuda_version()}')
except Exception as exc:  # noqa: BLE001
    print(f'- mmcv ops: {exc}')
try:
    out = subprocess.run(['nvidia-smi', '--query-gpu=driver_version', '--format=csv,noheader'],
                         capture_output=True, text=True, timeout=30).stdout.split()
    print(f'- NVIDIA driver {out[0]}' if out else '- nvidia-smi: no output')
except (OSError, subprocess.SubprocessError):
    print('- nvidia-smi: not found')
EOF
)
{
  echo "# sgs_mm GPU check, $(date -u '+%Y-%m-%d %H:%M UTC') on $(hostname), $NPROC cores"
  echo
  echo "## Versions"
  echo "$versions"
  echo "- wheelhouse: ${WHEELHOUSE:-none (package index)}; environment: $VENV; MMCV_CUDA=${MMCV_CUDA:-0}"
  echo
  echo "## Parts"
  echo "| part | status | time (s) |"
  echo "|---|---|---|"
  for p in install suite demo; do
    if [[ -n ${STATUS[$p]:-} ]]; then echo "| $p | ${STATUS[$p]} | ${TIME[$p]} |"
    else echo "| $p | skipped | - |"; fi
  done
  echo "| total | | $((SECONDS - start)) |"
  echo
  if [[ ${STATUS[install]} != ok ]]; then
    echo "## Install failed: the end of install.log"
    echo '```'
    tail -n 15 "$DIR/install.log"
    echo '```'
    echo
  fi
  echo "## Tests"
  [[ -n ${SUITE_CMD:-} ]] && echo "$SUITE_CMD:"
  echo "$TESTS"
  echo
  echo "## Demo results"
  if [[ -n ${STATUS[demo]:-} && $DEMO_ROOT/results.md -nt $DIR/.demo_start ]]; then
    cat "$DEMO_ROOT/results.md"
  else
    echo "not run, or no new $DEMO_ROOT/results.md (see demo.log)"
  fi
  echo
  echo "Logs beside this file: install.log, pytest.log, junit.xml, demo.log."
} > "$OUT"
log "summary: $OUT"
cat "$OUT"
exit $overall
