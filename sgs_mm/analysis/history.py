"""G history: written by the hook (:class:`GHistoryWriter`), read by the analysis tools.

File format (``sgs_g_history.jsonl``, format ``sgs_mm.g_history`` version 2):
JSON Lines, append-only. The first line is the header, every further line one
refresh::

    {"format": "sgs_mm.g_history", "version": 2, "method": "nmi", "k": 5.0,
     "mode": "grad", "unit": "epoch"}
    {"refresh": 1, "epoch": 1, "iter": 8, "layers": {"conv1": [[...], ...], ...}}

Appending a refresh writes one line (O(1), whatever the length of the run).
A line cut short by a crash is ignored when read. When a write fails (a full
disk, a network file system error) the writer cuts the file back to its last
complete line, appends a marker ``{"incomplete": "<reason>", "after_refresh": n}``
where it can, and writes nothing more: readers report the history as
incomplete (a note) and keep the records before it. Version 1
(``sgs_g_history.json``, one JSON object with a ``records`` list, rewritten at
every refresh by earlier versions of sgs_mm) is still read.
"""
import json
import os
import os.path as osp
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np

from ..atomic_io import atomic_open
from .ckpt import checkpoint_step, last_checkpoint_of, load_checkpoint
from .errors import AnalysisInputError

HISTORY_FILE = 'sgs_g_history.jsonl'
LEGACY_HISTORY_FILE = 'sgs_g_history.json'
HISTORY_FORMAT = 'sgs_mm.g_history'
HISTORY_VERSION = 2
INCOMPLETE_KEY = 'incomplete'
UNITS = ('epoch', 'iter')
STATE_KEY = 'sgs'
EXPECTED = (f'a work_dir holding {HISTORY_FILE} (written by SpatialGradScalingHook; '
            f'{LEGACY_HISTORY_FILE} from earlier versions), that file itself, or a checkpoint '
            f'(.pth) with an {STATE_KEY!r} entry (saved while SpatialGradScalingHook was on)')


@dataclass
class GRecord:
    """G of every layer at one refresh (or in one checkpoint).

    ``unit`` (``'epoch'``, ``'iter'`` or None when unknown) says which of
    ``epoch``/``iter`` the run's schedule counts in; the label shows that one.
    """
    layers: 'OrderedDict[str, np.ndarray]'
    refresh: Optional[int] = None
    epoch: Optional[int] = None
    iter: Optional[int] = None
    note: str = ''
    unit: Optional[str] = None

    @property
    def step(self) -> Optional[int]:
        """The position in the run's own unit (None when the unit is unknown)."""
        return {'epoch': self.epoch, 'iter': self.iter}.get(self.unit)

    @property
    def where(self) -> str:
        """``'epoch 3'`` / ``'iter 12'`` (both when the unit is unknown)."""
        if self.step is not None:
            return f'{self.unit} {self.step}'
        return ', '.join(f'{k} {v}' for k, v in (('epoch', self.epoch), ('iter', self.iter))
                         if v is not None)

    @property
    def label(self) -> str:
        head = f'refresh {self.refresh}' if self.refresh is not None else 'G'
        where = self.where
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
    unit: Optional[str] = None

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


def infer_unit(records: List[dict]) -> Optional[str]:
    """The schedule unit of a history without one in its header (version 1).

    An epoch-based run refreshes at epoch boundaries (epoch > 0 from the
    second refresh on); an iteration-based loop (``IterBasedTrainLoop``) never
    leaves epoch 0. None when the records cannot tell (a single refresh at
    epoch 0, iteration 0).
    """
    epochs = [r.get('epoch') for r in records if isinstance(r.get('epoch'), int)]
    iters = [r.get('iter') for r in records if isinstance(r.get('iter'), int)]
    if any(e > 0 for e in epochs):
        return 'epoch'
    if epochs and iters and any(i > 0 for i in iters):
        return 'iter'
    return None


def _unit_of(header: dict, records: List[dict]) -> Optional[str]:
    unit = header.get('unit')
    return unit if unit in UNITS else infer_unit(records)


