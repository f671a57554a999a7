"""tools/setup_env.sh and tools/build_mmcv.sh: the mmcv source-build branch.

Fast tests run the scripts with a stand-in python (tests/scripts/
fake_setup_python.sh) or on a tiny deliberately broken C++ extension, and check
that a failing build shows the compiler's own error (the tail of the full log,
plus the log's path), not just "failed", and that relative paths work from any
working directory. The slow test runs the real setup exactly as a fresh clone
without any mmcv wheel gets it, into a throwaway venv, until the compiler runs
on mmcv's sources with -std=c++20, then stops it and deletes the venv.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from conftest import setup_env_vars

REPO_ROOT = Path(__file__).resolve().parents[1]
SETUP_ENV = REPO_ROOT / 'tools' / 'setup_env.sh'
BUILD_MMCV = REPO_ROOT / 'tools' / 'build_mmcv.sh'
FAKE_PY = REPO_ROOT / 'tests' / 'scripts' / 'fake_setup_python.sh'

FAKE_ERROR = 'fatal error: SGS_FAKE_MISSING_HEADER.h: No such file or directory'


def _run(cmd, cwd, env, timeout=120):
    return subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)


def test_fake_python_failure_shows_tail_of_log(tmp_path):
    """A relative python path, called from another folder, builds inside the
    extracted sdist (the original bug: .venv/bin/python vanished after cd)
    and a failure prints the last 40 log lines, the compiler error among them."""
    (tmp_path / 'rel' / 'bin').mkdir(parents=True)
    shutil.copy(FAKE_PY, tmp_path / 'rel' / 'bin' / 'python')
    work = tmp_path / 'cwd'
    (work / 'dl').mkdir(parents=True)
    calls = tmp_path / 'calls.txt'
    env = setup_env_vars(FAKE_PY_CALLS=str(calls), FAKE_PY_WHEEL_LINES='100')
    # the fake `pip download` writes an mmcv-2.1.0.tar.gz sdist
    _run(['../rel/bin/python', '-m', 'pip', 'download', '-d', 'dl', 'mmcv'],
         work, env).check_returncode()

    res = _run(['bash', str(BUILD_MMCV), '../rel/bin/python',
                'dl/mmcv-2.1.0.tar.gz', '../wheels', '../logs/build.log'],
               work, env)
    out = res.stdout
    assert res.returncode == 1, out
    log_file = tmp_path / 'logs' / 'build.log'
    assert re.search(r'first error lines of the build log.*\n    10[23]:.*' + FAKE_ERROR, out), out
    assert "error: command '/usr/bin/c++' failed with exit code 1" in out
    assert f'full build log: {log_file}' in out
    # the tail: the last 40 lines only; the log holds everything
    assert '    noise line 100' in out and 'noise line 40\n' not in out
    text = log_file.read_text()
    assert 'noise line 1\n' in text and FAKE_ERROR in text
    # the compile step is on the console as [n/N] file, patched to C++20
    assert re.search(r'^  \[1/77\] mmcv/ops/csrc/pytorch/nms\.cpp$', out, re.M), out
    assert '-std=c++20' in text
    # pip ran inside the extracted source, with the python made absolute
    wheel_call = [c for c in calls.read_text().splitlines() if ' wheel ' in c]
    assert len(wheel_call) == 1
    cwd, argv = wheel_call[0].split(' :: ')
    assert cwd.endswith('/mmcv-2.1.0')
    assert argv.startswith(f'{tmp_path}/rel/bin/python -m pip wheel')
    assert f'-w {tmp_path}/wheels' in argv


def test_build_heartbeat(tmp_path):
    """The heartbeat line comes on the console while pip runs."""
    src = tmp_path / 'src'
    src.mkdir()
    (src / 'setup.py').write_text('')
    slow_py = tmp_path / 'slow_python'
    slow_py.write_text('#!/bin/sh\nsleep 2.5\necho "ERROR: pip said no"\nexit 3\n')
    slow_py.chmod(0o755)
    res = _run(['bash', str(BUILD_MMCV), str(slow_py), str(src),
                str(tmp_path / 'w')],
               tmp_path, setup_env_vars(SGS_BUILD_HEARTBEAT_S='1'))
    assert res.returncode == 1, res.stdout
    assert re.search(r'mmcv build running, [12] s', res.stdout), res.stdout
    assert 'pip wheel exited with status 3' in res.stdout
    assert '    ERROR: pip said no' in res.stdout
    # default log: beside the wheel folder
    assert f'full build log: {tmp_path}/mmcv-build.log' in res.stdout


def test_real_compiler_error_reaches_console(tmp_path):
    """A deliberately broken C++ extension, built by the real pip and compiler
    of this environment: the console shows gcc's own error line."""
    src = tmp_path / 'broken'
    src.mkdir()
    (src / 'broken.cpp').write_text(
        '#include <Python.h>\n#error SGS_DELIBERATE_BREAK in broken.cpp\n')
    (src / 'setup.py').write_text(textwrap.dedent("""\
        from setuptools import Extension, setup
        setup(name='sgs_broken_ext', version='0.0.1',
              ext_modules=[Extension('sgs_broken_ext', ['broken.cpp'],
                                     extra_compile_args=['-std=c++17'])])
        """))
    res = _run(['bash', str(BUILD_MMCV), sys.executable, 'broken', 'wheels',
                'build.log'], tmp_path, setup_env_vars(), timeout=300)
    out = res.stdout
    assert res.returncode == 1, out
    # pip prints its setup.py shim after the compiler's error, so the error
    # is shown from the log's error lines, with its line number
    assert re.search(r'first error lines of the build log.*\n(    \d+:.*\n)*'
                     r'    \d+:\s+broken\.cpp:2:2: error: #error SGS_DELIBERATE_BREAK',
                     out), out
    assert 'ERROR: Failed to build one or more wheels' in out  # the tail
    assert f'full build log: {tmp_path}/build.log' in out
    text = (tmp_path / 'build.log').read_text()
    # the full pip output is in the log, with the C++20 patch applied
    assert 'Running setup.py bdist_wheel' in text or 'Building wheel' in text
    assert '-std=c++20' in text and '-std=c++17' not in text
    # Python's own flags (-O3) are kept, debug info is off
    compile_line = next(line for line in text.splitlines()
                        if 'broken.cpp' in line and ' -c ' in line)
    assert ' -O3 ' in compile_line and compile_line.split().index('-g0') > \
        compile_line.split().index('-g'), compile_line
    assert not list((tmp_path / 'wheels').glob('*.whl'))


