"""G history: the hook's ``sgs_g_history.json`` or the G stored in a checkpoint."""
import json
import os.path as osp
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from .ckpt import checkpoint_step, last_checkpoint_of, load_checkpoint
from .errors import AnalysisInputError

HISTORY_FILE = 'sgs_g_history.json'
HISTORY_FORMAT = 'sgs_mm.g_history'
STATE_KEY = 'sgs'
EXPECTED = (f'a work_dir holding {HISTORY_FILE} (written by SpatialGradScalingHook), that '
            f'file itself, or a checkpoint (.pth) with an {STATE_KEY!r} entry (saved while '
            'SpatialGradScalingHook was on)')


@dataclass
class GRecord:
    """G of every layer at one refresh (or in one checkpoint)."""
    layers: 'OrderedDict[str, np.ndarray]'
    refresh: Optional[int] = None
    epoch: Optional[int] = None
    iter: Optional[int] = None
    note: str = ''

    @property
    def label(self) -> str:
        head = f'refresh {self.refresh}' if self.refresh is not None else 'G'
        where = ', '.join(f'{k} {v}' for k, v in (('epoch', self.epoch), ('iter', self.iter))
                          if v is not None)
        parts = [head] + ([where] if where else []) + ([self.note] if self.note else [])
        return '\n'.join(parts)


@dataclass
class GHistory:
    """The G records read from ``source``, oldest first."""
    source: str
    records: List[GRecord]
    method: Optional[str] = None
    k: Optional[float] = None
    mode: Optional[str] = None
    notes: List[str] = field(default_factory=list)

    @property
    def layer_names(self) -> List[str]:
        """Every layer seen in any record, in model order (first appearance)."""
        names: 'OrderedDict[str, None]' = OrderedDict()
        for r in self.records:
            names.update((n, None) for n in r.layers)
        return list(names)

    def describe(self) -> str:
        bits = [f'method={self.method}'] if self.method else []
        if self.k is not None:
            bits.append(f'k={self.k:g}')
        if self.mode:
            bits.append(f'mode={self.mode}')
        return ', '.join(bits)


def _matrix(value, where: str) -> np.ndarray:
    g = np.asarray(value.numpy() if hasattr(value, 'numpy') else value, dtype=np.float64)
    if g.ndim != 2 or g.size == 0:
        raise AnalysisInputError(f'{where}: expected a 2-D (kh, kw) G matrix, got shape '
                                 f'{g.shape}')
    return g


def read_history_file(path: str) -> GHistory:
    """Parse a ``sgs_g_history.json`` (format ``sgs_mm.g_history``, version 1)."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AnalysisInputError(f'{path}: cannot read as a G history JSON ({e}); expected '
                                 f'{EXPECTED}') from None
    if not isinstance(data, dict) or data.get('format') != HISTORY_FORMAT:
        raise AnalysisInputError(f'{path}: not a G history (no "format": "{HISTORY_FORMAT}"); '
                                 f'expected {EXPECTED}')
    if data.get('version', 1) != 1:
        raise AnalysisInputError(f'{path}: G history version {data.get("version")!r} is not '
                                 'supported (this tool reads version 1)')
    records = []
    for i, r in enumerate(data.get('records') or []):
        layers = OrderedDict((n, _matrix(g, f'{path}: record {i} layer {n!r}'))
                             for n, g in (r.get('layers') or {}).items())
        records.append(GRecord(layers, r.get('refresh'), r.get('epoch'), r.get('iter')))
    if not records:
        raise AnalysisInputError(f'{path}: the G history has no refresh recorded yet')
    return GHistory(path, records, data.get('method'), data.get('k'), data.get('mode'))


def history_from_checkpoint(ckpt: dict, source: str) -> GHistory:
    """A one-record history holding the G a checkpoint carries under ``'sgs'``."""
    state = ckpt.get(STATE_KEY)
    if not isinstance(state, dict) or not state.get('scales'):
        keys = ', '.join(repr(k) for k in ckpt) or 'none'
        raise AnalysisInputError(
            f'{source}: the checkpoint has no {STATE_KEY!r} entry with G (top-level keys: '
            f'{keys}); expected {EXPECTED}')
    layers = OrderedDict((n, _matrix(g, f'{source}: layer {n!r}'))
                         for n, g in state['scales'].items())
    step = checkpoint_step(ckpt)
    note = osp.basename(source)
    if state.get('last_refresh') is not None:
        note += f' (last refresh at {state["last_refresh"]})'
    elif not state.get('num_refreshes') and state.get('method') in ('nmi', 'autocorr'):
        note += ' (no refresh yet: G = 1)'
    record = GRecord(layers, state.get('num_refreshes'), step['epoch'], step['iter'], note)
    return GHistory(source, [record], state.get('method'))


def load_g_history(path: str, trusted: bool = False) -> GHistory:
    """G history from a work_dir, a history JSON or a checkpoint.

    A work_dir without ``sgs_g_history.json`` (``history_file=None``) falls
    back to the G of its ``last_checkpoint``.

    Raises:
        AnalysisInputError: ``path`` is none of those (the message says what
            was expected).
    """
    path = str(path)
    if osp.isdir(path):
        hist = osp.join(path, HISTORY_FILE)
        if osp.isfile(hist):
            return read_history_file(hist)
        last = last_checkpoint_of(path)
        if last is not None:
            ckpt = load_checkpoint(last, trusted)
            if isinstance(ckpt.get(STATE_KEY), dict):
                history = history_from_checkpoint(ckpt, last)
                history.notes.append(f'{path} has no {HISTORY_FILE}; showing the G of its '
                                     f'last checkpoint {last}')
                return history
        raise AnalysisInputError(f'{path}: directory without {HISTORY_FILE} (and no '
                                 f'last_checkpoint with G); expected {EXPECTED}')
    if not osp.exists(path):
        raise AnalysisInputError(f'{path}: no such file or directory; expected {EXPECTED}')
    if path.endswith('.json'):
        return read_history_file(path)
    return history_from_checkpoint(load_checkpoint(path, trusted), path)