# ------------------------------------------------------------------ raw files
def _parse_lines(path: str, text: str) -> Tuple[dict, List[dict], List[str]]:
    """Header, records and notes of a version-2 (JSON Lines) history."""
    lines = text.split('\n')
    header, records, notes, markers = None, [], [], []
    numbered = [(n, ln) for n, ln in enumerate(lines, 1) if ln.strip()]
    for pos, (n, line) in enumerate(numbered):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            if pos == len(numbered) - 1 and header is not None:  # torn by a crash
                notes.append(f'{path}:{n}: last line is incomplete (the run stopped while '
                             'writing it); ignored')
                break
            raise AnalysisInputError(f'{path}:{n}: not a JSON line ({e}); the G history is '
                                     'damaged') from None
        if header is None:
            header = obj
            continue
        if not isinstance(obj, dict):
            raise AnalysisInputError(f'{path}:{n}: expected a G record (a JSON object), got '
                                     f'{type(obj).__name__}')
        if INCOMPLETE_KEY in obj and 'layers' not in obj:
            notes.append(f'{path}:{n}: the G history is incomplete: writing stopped after '
                         f'refresh {obj.get("after_refresh")} ({obj[INCOMPLETE_KEY]}); later '
                         'refreshes are missing (their G is in the checkpoints)')
            markers.append(dict(obj, position=len(records)))
            continue
        records.append(obj)
    return header or {}, records, notes, markers


def read_history_raw(path: str) -> dict:
    """A G history file as one dict, whichever version it is.

    Returns:
        The header's keys (``format``, ``version``, ``method``, ``k``,
        ``mode``, ``unit`` ...) plus ``records`` (the refresh dicts as written),
        ``notes`` (what was skipped, e.g. a torn last line, or where writing
        stopped) and ``incomplete`` (the incomplete markers, each with the
        ``position`` in ``records`` it was written at).

    Raises:
        AnalysisInputError: the file cannot be read or is not a G history.
    """
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise AnalysisInputError(f'{path}: cannot read as a G history ({e}); expected '
                                 f'{EXPECTED}') from None
    first = text.split('\n', 1)[0]
    try:
        head = json.loads(first)
    except json.JSONDecodeError:
        head = None
    markers = []
    if isinstance(head, dict) and head.get('format') == HISTORY_FORMAT and 'records' in head:
        data, notes = head, []  # version 1: one JSON object (json.dump writes one line)
    elif isinstance(head, dict) and head.get('format') == HISTORY_FORMAT:
        header, records, notes, markers = _parse_lines(path, text)
        data = dict(header, records=records)
    else:
        try:  # version 1 pretty-printed, or not a history at all
            data, notes = json.loads(text), []
        except json.JSONDecodeError as e:
            raise AnalysisInputError(f'{path}: cannot read as a G history ({e}); expected '
                                     f'{EXPECTED}') from None
    if not isinstance(data, dict) or data.get('format') != HISTORY_FORMAT:
        raise AnalysisInputError(f'{path}: not a G history (no "format": "{HISTORY_FORMAT}"); '
                                 f'expected {EXPECTED}')
    if data.get('version', 1) not in (1, HISTORY_VERSION):
        raise AnalysisInputError(f'{path}: G history version {data.get("version")!r} is not '
                                 f'supported (this tool reads versions 1 and {HISTORY_VERSION})')
    data['records'] = [r for r in (data.get('records') or []) if isinstance(r, dict)]
    data['notes'] = notes
    data[INCOMPLETE_KEY] = markers
    return data


def find_history_file(work_dir: str) -> Optional[str]:
    """``<work_dir>/sgs_g_history.jsonl``, else the legacy ``sgs_g_history.json``, else None."""
    for name in (HISTORY_FILE, LEGACY_HISTORY_FILE):
        path = osp.join(work_dir, name)
        if osp.isfile(path):
            return path
    return None


