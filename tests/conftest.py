"""Shared helpers for the test suite.

``shared_dir()`` is the workplace folder beside the repository (``../shared``),
overridable with the environment variable ``SGS_SHARED_DIR``; it holds the real
dataset-format fixtures (``fixtures/``) and, on developer machines, wheels.
"""
import importlib.util
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def load_script(relpath: str):
    """Import a repository script that is not a package module (e.g.
    ``tools/demo.py``) and return it as a module."""
    path = REPO_ROOT / relpath
    name = '_script_' + relpath.replace('/', '_').replace('.', '_')
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# variables that steer tools/setup_env.sh / tools/build_mmcv.sh: a test's own
# setup run must not take them from the caller (tools/gpu_check.sh exports
# WHEELHOUSE, a user's shell may have TORCH=keep or a VIRTUAL_ENV)
SETUP_STEERING_VARS = (
    'PIP_FIND_LINKS', 'VIRTUAL_ENV', 'PYTHONPATH', 'SGS_VENV', 'SGS_WHEEL_CACHE',
    'SGS_MMCV_BUILD_LOG', 'SGS_MMCV_CFLAGS', 'TORCH', 'WHEELHOUSE', 'PYTHON', 'MMCV_CUDA',
    'LEAVE_OUT')


def setup_env_vars(**extra) -> dict:
    """``os.environ`` without :data:`SETUP_STEERING_VARS`, updated by ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in SETUP_STEERING_VARS}
    env.update(extra)
    return env


def shared_dir() -> Path:
    """Return the shared folder: ``$SGS_SHARED_DIR`` or ``<repo>/../shared``."""
    env = os.environ.get('SGS_SHARED_DIR')
    return Path(env) if env else REPO_ROOT.parent / 'shared'


def fixtures_dir() -> Path:
    """Return ``<shared>/fixtures`` (it may not exist on a user's machine)."""
    return shared_dir() / 'fixtures'


@pytest.fixture
def shared_fixtures() -> Path:
    """The real dataset fixtures folder; skips the test where it is absent."""
    path = fixtures_dir()
    if not path.is_dir():
        pytest.skip(f'shared fixtures folder {path} does not exist '
                    '(set SGS_SHARED_DIR to the folder holding fixtures/)')
    return path