def test_setup_env_relative_venv_from_another_folder(tmp_path):
    """`setup_env.sh REL_VENV` from a folder where REL_VENV is valid runs its
    whole build branch (fake python) with absolute paths and, on a failing
    build, prints pip's error and the log's path."""
    work = tmp_path / 'a' / 'b'
    work.mkdir(parents=True)
    calls = tmp_path / 'calls.txt'
    env = setup_env_vars(PYTHON=str(FAKE_PY), FAKE_PY_CALLS=str(calls),
                         SGS_WHEEL_CACHE='../wheels', SGS_MMCV_BUILD_LOG='../build.log',
                         PIP_FIND_LINKS='../links', TMPDIR=str(tmp_path))
    res = _run(['bash', str(SETUP_ENV), '../venv'], work, env)
    out = res.stdout
    assert res.returncode == 1, out
    venv = tmp_path / 'a' / 'venv'
    assert (venv / 'bin' / 'python').is_file()
    assert f'creating virtualenv {venv} ' in out
    assert FAKE_ERROR in out
    assert f'full build log: {tmp_path}/a/build.log' in out
    assert 'mmcv build failed; the reason is in the lines above' in out
    lines = calls.read_text().splitlines()
    wheel = [c for c in lines if ' -m pip wheel ' in c]
    assert len(wheel) == 1 and wheel[0].split(' :: ')[1].startswith(
        f'{venv}/bin/python -m pip wheel'), lines
    # each wheel source on its own (a wheel is used only if its ops load
    # against this torch), the cache first
    lookups = [c for c in lines if '--only-binary=:all:' in c]
    assert len(lookups) == 2, lookups
    assert f'--find-links {tmp_path}/a/wheels -d' in lookups[0]
    assert f'--find-links {tmp_path}/a/links -d' in lookups[1]
    # the build goes to the cache folder of this torch/CUDA/Python/ops key
    assert f'-w {tmp_path}/a/wheels/mmcv/torch0.0.0-cpu-cpfake-cpu' in wheel[0]
    # the sdist download folder is removed
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('tmp.')]


def test_makefile_passes_an_absolute_venv(tmp_path):
    res = _run(['make', '-n', 'env', 'VENV=some/rel/.venv'], REPO_ROOT, setup_env_vars())
    assert res.returncode == 0, res.stdout
    assert f"bash tools/setup_env.sh '{REPO_ROOT}/some/rel/.venv'" in res.stdout


# ------------------------------------------------------------------- slow
COMPILE_RE = re.compile(
    r'^.*\s-c\s+\S*/mmcv/ops/csrc/\S+\.cpp\b.*$', re.M)
SLOW_DEADLINE_S = 1500


def _session_pids(sid):
    """PIDs of the processes of session ``sid``. ninja puts each compiler in
    a process group of its own, but all stay in the setup's session."""
    pids = []
    for d in Path('/proc').iterdir():
        if d.name.isdigit():
            try:
                if os.getsid(int(d.name)) == sid:
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


