"""Make mmengine checkpoints load on torch >= 2.6.

Since torch 2.6 ``torch.load`` defaults to ``weights_only=True``. mmengine 0.10.7
calls ``torch.load`` without ``weights_only`` and its checkpoints carry the
message hub (``HistoryBuffer`` objects holding numpy arrays and scalars), so
resuming fails with::

    Unsupported global: GLOBAL mmengine.logging.history_buffer.HistoryBuffer

The fix registers a small allow-list of the globals such checkpoints need with
``torch.serialization.add_safe_globals``. The weights-only unpickler stays on
for everything else (unlike ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``, which turns
the safety off for every load and is deliberately not used here).
"""
import builtins
from typing import List

import numpy as np
import torch

_APPLIED = False


def _numpy_core():
    """Return numpy's core package: ``np._core`` on numpy 2.x, ``np.core`` on 1.x."""
    core = getattr(np, '_core', None)
    if core is not None and hasattr(core, 'multiarray'):
        return core
    return np.core


def _numpy_dtype_classes() -> List[type]:
    """Return the concrete dtype classes (``numpy.dtypes.Float64DType`` ...).

    They exist from numpy 1.25 on; older numpy pickles dtypes as ``np.dtype``.
    """
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is None:
        return []
    return [
        obj for name in dir(dtypes)
        if isinstance(obj := getattr(dtypes, name), type)
        and issubclass(obj, np.dtype)
    ]


def safe_globals() -> list:
    """Return the allow-list of globals an mmengine checkpoint needs.

    Returns:
        list: ``HistoryBuffer``, numpy's ``multiarray.scalar`` and
        ``multiarray._reconstruct``, ``np.ndarray``, ``np.dtype``,
        ``builtins.getattr`` and numpy's dtype classes.
    """
    from mmengine.logging.history_buffer import HistoryBuffer
    core = _numpy_core()
    return [
        HistoryBuffer,
        core.multiarray.scalar,
        core.multiarray._reconstruct,
        np.ndarray,
        np.dtype,
        builtins.getattr,
    ] + _numpy_dtype_classes()


def apply_torch_load_fix() -> bool:
    """Allow-list the globals of mmengine checkpoints for weights-only loading.

    Idempotent: the globals are registered once per process. On torch without
    ``torch.serialization.add_safe_globals`` (< 2.4, where ``torch.load`` does
    not default to weights-only) it does nothing.

    Returns:
        bool: True if the allow-list is registered (now or before), False if this
        torch has no ``add_safe_globals``.
    """
    global _APPLIED
    if _APPLIED:
        return True
    add_safe_globals = getattr(torch.serialization, 'add_safe_globals', None)
    if add_safe_globals is None:
        return False
    add_safe_globals(safe_globals())
    _APPLIED = True
    return True
