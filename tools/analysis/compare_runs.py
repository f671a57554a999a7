#!/usr/bin/env python
"""Training loss and validation metric of two runs on one figure, plus a final-metric table.

    python tools/analysis/compare_runs.py work_dirs/base work_dirs/sgs --labels baseline SGS
    python tools/analysis/compare_runs.py work_dirs/base work_dirs/sgs --metric mIoU --out cmp.png

Reads each work_dir's ``<timestamp>/vis_data/scalars.json`` (mmengine's
LocalVisBackend), merging the launches of a resumed run. The Markdown table is
printed and written next to the PNG (``.md``). Its ``iterations`` are those the
run made, from its last checkpoint (``<work_dir>/last_checkpoint``); without one,
the last logged step, marked ``(last logged)``.
"""
import argparse
import os.path as osp
import re
import sys

try:
    import sgs_mm  # noqa: F401
except ImportError:  # run from a checkout without ``pip install -e .``
    sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

from sgs_mm.analysis import (AnalysisInputError, final_summary, load_scalars,  # noqa: E402
                             pick_metric)
from sgs_mm.analysis.errors import run_cli  # noqa: E402
from sgs_mm.atomic_io import atomic_write_text  # noqa: E402
from sgs_mm.analysis.markdown import md_table  # noqa: E402
from sgs_mm.analysis.scalars import val_unit  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('run_a', metavar='RUN_A', help='work_dir (or scalars.json) of run A')
    p.add_argument('run_b', metavar='RUN_B', help='work_dir (or scalars.json) of run B')
    p.add_argument('--labels', nargs=2, metavar=('A', 'B'), help='names of the two runs')
    p.add_argument('--out', help='PNG to write (default: compare_<A>_vs_<B>.png here)')
    p.add_argument('--title', help='the figure\'s title, e.g. the model and task (default: '
                   '"A vs B" with the runs\' folder names)')
    p.add_argument('--metric', metavar='KEY',
                   help='validation key, e.g. accuracy/top1, mIoU, PCKh (default: the '
                        'first known headline metric both runs logged)')
    p.add_argument('--loss-key', default='loss', metavar='KEY',
                   help='training scalar to plot (default: loss)')
    return p.parse_args(argv)


def _fmt(v, digits=4):
    return 'n/a' if v is None else f'{v:.{digits}g}'


def markdown_table(labels, paths, summaries, metric, loss_key='loss', unit='step') -> str:
    m = metric or 'metric'
    rows = []
    for label, path, s in zip(labels, paths, summaries):
        best = ('n/a' if s['best_metric'] is None
                else f'{_fmt(s["best_metric"])} ({s["best_step"]})')
        iters = s.get('iterations', s['last_step'])
        iters = ('n/a' if iters is None else
                 str(iters) if s.get('iterations_exact', False) else f'{iters} (last logged)')
        rows.append([label, path, iters, _fmt(s['final_loss']), _fmt(s['final_metric']), best])
    lines = [md_table(['run', 'work_dir', 'iterations', f'final train {loss_key}', f'final {m}',
                       f'best {m} (at {unit})'], rows)]
    if metric and all(s['final_metric'] is not None for s in summaries):
        delta = summaries[1]['final_metric'] - summaries[0]['final_metric']
        lines.append('')
        lines.append(f'{labels[1]} - {labels[0]}: final {metric} {delta:+.4g}')
    return '\n'.join(lines) + '\n'


def _slug(text):
    return re.sub(r'[^A-Za-z0-9_.-]+', '_', text).strip('_') or 'run'


def _run_name(path: str) -> str:
    """A run's folder name (its work_dir, or the one holding its scalars)."""
    path = osp.abspath(path)
    if osp.isfile(path):  # .../<work_dir>/<timestamp>/vis_data/scalars.json
        parts = path.split(osp.sep)
        return parts[-4] if len(parts) >= 4 and parts[-2] == 'vis_data' else parts[-2]
    return osp.basename(path.rstrip(osp.sep))


def run(args) -> str:
    paths = [args.run_a, args.run_b]
    labels = args.labels or [osp.basename(osp.normpath(p)) for p in paths]
    if labels[0] == labels[1]:
        labels = [f'{labels[0]} (A)', f'{labels[1]} (B)']
    runs = [load_scalars(p) for p in paths]
    for path, r in zip(paths, runs):
        if not r.series(args.loss_key, 'train')[1]:
            keys = sorted({k for rec in r.train for k in rec})
            raise AnalysisInputError(f'{path}: no training {args.loss_key!r} scalar; training '
                                     f'keys: {", ".join(keys) or "none"}')
    metric = pick_metric(runs, args.metric)
    if metric is None:
        print('note: no validation records in either run; plotting the training loss only')

    from sgs_mm.analysis.plots import plot_runs
    out = args.out or f'compare_{_slug(labels[0])}_vs_{_slug(labels[1])}.png'
    title = args.title or (f'{labels[0]} vs {labels[1]} '
                           f'({_run_name(args.run_a)} vs {_run_name(args.run_b)})')
    plot_runs(runs, labels, metric, out, loss_key=args.loss_key, title=title)
    table = markdown_table(labels, paths, [final_summary(r, metric, args.loss_key) for r in runs],
                           metric, args.loss_key, val_unit(runs))
    md = osp.splitext(out)[0] + '.md'
    atomic_write_text(md, table)
    print(table, end='')
    print(f'wrote {out} and {md}')
    return out


def main(argv=None) -> int:
    return run_cli('compare_runs.py', run, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