def _kill_session(proc):
    """Stop everything the setup started: SIGTERM (ninja then stops its
    compilers), then SIGKILL for whatever is left, to each process group of
    the session (the setup's and the compilers')."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 30)):
        pgids = set()
        for pid in _session_pids(proc.pid) + [proc.pid]:
            try:
                pgids.add(os.getpgid(pid))
            except OSError:
                pass
        for pgid in pgids:
            try:
                os.killpg(pgid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            proc.poll()
            if proc.returncode is not None and not _session_pids(proc.pid):
                return
            time.sleep(0.5)


def _compiler_in_session(sid):
    """The command line of a process of session ``sid`` that compiles an
    mmcv .cpp with -std=c++20, else None."""
    for pid in _session_pids(sid):
        try:
            args = Path(f'/proc/{pid}/cmdline').read_bytes().split(b'\0')
        except OSError:
            continue
        line = ' '.join(a.decode(errors='replace') for a in args)
        if COMPILE_RE.search(line) and '-std=c++20' in line:
            return line
    return None


def _tail(path, n=40):
    try:
        return '\n'.join(Path(path).read_text(errors='replace').splitlines()[-n:])
    except OSError:
        return f'<no {path}>'


@pytest.mark.slow
@pytest.mark.timeout(SLOW_DEADLINE_S + 300)
def test_fresh_setup_builds_mmcv_with_cxx20():
    """`bash tools/setup_env.sh <relative venv>` from the repository root,
    into a new venv, with no mmcv wheel anywhere pip looks and an empty wheel
    cache: the real build branch starts compiling mmcv's C++ ops with
    -std=c++20 (the compile command of an mmcv .cpp, seen as a running
    compiler of the setup's session or in the build log). Then every process
    of the setup is killed and the venv (several GB) deleted."""
    root = Path(tempfile.mkdtemp(prefix='sgs_setup_build_'))
    proc = None
    try:
        wheels = root / 'wheels'
        wheels.mkdir()
        (root / 'tmp').mkdir()
        build_log = root / 'mmcv-build.log'
        console = root / 'console.txt'
        env = setup_env_vars(SGS_WHEEL_CACHE=str(wheels), SGS_MMCV_BUILD_LOG=str(build_log),
                             TMPDIR=str(root / 'tmp'), MAX_JOBS='1')
        # no mmcv wheel is reachable: not in pip's configured find-links
        # (this machine's pip.conf has one, holding only a torch wheel), not
        # in the (empty) cache
        probe = _run([sys.executable, '-m', 'pip', 'download', '--no-index',
                      '--no-deps', '--only-binary=:all:', '--find-links',
                      str(wheels), '-d', str(root / 'probe'), 'mmcv==2.1.0'],
                     REPO_ROOT, env)
        assert probe.returncode != 0, (
            'an mmcv wheel is reachable, the build branch would not run:\n'
            + probe.stdout)
        rel_venv = os.path.relpath(root / 'venv', REPO_ROOT)
        assert not os.path.isabs(rel_venv)
        with open(console, 'w') as out:
            proc = subprocess.Popen(['bash', 'tools/setup_env.sh', rel_venv],
                                    cwd=REPO_ROOT, env=env, stdout=out,
                                    stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        start = time.monotonic()
        found = None
        while time.monotonic() - start < SLOW_DEADLINE_S:
            # the compiler's own command line while it runs (ninja writes it
            # to the build log only when that compile has finished)
            found = _compiler_in_session(proc.pid)
            if found:
                source = 'running compiler'
                break
            if build_log.exists():
                found = next((line for line in COMPILE_RE.findall(
                    build_log.read_text(errors='replace'))
                    if '-std=c++20' in line), None)
                if found:
                    source = 'build log'
                    break
            if proc.poll() is not None:
                pytest.fail(f'setup_env.sh exited ({proc.returncode}) before '
                            f'compiling mmcv:\n{_tail(console)}\n--- build log:\n'
                            f'{_tail(build_log)}')
            time.sleep(2)
        assert found, (f'no C++20 compile of mmcv within {SLOW_DEADLINE_S} s:\n'
                       f'{_tail(console)}\n--- build log:\n{_tail(build_log)}')
        text = console.read_text()
        assert f'creating virtualenv {root}/venv ' in text, text
        assert 'no fitting mmcv wheel: building mmcv 2.1.0' in text, text
        assert f'full output in {build_log}' in text, text
        assert '-std=c++17' not in found
        # Python's optimisation flags are kept, its -g is overridden by -g0
        flags = found.split()
        assert '-O3' in flags and '-g0' in flags, found
        assert flags.index('-g0') > max(
            (i for i, f in enumerate(flags) if f == '-g'), default=-1), found
        print(f'C++20 compile of mmcv ({source}) after '
              f'{time.monotonic() - start:.0f} s: {found[:300]}')
    finally:
        if proc is not None:
            _kill_session(proc)
        for _ in range(3):
            shutil.rmtree(root, ignore_errors=True)
            if not root.exists():
                break
            time.sleep(5)
        assert not root.exists(), f'could not delete {root}'


def test_install_requires_torch_only():
    """Issue 9: `pip install sgs_mm` pulls torch and numpy only; mmengine and
    mmcv come with the `mm` extra, which seg/pose/cls include."""
    from setuptools.config.setupcfg import read_configuration
    opts = read_configuration(str(REPO_ROOT / 'setup.cfg'))['options']
    names = [re.split(r'[<>=!~ ;\[]', r, 1)[0] for r in opts['install_requires']]
    assert sorted(names) == ['numpy', 'torch']
    extras = opts['extras_require']
    for extra in ('mm', 'seg', 'pose', 'cls'):
        pulled = {re.split(r'[<>=!~ ;\[]', r, 1)[0] for r in extras[extra]}
        assert {'mmengine', 'mmcv'} <= pulled, (extra, pulled)


FAKE_WHEEL_PY = r'''#!/bin/bash
# `python -m pip wheel ... -w DIR`: writes a wheel into DIR (half of it and
# fails when FAKE_PARTIAL is set: a build killed while writing); else the real python
if [[ $1 == -m && $2 == pip && $3 == wheel ]]; then
  while [[ $# -gt 0 ]]; do [[ $1 == -w ]] && dir=$2; shift; done
  mkdir -p "$dir"
  whl=$dir/mmcv-2.1.0-cp3-none-any.whl
  "$REAL_PY" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1], "w").writestr("mmcv/_ext.so", "x" * 4096)' "$whl"
  if [[ -n ${FAKE_PARTIAL:-} ]]; then truncate -s 100 "$whl"; exit 1; fi
  echo "Created wheel for mmcv"
  exit 0
fi
exec "$REAL_PY" "$@"
'''


@pytest.mark.parametrize('partial', [False, True])
def test_the_wheel_cache_never_holds_a_partial_wheel(tmp_path, partial):
    """build_mmcv.sh has pip write into a staging folder and renames the
    checked wheel into the cache: a build that dies while writing leaves no
    wheel there (issue 23, item 1)."""
    src = tmp_path / 'src'
    src.mkdir()
    (src / 'setup.py').write_text('')
    fake = tmp_path / 'python'
    fake.write_text(FAKE_WHEEL_PY)
    fake.chmod(0o755)
    cache = tmp_path / 'cache'
    env = setup_env_vars(REAL_PY=sys.executable, **({'FAKE_PARTIAL': '1'} if partial else {}))
    res = _run(['bash', str(BUILD_MMCV), str(fake), str(src), str(cache)], tmp_path, env)
    if partial:
        assert res.returncode == 1 and 'pip wheel exited with status' in res.stdout, res.stdout
        assert sorted(p.name for p in cache.iterdir()) == []
    else:
        assert res.returncode == 0, res.stdout
        assert sorted(p.name for p in cache.iterdir()) == ['mmcv-2.1.0-cp3-none-any.whl']
        assert f'mmcv wheel written to {cache}/mmcv-2.1.0-cp3-none-any.whl' in res.stdout


def test_wheelhouse_copies_are_whole_or_absent(tmp_path):
    """setup_env.sh copies cached wheels into a wheelhouse under a temporary
    name and renames them: a copy that fails leaves nothing under the name."""
    func = re.search(r'^copy_whole\(\) \{.*?^\}', SETUP_ENV.read_text(), re.S | re.M).group(0)
    wheel = tmp_path / 'mmcv-2.1.0-cp311-cp311-linux_x86_64.whl'
    wheel.write_bytes(b'PK' + b'x' * 100000)
    out = tmp_path / 'house'
    out.mkdir()
    res = _run(['bash', '-c', f'{func}\ncopy_whole "$1" "$2"', 'x', str(wheel), str(out)],
               tmp_path, setup_env_vars())
    assert res.returncode == 0, res.stdout
    assert [p.name for p in out.iterdir()] == [wheel.name]
    assert (out / wheel.name).read_bytes() == wheel.read_bytes()
    broken = tmp_path / 'mmcv-2.1.0-broken.whl'
    broken.mkdir()  # cp fails on it (a folder, no -r)
    res = _run(['bash', '-c', f'{func}\ncopy_whole "$1" "$2"', 'x', str(broken), str(out)],
               tmp_path, setup_env_vars())
    assert res.returncode != 0
    assert [p.name for p in out.iterdir()] == [wheel.name]
