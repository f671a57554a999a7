"""Training / validation scalars of a work_dir (mmengine ``vis_data/scalars.json``)."""
import glob
import json
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from .errors import AnalysisInputError

SCALARS = 'scalars.json'
# keys that describe the step or timing, never a metric
NON_METRIC = {'step', 'epoch', 'iter', 'lr', 'time', 'data_time', 'memory', 'eta',
              'base_lr'}
# the headline metric, in order of preference, when ``--metric`` is not given
PREFERRED_METRICS = ('accuracy/top1', 'mIoU', 'PCKh', 'PCK', 'coco/AP', 'AP', 'mAP',
                     'accuracy', 'aAcc', 'mAcc')


@dataclass
class RunScalars:
    """The merged scalar records of one run."""
    source: str
    files: List[str]
    train: List[dict] = field(default_factory=list)
    val: List[dict] = field(default_factory=list)

    @property
    def by_epoch(self) -> bool:
        """Training records carry ``epoch`` (an epoch-based loop): val steps are epochs."""
        return bool(self.train) and 'epoch' in self.train[-1]

    def val_keys(self) -> List[str]:
        keys: Dict[str, None] = {}
        for r in self.val:
            keys.update((k, None) for k, v in r.items()
                        if k not in NON_METRIC and isinstance(v, (int, float)))
        return list(keys)

    def series(self, key: str, split: str = 'train'):
        """``(steps, values)`` of ``key`` in the train or val records."""
        recs = [r for r in getattr(self, split) if isinstance(r.get(key), (int, float))]
        return [r['step'] for r in recs], [float(r[key]) for r in recs]


def val_unit(runs: List[RunScalars]) -> str:
    """What the validation steps of ``runs`` count: ``'epoch'`` when every run is
    epoch-based, else ``'iteration'`` (the unit of the training steps too)."""
    return 'epoch' if all(r.by_epoch for r in runs if r.train) else 'iteration'


def scalar_files(path: str) -> List[str]:
    """The ``scalars.json`` files of a work_dir, oldest run first.

    ``path`` may be a work_dir (``<work_dir>/<timestamp>/vis_data/scalars.json``,
    one folder per launch: resumed runs add one), a timestamp folder, or a
    ``scalars.json`` itself.
    """
    path = str(path)
    if osp.isfile(path):
        return [path]
    if not osp.isdir(path):
        raise AnalysisInputError(f'{path}: no such work_dir; expected a work_dir holding '
                                 f'<timestamp>/vis_data/{SCALARS}')
    files = sorted(glob.glob(osp.join(path, '*', 'vis_data', SCALARS)))
    if not files and osp.isfile(osp.join(path, 'vis_data', SCALARS)):
        files = [osp.join(path, 'vis_data', SCALARS)]
    if not files:
        raise AnalysisInputError(f'{path}: no <timestamp>/vis_data/{SCALARS} found; expected '
                                 'the work_dir of an mmengine run (LocalVisBackend, the '
                                 'default visualizer)')
    return files


def _read_lines(path: str) -> List[dict]:
    records = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise AnalysisInputError(f'{path}:{n}: not a JSON line ({e})') from None
            if isinstance(rec, dict) and 'step' in rec:
                records.append(rec)
    return records


def is_train_record(rec: dict) -> bool:
    """mmengine's training records carry ``iter`` (and ``lr``); validation ones do not."""
    return 'iter' in rec or 'lr' in rec


def _merge(old: List[dict], new: List[dict]) -> List[dict]:
    """``new`` supersedes ``old`` from its first step on (a resumed launch re-logs)."""
    if not new:
        return old
    first = new[0]['step']
    return [r for r in old if r['step'] < first] + new


def load_scalars(path: str) -> RunScalars:
    """Train and val records of a run, merged over its launches (timestamps)."""
    files = scalar_files(path)
    run = RunScalars(str(path), files)
    for f in files:
        recs = _read_lines(f)
        run.train = _merge(run.train, [r for r in recs if is_train_record(r)])
        run.val = _merge(run.val, [r for r in recs if not is_train_record(r)])
    if not run.train and not run.val:
        raise AnalysisInputError(f'{path}: {", ".join(files)} hold no scalar records')
    return run


