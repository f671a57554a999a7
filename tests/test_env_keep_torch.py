"""`make env TORCH=keep` / `make wheelhouse` logic (tools/setup_env.sh,
tools/env_probe.py) on Python 3.10, 3.11 and 3.12 where this machine has them
(pyenv, or $SGS_TEST_PYTHONS: interpreters separated by spaces), plus the
running interpreter.

Installing real torch per Python would take minutes and gigabytes, so these
environments hold stand-in distributions (a dist-info folder and a package
with ``__version__``) that importlib.metadata and ``import`` see exactly as
they see real ones. What is checked: the error without torch, a new venv that
sees the torch of an interpreter that itself lives in a venv, the constraints
that keep present packages, the keep-mode requirement list, the fingerprint,
and a wheelhouse that lacks a file. The real install (torch 2.14.1 + numpy 2.3
venv, offline from a wheelhouse) is the done-when run of issue 14.
"""
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import setup_env_vars

REPO_ROOT = Path(__file__).resolve().parents[1]
SETUP_ENV = REPO_ROOT / 'tools' / 'setup_env.sh'
PROBE = REPO_ROOT / 'tools' / 'env_probe.py'


def _pythons():
    found = {}
    extra = os.environ.get('SGS_TEST_PYTHONS', '').split()
    pyenv = Path.home() / '.pyenv' / 'versions'
    candidates = extra + [str(p / 'bin' / 'python') for p in sorted(pyenv.glob('3.1[012].*'))]
    candidates.append(sys.executable)
    for exe in candidates:
        try:
            ver = subprocess.run([exe, '-c', 'import sys; print("%d.%d" % sys.version_info[:2])'],
                                 capture_output=True, text=True, timeout=60).stdout.strip()
        except OSError:
            continue
        if ver in ('3.10', '3.11', '3.12') and ver not in found:
            found[ver] = exe
    return [pytest.param(exe, id=f'py{ver}') for ver, exe in sorted(found.items())]


PYTHONS = _pythons()


def _env(**extra):
    return setup_env_vars(**{'PIP_CONFIG_FILE': '/dev/null',
                             'PIP_DISABLE_PIP_VERSION_CHECK': '1', **extra})


def _run(cmd, env, timeout=300, cwd=REPO_ROOT):
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)


def _site(venv):
    out = _run([venv / 'bin' / 'python', '-c',
                'import sysconfig; print(sysconfig.get_paths()["purelib"])'], _env())
    return Path(out.stdout.strip())


def add_dist(site, name, version, module=None):
    """A stand-in installed distribution: NAME-VERSION.dist-info (METADATA,
    RECORD) and, with ``module``, an importable package with __version__."""
    info = site / f'{name.replace("-", "_")}-{version}.dist-info'
    info.mkdir(parents=True, exist_ok=True)
    (info / 'METADATA').write_text(f'Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n')
    files = [f'{info.name}/METADATA', f'{info.name}/RECORD']
    if module:
        (site / module).mkdir(exist_ok=True)
        (site / module / '__init__.py').write_text(f'__version__ = {version!r}\n')
        files.append(f'{module}/__init__.py')
    (info / 'RECORD').write_text(''.join(f'{f},,\n' for f in files))
    (info / 'INSTALLER').write_text('pip\n')


def make_venv(python, path, pip=False):
    args = [python, '-m', 'venv', path] + ([] if pip else ['--without-pip'])
    res = _run(args, _env())
    assert res.returncode == 0, res.stdout
    return path


