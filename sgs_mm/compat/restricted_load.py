"""Weights-only loading with sgs_mm's allow-list on torch < 2.4.

torch 2.4 added ``torch.serialization.add_safe_globals``, through which
:mod:`sgs_mm.compat.torch_load` lets the weights-only unpickler read mmengine
checkpoints. Older torch (2.1-2.3) has no such list, and its weights-only
unpickler cannot build any object but tensors, parameters and dicts, so
``torch.load(..., weights_only=True)`` refuses every mmengine checkpoint
(``Unsupported class mmengine.logging.history_buffer.HistoryBuffer``).

:func:`restricted_load` gives the same restriction there: ``torch.load`` with a
pickle module whose ``Unpickler.find_class`` admits exactly torch's own
weights-only globals plus :func:`sgs_mm.compat.torch_load.safe_globals`
(``builtins.getattr`` bound to ``restricted_getattr``). An unpickler can only
call or build what ``find_class`` hands it, so a checkpoint that names any
other global (``os.system``, ``builtins.eval``, ...) is refused with
``pickle.UnpicklingError`` before anything runs.
"""
import _compat_pickle
import codecs
import pickle
import types
from typing import Dict

import torch


def _global_path(obj) -> str:
    return f'{obj.__module__}.{obj.__qualname__}'


def allowed_globals() -> Dict[str, object]:
    """``{'module.name': object}`` that a restricted load may find.

    torch's own weights-only globals (tensor and storage rebuilders, dtypes,
    ``OrderedDict``, ...), ``_codecs.encode`` (bytes under pickle protocol 2)
    and the entries of :func:`sgs_mm.compat.torch_load.safe_globals`.
    """
    from torch import _weights_only_unpickler
    from .torch_load import GETATTR_PATH, restricted_getattr, safe_globals
    allowed = dict(_weights_only_unpickler._get_allowed_globals())
    for entry in safe_globals():
        if isinstance(entry, tuple):
            obj, path = entry
        else:
            obj, path = entry, _global_path(entry)
        allowed[path] = obj
    allowed[GETATTR_PATH] = restricted_getattr
    # pickle protocol 2 (torch.save's) writes bytes, e.g. numpy array data, as
    # _codecs.encode(str, 'latin1'); newer torch admits it by default too
    allowed['_codecs.encode'] = codecs.encode
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that finds only :func:`allowed_globals`."""

    def find_class(self, module, name):
        # pickle protocol 2 (torch.save's) writes Python 2 names, e.g. __builtin__
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        path = f'{module}.{name}'
        allowed = _ALLOWED.get(path)
        if allowed is None:
            raise pickle.UnpicklingError(
                f'sgs_mm refused the global {path} while loading a checkpoint: weights-only '
                'loading admits tensors, numpy arrays and the mmengine message hub '
                '(sgs_mm.compat.torch_load.safe_globals). Load it with weights_only=False '
                'only if you trust where it comes from.')
        return allowed


_ALLOWED: Dict[str, object] = {}

def _load(file, **kwargs):
    return RestrictedUnpickler(file, **kwargs).load()


#: What ``torch.load(pickle_module=...)`` uses of the ``pickle`` module, restricted.
restricted_pickle = types.SimpleNamespace(
    __name__='sgs_mm.compat.restricted_load.restricted_pickle',
    Unpickler=RestrictedUnpickler, load=_load, UnpicklingError=pickle.UnpicklingError)


def restricted_load(f, map_location=None, **kwargs):
    """``torch.load`` that unpickles only :func:`allowed_globals`.

    Args:
        f: a path or file object.
        map_location: as for ``torch.load``.
        **kwargs: other ``torch.load`` arguments (``mmap``; not
            ``weights_only`` or ``pickle_module``).

    Raises:
        pickle.UnpicklingError: the file names a global outside the list.
    """
    if not _ALLOWED:
        _ALLOWED.update(allowed_globals())
    return torch.load(f, map_location=map_location, pickle_module=restricted_pickle,
                      weights_only=False, **kwargs)