def pick_metric(runs: List[RunScalars], metric: Optional[str] = None) -> Optional[str]:
    """The validation metric to compare: ``metric`` (checked), else a known headline one.

    Returns:
        The key, or None when no run logged validation metrics.

    Raises:
        AnalysisInputError: ``metric`` is absent from a run that has
            validation records (the message lists what it has).
    """
    if metric is not None:
        for run in runs:
            if run.val and metric not in run.val_keys():
                raise AnalysisInputError(
                    f'{run.source}: validation metric {metric!r} not logged; available: '
                    f'{", ".join(run.val_keys()) or "none"}')
        if not any(run.val for run in runs):
            raise AnalysisInputError(
                f'validation metric {metric!r} requested but no run has validation records '
                f'({", ".join(r.source for r in runs)})')
        return metric
    common = None
    for run in runs:
        if run.val:
            keys = run.val_keys()
            common = keys if common is None else [k for k in common if k in keys]
    if not common:
        return None
    for k in PREFERRED_METRICS:
        if k in common:
            return k
    return common[0]


def work_dir_of(path: str) -> str:
    """The work_dir of a run given as a work_dir, a ``<timestamp>`` folder or a
    ``<timestamp>/vis_data/scalars.json``."""
    path = osp.abspath(str(path))
    if osp.isfile(path):  # <work_dir>/<timestamp>/vis_data/scalars.json
        folder = osp.dirname(path)
        return (osp.dirname(osp.dirname(folder)) if osp.basename(folder) == 'vis_data'
                else folder)
    if osp.isfile(osp.join(path, 'vis_data', SCALARS)):  # a timestamp folder
        return osp.dirname(path)
    return path


def iterations_run(run: RunScalars) -> Tuple[Optional[int], bool]:
    """How many training iterations the run made: ``(count, exact)``.

    The logger records every ``interval`` iterations, so the last logged step
    can fall short of the run (95 of 100). The run's last checkpoint (named in
    ``<work_dir>/last_checkpoint``; mmengine saves one when training ends)
    holds the iteration count in its ``meta``; it is used when it is not
    behind the logged steps. Otherwise ``exact`` is False: the count is the
    last logged step (the run may have made up to ``interval - 1`` more).
    """
    from .ckpt import checkpoint_meta, last_checkpoint_of
    logged = max((r['step'] for r in run.train), default=None)
    ckpt = last_checkpoint_of(work_dir_of(run.source))
    meta = checkpoint_meta(ckpt) if ckpt else None
    saved = meta.get('iter') if meta else None
    if isinstance(saved, int) and (logged is None or saved >= logged):
        return saved, True
    return logged, False


def final_summary(run: RunScalars, metric: Optional[str], loss_key: str = 'loss') -> dict:
    """Last training loss and the final / best validation metric of a run, and its
    training iterations (:func:`iterations_run`)."""
    iters, exact = iterations_run(run)
    out = dict(last_step=run.train[-1]['step'] if run.train else None,
               iterations=iters, iterations_exact=exact,
               final_loss=None, final_metric=None, best_metric=None, best_step=None)
    _, losses = run.series(loss_key, 'train')
    if losses:
        if run.by_epoch:  # mean over the last epoch's logged losses (less noisy)
            last_epoch = run.train[-1]['epoch']
            tail = [float(r[loss_key]) for r in run.train
                    if r.get('epoch') == last_epoch and isinstance(r.get(loss_key), (int, float))]
            out['final_loss'] = sum(tail) / len(tail)
        else:
            out['final_loss'] = losses[-1]
    if metric:
        steps, values = run.series(metric, 'val')
        if values:
            out['final_metric'] = values[-1]
            best = max(range(len(values)), key=values.__getitem__)
            out['best_metric'], out['best_step'] = values[best], steps[best]
    return out