@pytest.mark.parametrize('python', PYTHONS)
def test_keep_without_torch_names_the_interpreter(python, tmp_path):
    """PYTHON without torch: a clear error naming it and TORCH=keep; nothing created."""
    base = make_venv(python, tmp_path / 'base')
    res = _run(['bash', SETUP_ENV, tmp_path / 'new'],
               _env(TORCH='keep', PYTHON=str(base / 'bin' / 'python')))
    assert res.returncode == 1, res.stdout
    assert f'TORCH=keep: {base}/bin/python (Python 3.' in res.stdout, res.stdout
    assert "has no torch ('import torch' fails)" in res.stdout
    assert 'make env TORCH=keep VENV=' in res.stdout
    assert not (tmp_path / 'new').exists()
    # an existing environment without torch: the same error, naming its python
    res = _run(['bash', SETUP_ENV, base], _env(TORCH='keep'))
    assert res.returncode == 1 and f'TORCH=keep: {base}/bin/python' in res.stdout, res.stdout


@pytest.mark.parametrize('python', PYTHONS)
def test_new_venv_sees_torch_of_an_interpreter_inside_a_venv(python, tmp_path):
    """PYTHON lives in a venv holding torch: --system-site-packages alone would
    show the base interpreter's packages, so setup adds that venv's
    site-packages through a .pth file, after the new venv's own."""
    base = make_venv(python, tmp_path / 'user venv')  # a space in the path, too
    add_dist(_site(base), 'torch', '9.9.9+fake', module='torch')
    new = tmp_path / 'new'
    res = _run(['bash', SETUP_ENV, new], _env(TORCH='keep', PYTHON=str(base / 'bin' / 'python')))
    # it stops at the missing torchvision, after creating the venv
    assert res.returncode == 1, res.stdout
    assert 'has torch 9.9.9+fake but no torchvision' in res.stdout, res.stdout
    assert f'creating virtualenv {new} ' in res.stdout
    pth = _site(new) / '_sgs_mm_base_site.pth'
    assert pth.is_file() and str(_site(base)) in pth.read_text(), res.stdout
    out = _run([new / 'bin' / 'python', '-c',
                'import sys, torch; print(torch.__version__); print(torch.__file__); '
                'print("\\n".join(sys.path))'], _env())
    lines = out.stdout.splitlines()
    assert lines[0] == '9.9.9+fake' and lines[1].startswith(str(_site(base))), out.stdout
    assert lines.index(str(_site(new))) < lines.index(str(_site(base)))


@pytest.mark.parametrize('python', PYTHONS)
def test_constraints_keep_what_is_present(python, tmp_path):
    venv = make_venv(python, tmp_path / 'v')
    site = _site(venv)
    for name, ver, mod in [('torch', '2.11.0+cu130', 'torch'), ('torchvision', '0.26.0', None),
                           ('numpy', '2.5.2', None), ('opencv-python-headless', '4.12.0.88', None),
                           ('setuptools', '84.0.0', None), ('pandas', '2.2.0', None)]:
        add_dist(site, name, ver, mod)
    vpy = venv / 'bin' / 'python'
    out = tmp_path / 'c.txt'
    assert _run([vpy, PROBE, 'constraints', REPO_ROOT / 'requirements' / 'constraints.txt', out],
                _env()).returncode == 0
    lines = [line.split('#')[0].strip() for line in out.read_text().splitlines()]
    for pin in ('torch==2.11.0+cu130', 'torchvision==0.26.0', 'numpy==2.5.2',
                'opencv-python-headless==4.12.0.88', 'setuptools<81', 'mmengine==0.10.7',
                'mmcv==2.1.0', 'xtcocotools==1.14.3'):
        assert pin in lines, (pin, lines)
    for gone in ('torch==2.14.1', 'numpy==1.26.4', 'setuptools==80.9.0', 'pandas==2.3.3'):
        assert gone not in lines, (gone, lines)
    # a full wheelhouse keeps the pins of present non-protected packages
    assert _run([vpy, PROBE, 'constraints', REPO_ROOT / 'requirements' / 'constraints.txt',
                 out, '--all-pins'], _env()).returncode == 0
    assert 'pandas==2.3.3' in out.read_text() and 'numpy==2.5.2' in out.read_text()

    reqs = tmp_path / 'r.txt'
    assert _run([vpy, PROBE, 'keep-reqs', reqs] + [
        REPO_ROOT / 'requirements' / f for f in ('runtime.txt', 'tests.txt', 'keep_torch.txt')],
        _env()).returncode == 0
    names = reqs.read_text().split()
    # mmengine --no-deps, no opencv-python beside the headless one; xtcocotools
    # is installed on its own (built against the numpy present where needed)
    assert 'mmengine' not in names and 'opencv-python' not in names
    assert 'xtcocotools' not in names
    assert {'mmsegmentation', 'mmdet', 'mmpretrain', 'cython', 'ninja', 'termcolor',
            'pytest'} <= set(names)
    res = _run([vpy, PROBE, 'numpy-major'], _env())
    assert res.stdout.strip() == '2'


