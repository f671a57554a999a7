"""Make mmengine checkpoints load on torch >= 2.6, without opening ``torch.load`` to code.

Since torch 2.6 ``torch.load`` defaults to ``weights_only=True``. mmengine 0.10.7
calls ``torch.load`` without ``weights_only`` and its checkpoints carry the
message hub (``HistoryBuffer`` objects holding numpy arrays and scalars), so
resuming fails with::

    Unsupported global: GLOBAL mmengine.logging.history_buffer.HistoryBuffer

The fix registers a small allow-list of the globals such checkpoints need with
``torch.serialization.add_safe_globals``. The weights-only unpickler stays on
for everything else (unlike ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``, which turns
the safety off for every load and is deliberately not used here).

``builtins.getattr`` is *not* allow-listed: with it any checkpoint the process
loads could reach arbitrary attributes of allow-listed objects and turn
weights-only loading into code execution (pytorch/pytorch#189445). The only
``getattr`` in an mmengine checkpoint is ``getattr(HistoryBuffer, name)`` for
the statistics methods ``min``, ``max``, ``mean`` and ``current`` (pickled by
reference in ``HistoryBuffer._statistics_methods``), so the checkpoint's
``builtins.getattr`` is bound to :func:`restricted_getattr`, which returns exactly
those four functions and refuses everything else with
:class:`RestrictedGetattrError`. The functions it returns are plain data to the
unpickler (not allow-listed, so a checkpoint cannot call them).

The registration is process-wide (plain ``torch.load`` calls, e.g. in analysis
scripts, need it as much as mmengine's loader does); it is safe process-wide
because nothing it admits can run code.
"""
import builtins
import pickle
from typing import List

import numpy as np
import torch

from .versions import has_add_safe_globals, safe_globals_take_names

_APPLIED = False

#: The attributes of ``HistoryBuffer`` an mmengine checkpoint may ask for.
HISTORY_BUFFER_METHODS = frozenset({'min', 'max', 'mean', 'current'})
#: The global path the checkpoint's ``getattr`` is looked up under.
GETATTR_PATH = 'builtins.getattr'


class RestrictedGetattrError(pickle.UnpicklingError):
    """A checkpoint asked for an attribute :func:`restricted_getattr` does not allow.

    An ``UnpicklingError``, so ``torch.load`` reports it as a refused
    weights-only load (with its own explanation around this message).
    """


def restricted_getattr(obj, name, *default):
    """``getattr`` as weights-only loading may run it: ``HistoryBuffer``'s statistics only.

    Args:
        obj: must be ``mmengine.logging.HistoryBuffer`` itself.
        name: one of ``min``, ``max``, ``mean``, ``current``.

    Returns:
        The unbound function ``HistoryBuffer.<name>``.

    Raises:
        RestrictedGetattrError: for any other object or attribute, or a
            three-argument call (never in an mmengine checkpoint).
    """
    try:
        from mmengine.logging.history_buffer import HistoryBuffer
    except ImportError:  # the torch-only install: no message hub to read
        HistoryBuffer = None
    if (not default and HistoryBuffer is not None and obj is HistoryBuffer and type(name) is str
            and name in HISTORY_BUFFER_METHODS):
        return builtins.getattr(HistoryBuffer, name)
    try:
        what = f'getattr({_describe(obj)}, {name!r}{", <default>" if default else ""})'
    except Exception:  # a hostile __repr__ must not hide the refusal
        what = 'getattr(<object>, <name>)'
    raise RestrictedGetattrError(
        f'sgs_mm refused {what} while loading a checkpoint: weights-only loading allows '
        f'getattr only for HistoryBuffer.{{{", ".join(sorted(HISTORY_BUFFER_METHODS))}}} '
        '(mmengine message hub). This checkpoint is not a plain mmengine checkpoint; load it '
        'with weights_only=False only if you trust where it comes from.')


def _describe(obj) -> str:
    if isinstance(obj, type) or callable(obj) and hasattr(obj, '__qualname__'):
        return f'{getattr(obj, "__module__", "?")}.{obj.__qualname__}'
    return f'<{type(obj).__module__}.{type(obj).__qualname__} object>'


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
        ``multiarray._reconstruct``, ``np.ndarray``, ``np.dtype``, numpy's
        dtype classes and ``(restricted_getattr, 'builtins.getattr')`` (never
        the real ``getattr``).
    """
    core = _numpy_core()
    getattr_entry = [(restricted_getattr, GETATTR_PATH)] if safe_globals_take_names() else []
    try:
        from mmengine.logging.history_buffer import HistoryBuffer
        message_hub = [HistoryBuffer]
    except ImportError:  # the torch-only install (e.g. RNG states of a plain loop)
        message_hub = []
    return message_hub + [
        core.multiarray.scalar,
        core.multiarray._reconstruct,
        np.ndarray,
        np.dtype,
    ] + getattr_entry + _numpy_dtype_classes()


def unrestricted_getattr_entries() -> list:
    """The entries of torch's user allow-list that expose the real ``getattr``.

    Empty after :func:`apply_torch_load_fix` unless someone else registered
    ``builtins.getattr`` itself (which this module never does).
    """
    get = getattr(torch.serialization, 'get_safe_globals', None)
    if get is None:
        return []
    return [g for g in get()
            if g is builtins.getattr or (isinstance(g, tuple) and g[0] is builtins.getattr)]


def apply_torch_load_fix() -> bool:
    """Allow-list the globals of mmengine checkpoints for weights-only loading.

    Idempotent: the globals are registered once per process. On torch without
    ``torch.serialization.add_safe_globals`` (< 2.4, where ``torch.load`` does
    not default to weights-only) it does nothing: there
    :func:`sgs_mm.compat.versions.load_weights_only` enforces the same list.

    Returns:
        bool: True if the allow-list is registered (now or before), False if this
        torch has no ``add_safe_globals``.
    """
    global _APPLIED
    if _APPLIED:
        return True
    if not has_add_safe_globals():
        return False
    torch.serialization.add_safe_globals(safe_globals())
    _APPLIED = True
    return True