def read_history_file(path: str) -> GHistory:
    """Parse a G history file (version 2 JSON Lines or version 1 JSON)."""
    data = read_history_raw(path)
    unit = _unit_of(data, data['records'])
    records = []
    for i, r in enumerate(data['records']):
        layers = OrderedDict((n, _matrix(g, f'{path}: record {i} layer {n!r}'))
                             for n, g in (r.get('layers') or {}).items())
        records.append(GRecord(layers, r.get('refresh'), r.get('epoch'), r.get('iter'),
                               unit=unit))
    if not records:
        raise AnalysisInputError(f'{path}: the G history has no refresh recorded yet')
    return GHistory(path, records, data.get('method'), data.get('k'), data.get('mode'),
                    notes=list(data['notes']), unit=unit)


# ---------------------------------------------------------------------- writer
def _jsonable(obj):
    if hasattr(obj, 'tolist'):  # tensors, arrays, numpy scalars
        return obj.tolist()
    raise TypeError(f'{type(obj).__name__} is not JSON serializable')


def _dump(obj) -> str:
    return json.dumps(obj, separators=(',', ':'), default=_jsonable)


class GHistoryWriter:
    """Append-only writer of a G history (JSON Lines, see the module docstring).

    Rank 0 of a run creates one, calls :meth:`start` once before training and
    :meth:`append` after every refresh::

        writer = GHistoryWriter(osp.join(work_dir, HISTORY_FILE),
                                dict(method='nmi', k=5.0, mode='grad', unit='epoch'))
        writer.start(resume_iter=runner.iter if resumed else None)
        writer.append(dict(refresh=1, epoch=1, iter=8, layers={'conv1': g.tolist()}))

    Args:
        path (str): the history file (``<work_dir>/sgs_g_history.jsonl``).
        header (dict): JSON-serializable run description, e.g.
            ``dict(method=..., k=..., mode=..., unit='epoch'|'iter')``;
            ``format`` and ``version`` are added.
    """

    def __init__(self, path: str, header: dict):
        self.path = str(path)
        self.header = dict(header, format=HISTORY_FORMAT, version=HISTORY_VERSION)
        self._dump_header = _dump(self.header)  # fails early if not serializable
        self.notes: List[str] = []
        self._started = False
        # why writing stopped (None while the history is complete)
        self.incomplete: Optional[str] = None

    def start(self, resume_iter: Optional[int] = None) -> None:
        """Begin writing.

        Fresh run (``resume_iter=None``): a new history at ``path`` (an
        existing file there is replaced, its header and records dropped).
        Resumed run: keep the existing records with ``iter < resume_iter``
        (the rest are dropped, once, here), write the current header; with no
        file at ``path`` (or one that is not a G history) start fresh. A
        resumed run whose work_dir still holds only the legacy
        ``sgs_g_history.json`` carries its records over into ``path``.
        """
        kept: List[dict] = []
        markers: List[dict] = []
        self.notes = []
        if resume_iter is not None:
            source = self.path if osp.isfile(self.path) else self._legacy_sibling()
            if source is not None:
                try:
                    data = read_history_raw(source)
                except AnalysisInputError as e:
                    self.notes.append(f'{e}; starting a new history')
                else:
                    self.notes.extend(data['notes'])
                    kept = [r for r in data['records']
                            if isinstance(r.get('iter'), int) and r['iter'] < resume_iter]
                    # a gap before the resume point stays marked
                    markers = [m for m in data[INCOMPLETE_KEY]
                               if not isinstance(m.get('at_iter'), int)
                               or m['at_iter'] < resume_iter]
        folder = osp.dirname(osp.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        with atomic_open(self.path, 'w') as f:  # never a half-written history at path
            f.write(self._dump_header + '\n')
            for i in range(len(kept) + 1):
                for m in markers:
                    if min(m.get('position', len(kept)), len(kept)) == i:
                        f.write(_dump({k: v for k, v in m.items() if k != 'position'}) + '\n')
                if i < len(kept):
                    f.write(_dump(kept[i]) + '\n')
        self._started = True

    def append(self, record: dict) -> bool:
        """Append one refresh: ``dict(refresh=int, epoch=int, iter=int, layers={name: G})``.

        One line, one ``write`` call, flushed on return: O(1) in the number of
        records already written. G may be nested lists, arrays or tensors.

        Returns:
            True when written. False when the write failed (``OSError``, e.g.
            a full disk): the file is cut back to its last complete line, an
            incomplete marker is appended where possible, :attr:`incomplete`
            says why, and later appends write nothing (also False). The
            history is a by-product; a caller goes on training.
        """
        if not self._started:
            raise RuntimeError('GHistoryWriter.append() before start(): call start() once '
                               'before training (start(None) for a fresh run)')
        if self.incomplete is not None:
            return False
        line = _dump(record) + '\n'
        try:
            size = os.path.getsize(self.path)
        except OSError:
            size = None
        try:
            with open(self.path, 'a', encoding='utf-8') as f:
                f.write(line)
                f.flush()
        except OSError as e:
            self.incomplete = f'{type(e).__name__}: {e}'
            self._mark_incomplete(size, record)
            return False
        return True

    def _mark_incomplete(self, size: Optional[int], record: dict) -> None:
        """Best effort: drop a partly written line, then append the marker
        (the refresh and iteration that could not be written)."""
        refresh = record.get('refresh')
        marker = _dump({INCOMPLETE_KEY: self.incomplete,
                        'after_refresh': refresh - 1 if isinstance(refresh, int) else None,
                        'at_iter': record.get('iter')}) + '\n'
        try:
            if size is not None:
                os.truncate(self.path, size)
            with open(self.path, 'a', encoding='utf-8') as f:
                f.write(marker)
        except OSError:
            try:
                if size is not None:
                    os.truncate(self.path, size)
            except OSError:
                pass

    def _legacy_sibling(self) -> Optional[str]:
        legacy = osp.join(osp.dirname(self.path), LEGACY_HISTORY_FILE)
        if osp.basename(self.path) != LEGACY_HISTORY_FILE and osp.isfile(legacy):
            return legacy
        return None


def checkpoint_unit(ckpt: dict) -> Optional[str]:
    """The unit a checkpoint's position is best given in.

    The SGS state's own ``unit`` (or ``by_epoch``) when it records one;
    otherwise from mmengine's ``meta``: an epoch-based run saves at epoch >= 1,
    an ``IterBasedTrainLoop`` stays at epoch 0.
    """
    state = ckpt.get(STATE_KEY) if isinstance(ckpt.get(STATE_KEY), dict) else {}
    if state.get('unit') in UNITS:
        return state['unit']
    if state.get('by_epoch') in (True, False):
        return 'epoch' if state['by_epoch'] else 'iter'
    step = checkpoint_step(ckpt)
    if isinstance(step['epoch'], int) and step['epoch'] > 0:
        return 'epoch'
    if isinstance(step['iter'], int) and step['iter'] > 0:
        return 'iter'
    return None


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
    unit = checkpoint_unit(ckpt)
    # where the checkpoint was saved: an epoch schedule on an iteration loop
    # (mmseg) saves at mmengine epoch 0, so its position is the iteration
    at_unit = 'iter' if (unit == 'epoch' and not step['epoch'] and step['iter']) else unit
    note = osp.basename(source)
    if state.get('last_refresh') is not None:
        at = f'{unit} {state["last_refresh"]}' if unit else state['last_refresh']
        note += f' (last refresh at {at})'
    elif not state.get('num_refreshes') and state.get('method') in ('nmi', 'autocorr'):
        note += ' (no refresh yet: G = 1)'
    record = GRecord(layers, state.get('num_refreshes'), step['epoch'], step['iter'], note,
                     unit=at_unit)
    return GHistory(source, [record], state.get('method'), state.get('k'), state.get('mode'),
                    unit=unit)


def load_g_history(path: str, trusted: bool = False) -> GHistory:
    """G history from a work_dir, a history file (``.jsonl``/``.json``) or a checkpoint.

    A work_dir without a history file (``history_file=None``) falls back to
    the G of its ``last_checkpoint``.

    Raises:
        AnalysisInputError: ``path`` is none of those (the message says what
            was expected).
    """
    path = str(path)
    if osp.isdir(path):
        hist = find_history_file(path)
        if hist is not None:
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
    if path.endswith(('.json', '.jsonl')):
        return read_history_file(path)
    return history_from_checkpoint(load_checkpoint(path, trusted), path)