def test_keep_reqs_without_numpy_and_opencv(tmp_path):
    venv = make_venv(sys.executable, tmp_path / 'v')
    add_dist(_site(venv), 'torch', '2.14.1', 'torch')
    reqs = tmp_path / 'r.txt'
    assert _run([venv / 'bin' / 'python', PROBE, 'keep-reqs', reqs,
                 REPO_ROOT / 'requirements' / 'runtime.txt'], _env()).returncode == 0
    names = reqs.read_text().split()
    assert {'opencv-python', 'numpy'} <= set(names)  # added where absent
    assert 'xtcocotools' not in names


def test_fingerprint_sees_a_reinstall(tmp_path):
    venv = make_venv(sys.executable, tmp_path / 'v')
    site = _site(venv)
    add_dist(site, 'numpy', '2.3.5', 'numpy')
    vpy = venv / 'bin' / 'python'
    first = _run([vpy, PROBE, 'fingerprint'], _env()).stdout
    assert first.startswith('numpy==2.3.5 ') and first == _run([vpy, PROBE, 'fingerprint'],
                                                                _env()).stdout
    init = site / 'numpy' / '__init__.py'
    os.utime(init, ns=(init.stat().st_atime_ns, init.stat().st_mtime_ns + 10**9))
    assert _run([vpy, PROBE, 'fingerprint'], _env()).stdout != first


@pytest.mark.slow
def test_wheelhouse_without_a_file_names_it(tmp_path):
    """WHEELHOUSE=DIR installs with no package index: what DIR lacks is named."""
    venv = make_venv(sys.executable, tmp_path / 'v', pip=True)
    site = _site(venv)
    add_dist(site, 'torch', '9.9.9', 'torch')
    add_dist(site, 'torchvision', '9.9.9', 'torchvision')
    wh = tmp_path / 'wh'
    wh.mkdir()
    res = _run(['bash', SETUP_ENV, venv], _env(TORCH='keep', WHEELHOUSE=str(wh)), timeout=600)
    assert res.returncode != 0, res.stdout
    assert re.search(rf'the wheelhouse {re.escape(str(wh))} has no file for \S+', res.stdout), \
        res.stdout[-3000:]
    assert 'kept as they are: torch==9.9.9 torchvision==9.9.9' in res.stdout


def test_makefile_passes_the_setup_variables():
    res = _run(['make', '-n', 'env', 'TORCH=keep', 'PYTHON=/x/python', 'WHEELHOUSE=/w',
                'MMCV_CUDA=1'], _env())
    assert res.returncode == 0, res.stdout
    assert ("TORCH='keep' PYTHON='/x/python' MMCV_CUDA='1' WHEELHOUSE='/w'" in res.stdout), \
        res.stdout
    res = _run(['make', '-n', 'wheelhouse', 'WHEELHOUSE=/w', 'LEAVE_OUT=present'], _env())
    assert "LEAVE_OUT='present' WHEELHOUSE= bash tools/setup_env.sh --wheelhouse '/w'" \
        in res.stdout, res.stdout
    res = _run(['make', 'wheelhouse'], _env())
    assert res.returncode != 0 and 'make wheelhouse WHEELHOUSE=DIR' in res.stdout
