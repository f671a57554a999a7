#!/usr/bin/env bash
# A stand-in for `python3` (and the venv's python) that lets tools/setup_env.sh
# run its whole mmcv-build branch in a second, with nothing installed
# (tests/test_setup_env.py). Every call is appended to $FAKE_PY_CALLS as
# "<cwd> :: <argv0> <args>". It
#   -m venv DIR        creates DIR/bin/python as a copy of itself
#   -m pip download    writes a tiny mmcv-2.1.0.tar.gz sdist into the -d folder
#   -m pip wheel       prints $FAKE_PY_WHEEL_LINES lines of noise, then a
#                      compiler-like error, and exits 1
#   -c CODE            exits 1 (nothing imports: no environment is complete)
#   .../env_probe.py mmcv-key OPS   prints a cache key (torch0.0.0-cpu-cpfake-OPS)
#   anything else      exits 0 (pip install, pip uninstall, --version)
echo "$PWD :: $0 $*" >> "${FAKE_PY_CALLS:-/dev/null}"
case "${1:-} ${2:-}" in
  *env_probe.py\ mmcv-key)
    echo "torch0.0.0-cpu-cpfake-${3:-cpu}"
    ;;
  "-m venv")
    mkdir -p "$3/bin"
    cp "$0" "$3/bin/python"
    chmod +x "$3/bin/python"
    ;;
  "-m pip")
    case "${3:-}" in
      download)
        shift 3
        dest=.
        while [[ $# -gt 0 ]]; do
          if [[ $1 == -d ]]; then dest=$2; shift; fi
          shift
        done
        tmp=$(mktemp -d)
        mkdir -p "$tmp/mmcv-2.1.0"
        printf "extra_compile_args = ['-std=c++17']\n" > "$tmp/mmcv-2.1.0/setup.py"
        tar czf "$dest/mmcv-2.1.0.tar.gz" -C "$tmp" mmcv-2.1.0
        rm -rf "$tmp"
        ;;
      wheel)
        for i in $(seq 1 "${FAKE_PY_WHEEL_LINES:-100}"); do echo "  noise line $i"; done
        echo "  [1/77] c++ -MMD -c $PWD/mmcv/ops/csrc/pytorch/nms.cpp -o nms.o -std=$(grep -o 'c++[0-9]*' setup.py)"
        echo "$PWD/mmcv/ops/csrc/pytorch/nms.cpp:1:10: fatal error: SGS_FAKE_MISSING_HEADER.h: No such file or directory" >&2
        echo "error: command '/usr/bin/c++' failed with exit code 1" >&2
        exit 1
        ;;
    esac
    ;;
  "-c "*)
    exit 1
    ;;
  "--version ")
    echo "Python 3.fake"
    ;;
esac
exit 0
