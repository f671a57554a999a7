"""Reading mmengine checkpoints for the analysis tools."""
import os.path as osp
import pickle
from typing import Dict, Optional

import torch

from ..compat.versions import load_weights_only
from .errors import AnalysisInputError


def load_checkpoint(path: str, trusted: bool = False) -> dict:
    """Load a checkpoint on the CPU.

    Weights-only by default, with the allow-list of the globals mmengine
    checkpoints need, on every supported torch
    (:func:`sgs_mm.compat.versions.load_weights_only`).
    ``trusted=True`` loads with the full unpickler, for checkpoints holding
    other objects (only for files you trust).

    Raises:
        AnalysisInputError: the file is missing or is not a torch checkpoint.
    """
    if not osp.isfile(path):
        raise AnalysisInputError(f'{path}: no such checkpoint file')
    try:
        ckpt = (torch.load(path, map_location='cpu', weights_only=False) if trusted
                else load_weights_only(path, map_location='cpu'))
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        hint = '' if trusted else (' (weights-only loading refused it; pass --trust to load '
                                   'it with the full unpickler if you trust the file)')
        raise AnalysisInputError(f'{path}: cannot load as a torch checkpoint{hint}: '
                                 f'{first}') from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise AnalysisInputError(f'{path}: not a torch checkpoint ({type(e).__name__}: '
                                 f'{str(e).strip().splitlines()[0] if str(e).strip() else ""})'
                                 ) from None
    if not isinstance(ckpt, dict):
        raise AnalysisInputError(f'{path}: expected a checkpoint dict, got a '
                                 f'{type(ckpt).__name__}')
    return ckpt


def state_dict_of(ckpt: dict) -> Dict[str, torch.Tensor]:
    """The model weights: ``ckpt['state_dict']`` (mmengine) or the dict itself."""
    sd = ckpt.get('state_dict', ckpt)
    return {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}


def checkpoint_step(ckpt: dict) -> Dict[str, Optional[int]]:
    """``{'epoch': .., 'iter': ..}`` from the mmengine ``meta`` (None where absent)."""
    meta = ckpt.get('meta') or {}
    return {'epoch': meta.get('epoch'), 'iter': meta.get('iter')}


def last_checkpoint_of(work_dir: str) -> Optional[str]:
    """The checkpoint named by ``<work_dir>/last_checkpoint``, if it exists."""
    marker = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(marker):
        return None
    with open(marker) as f:
        path = f.read().strip()
    if path and not osp.isabs(path):
        path = osp.join(work_dir, path)
    if path and not osp.isfile(path):  # a work_dir moved after training
        moved = osp.join(work_dir, osp.basename(path))
        path = moved if osp.isfile(moved) else path
    return path if path and osp.isfile(path) else None


def checkpoint_meta(path: str) -> Optional[dict]:
    """The mmengine ``meta`` of a checkpoint (``epoch``, ``iter``, ...), or None when the
    file cannot be read weights-only. Memory-mapped: the weights are not read."""
    for mmap in (True, False):  # mmap needs the zip format (torch >= 1.6 files)
        try:
            ckpt = load_weights_only(path, map_location='cpu', mmap=mmap)
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError):
            continue
        meta = ckpt.get('meta') if isinstance(ckpt, dict) else None
        return meta if isinstance(meta, dict) else None
    return None
