"""Every branch on the torch version, in one place.

sgs_mm supports torch 2.1 to the newest (``setup.cfg``; both ends run in CI,
``make test`` and ``make test-compat``). What differs between them, and what
the rest of the package calls instead of asking torch itself:

- :data:`OUT_OF_MEMORY_ERRORS`: ``torch.OutOfMemoryError`` exists from torch
  2.5 on; before, only ``torch.cuda.OutOfMemoryError``.
- :func:`has_add_safe_globals` / :func:`safe_globals_take_names`: the
  weights-only unpickler's user allow-list (torch >= 2.4; named entries
  ``(callable, 'module.name')`` from 2.6). :func:`load_weights_only` gives the
  same restricted loading on every supported torch.
- :func:`grad_scaler`: ``torch.amp.GradScaler(device)`` from torch 2.3 on,
  ``torch.cuda.amp.GradScaler`` before (CUDA only there).
- :func:`cpu_capability`: the CPU kernels torch dispatches to (AVX2, AVX512,
  ...), which decide the last bits of CPU float results.
- :func:`is_compiling`: ``torch.compiler.is_compiling()`` (torch >= 2.3),
  False where torch has none.
- :func:`dtensor_type` / :func:`fsdp2_module_type`: where FSDP2's classes live
  (``torch.distributed.tensor`` / ``torch.distributed.fsdp`` from torch 2.5-2.6
  on, ``_tensor`` / ``_composable.fsdp`` before; None before torch 2.4).

numpy's removals (``np.in1d`` in 2.4) are in :mod:`sgs_mm.compat.numpy2`.
"""
import functools
import re
from typing import Tuple

import torch


def torch_version() -> Tuple[int, int]:
    """``(major, minor)`` of the torch in use (``2.1.2+cu121`` -> ``(2, 1)``)."""
    m = re.match(r'(\d+)\.(\d+)', torch.__version__)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _oom_types() -> tuple:
    types = []
    for owner in (torch, torch.cuda):
        t = getattr(owner, 'OutOfMemoryError', None)
        if isinstance(t, type) and t not in types:
            types.append(t)
    return tuple(types)


#: The exception classes torch raises for an allocation failure on a device:
#: ``(torch.OutOfMemoryError, )`` on torch >= 2.5 (where
#: ``torch.cuda.OutOfMemoryError`` is the same class), else
#: ``(torch.cuda.OutOfMemoryError, )``.
OUT_OF_MEMORY_ERRORS = _oom_types()
#: The class to raise for a device allocation failure (tests, fault injection).
OutOfMemoryError = OUT_OF_MEMORY_ERRORS[0]


def has_add_safe_globals() -> bool:
    """``torch.serialization.add_safe_globals`` exists (torch >= 2.4)."""
    return callable(getattr(torch.serialization, 'add_safe_globals', None))


def safe_globals_take_names() -> bool:
    """``add_safe_globals`` takes ``(callable, 'module.name')`` pairs (torch >= 2.6)."""
    return has_add_safe_globals() and torch_version() >= (2, 6)


def load_weights_only(f, map_location=None, **kwargs):
    """``torch.load`` restricted to tensors and sgs_mm's allow-list, on every torch.

    On torch >= 2.4 this is ``torch.load(..., weights_only=True)`` with the
    allow-list :func:`sgs_mm.compat.torch_load.apply_torch_load_fix`
    registered. Older torch's weights-only unpickler cannot build the objects
    of an mmengine checkpoint (its message hub), so there the same allow-list
    is enforced by :mod:`sgs_mm.compat.restricted_load`. Either way nothing
    outside the allow-list is unpickled: a crafted checkpoint raises
    ``pickle.UnpicklingError``.

    Args:
        f: a path or a file object, as for ``torch.load``.
        map_location: as for ``torch.load``.
        **kwargs: passed to ``torch.load`` (e.g. ``mmap=True``).
    """
    from .torch_load import apply_torch_load_fix
    if apply_torch_load_fix():
        return torch.load(f, map_location=map_location, weights_only=True, **kwargs)
    from .restricted_load import restricted_load
    return restricted_load(f, map_location=map_location, **kwargs)


def grad_scaler(device_type: str, **kwargs):
    """A loss scaler for fp16 autocast on ``device_type`` ('cuda', 'cpu', ...).

    Args:
        device_type (str): the device type the model runs on.
        **kwargs: passed to the GradScaler (``init_scale``, ``enabled``, ...).
    """
    amp = getattr(torch, 'amp', None)
    if amp is not None and hasattr(amp, 'GradScaler'):
        return amp.GradScaler(device_type, **kwargs)
    if device_type != 'cuda':
        raise RuntimeError(f'torch {torch.__version__} has a GradScaler for CUDA only '
                           f'(torch.cuda.amp.GradScaler), not for {device_type!r}')
    return torch.cuda.amp.GradScaler(**kwargs)


def cpu_capability() -> str:
    """The CPU kernels torch dispatches to here: 'AVX512', 'AVX2', 'DEFAULT', ...

    ``torch.backends.cpu.get_cpu_capability()`` where torch has it, else the
    ``CPU capability usage`` line of ``torch.__config__.show()``.
    """
    get = getattr(getattr(torch.backends, 'cpu', None), 'get_cpu_capability', None)
    if get is not None:
        return str(get())
    m = re.search(r'CPU capability usage:\s*(\S+)', torch.__config__.show())
    return m.group(1) if m else 'unknown'


def is_compiling() -> bool:
    """True while ``torch.compile`` traces (``torch.compiler.is_compiling``, torch >= 2.3)."""
    compiler = getattr(torch, 'compiler', None)
    check = getattr(compiler, 'is_compiling', None)
    return bool(check()) if callable(check) else False


def _first_class(places, name: str):
    for where in places:
        try:
            module = __import__(where, fromlist=[name])
        except ImportError:
            continue
        cls = getattr(module, name, None)
        if isinstance(cls, type):
            return cls
    return None


@functools.lru_cache(maxsize=None)
def dtensor_type():
    """``DTensor`` (the sharded tensor of FSDP2 parameters), or None."""
    return _first_class(('torch.distributed.tensor', 'torch.distributed._tensor'), 'DTensor')


@functools.lru_cache(maxsize=None)
def fsdp2_module_type():
    """``FSDPModule`` (what ``fully_shard`` turns a module into), or None."""
    return _first_class(('torch.distributed.fsdp', 'torch.distributed._composable.fsdp'),
                        'FSDPModule')
