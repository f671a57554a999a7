"""Setup keeps an mmcv 2.1.0 with compiled ops that is already installed.

A user on OpenMMLab's own stack installs mmcv 2.1.0 from OpenMMLab's wheels
(``mim install mmcv==2.1.0``; docs/install.md) and then runs ``make env
TORCH=keep``. Setup must keep that mmcv: no build, no reinstall. Here the
environment the suite runs in plays that user's environment (its mmcv came
from a wheel), with no wheel source setup could take another mmcv from.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, setup_env_vars


def _ext_files():
    import mmcv
    root = Path(mmcv.__file__).parent
    exts = sorted(root.glob('_ext*.so'))
    assert exts, f'{root} has no compiled ops'
    return {str(p): (p.stat().st_ino, p.stat().st_mtime_ns) for p in exts}


@pytest.mark.slow
def test_setup_keeps_an_installed_mmcv_with_ops(tmp_path):
    venv = Path(sys.prefix)
    stamp = venv / '.sgs_mm_env_stamp'
    saved = stamp.read_text() if stamp.is_file() else None
    before = _ext_files()
    build_log = tmp_path / 'mmcv-build.log'
    env = setup_env_vars(TORCH='keep', SGS_WHEEL_CACHE=str(tmp_path / 'empty-cache'),
                         SGS_MMCV_BUILD_LOG=str(build_log), PIP_NO_INDEX='1')
    try:
        if stamp.is_file():
            stamp.unlink()  # the whole setup runs, not just the stamp check
        proc = subprocess.run(['bash', str(REPO_ROOT / 'tools' / 'setup_env.sh'), str(venv)],
                              capture_output=True, text=True, timeout=900, env=env,
                              cwd=REPO_ROOT)
    finally:
        if saved is not None:
            stamp.write_text(saved)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert 'mmcv 2.1.0 with compiled ops is present' in out and 'kept as it is' in out, out
    assert 'building mmcv' not in out and 'installed from' not in out, out
    assert not build_log.exists()
    after = subprocess.run([sys.executable, '-c', 'import mmcv, mmcv.ops, pathlib; '
                            'print(*sorted(pathlib.Path(mmcv.__file__).parent.glob("_ext*.so")))'],
                           capture_output=True, text=True, env=dict(os.environ))
    assert after.returncode == 0, after.stderr
    assert _ext_files() == before  # the same files: not reinstalled
