#!/usr/bin/env python
"""Average kernel magnitude matrix per conv layer, baseline vs SGS, with G (the paper's Fig. 6).

    python tools/analysis/kernel_magnitude.py work_dirs/sgs/epoch_100.pth
    python tools/analysis/kernel_magnitude.py work_dirs/base/epoch_100.pth \\
        work_dirs/sgs/epoch_100.pth --labels baseline SGS

For each chosen layer: mean |W| over the output and input channels at every
kernel position, normalized to mean 1 (Ding et al. 2019). A checkpoint saved
with SpatialGradScalingHook on also shows its G. Default layers: the first,
middle and last KxK conv (kernel > 1 on both sides).
"""
import argparse
import os.path as osp
import re
import sys

try:
    import sgs_mm  # noqa: F401
except ImportError:  # run from a checkout without ``pip install -e .``
    sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

from sgs_mm.analysis import (AnalysisInputError, centre_edge_corner, conv_weights,  # noqa: E402
                             first_middle_last, magnitudes, select_layers)
from sgs_mm.analysis.ckpt import load_checkpoint, state_dict_of  # noqa: E402
from sgs_mm.analysis.history import history_from_checkpoint  # noqa: E402
from sgs_mm.analysis.errors import run_cli  # noqa: E402
from sgs_mm.analysis.markdown import md_table  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('ckpts', nargs='+', metavar='CKPT', help='one or two checkpoints')
    p.add_argument('--labels', nargs='+', metavar='LABEL', help='a name per checkpoint')
    p.add_argument('--layers', nargs='+', metavar='GLOB',
                   help='layer name globs (default: first, middle and last KxK conv)')
    p.add_argument('--out', help='PNG to write (default: <first ckpt>_kernel_magnitude.png)')
    p.add_argument('--trust', action='store_true',
                   help='load checkpoints with the full unpickler (trusted files only)')
    args = p.parse_args(argv)
    if len(args.ckpts) > 2:
        p.error('give one or two checkpoints')
    if args.labels and len(args.labels) != len(args.ckpts):
        p.error(f'--labels needs one label per checkpoint ({len(args.ckpts)})')
    return args


def default_labels(paths):
    if len(paths) == 1:
        return [osp.basename(paths[0])]
    return [osp.join(osp.basename(osp.dirname(osp.abspath(p))), osp.basename(p)) for p in paths]


def g_column_title(history) -> str:
    """``G at iter 12`` / ``G at epoch 3`` (+ ``, no refresh yet``) for a checkpoint's G.

    A checkpoint of an epoch schedule on an iteration loop (mmseg) is placed by its
    iteration, with the schedule's epoch of the last refresh after it: ``G at iter 8,
    refreshed at epoch 2``. The run's label goes on the line above it, so the title does
    not repeat it.
    """
    record = history.records[0]
    where = record.where or osp.basename(history.source)
    title = f'G at {where}' if record.where else f'G ({where})'
    if record.note.endswith('(no refresh yet: G = 1)'):
        title += ', no refresh yet'
    elif history.unit and record.unit and history.unit != record.unit:
        refreshed = re.search(r'\(last refresh at (.+)\)$', record.note)
        if refreshed:
            title += f', refreshed at {refreshed.group(1)}'
    return title


def run(args) -> str:
    labels = args.labels or default_labels(args.ckpts)
    ckpts = [load_checkpoint(p, args.trust) for p in args.ckpts]
    weights = [conv_weights(state_dict_of(c)) for c in ckpts]
    for path, w in zip(args.ckpts, weights):
        if not w:
            raise AnalysisInputError(f'{path}: no KxK conv weight (a 4-D "<layer>.weight" '
                                     'with a kernel larger than 1x1) in its state_dict')
    names = [n for n in weights[0]
             if all(n in w and w[n].shape[-2:] == weights[0][n].shape[-2:] for w in weights)]
    if not names:
        raise AnalysisInputError(f'{" and ".join(args.ckpts)}: no KxK conv layer in common')
    what = 'KxK conv layers' + (' common to both checkpoints' if len(ckpts) > 1 else
                                f' of {args.ckpts[0]}')
    layers = (select_layers(names, args.layers, what=what) if args.layers
              else first_middle_last(names))

    columns = [(f'{label}\nmean |W| (normalized)', magnitudes(state_dict_of(c), layers))
               for label, c in zip(labels, ckpts)]
    for label, path, c in zip(labels, args.ckpts, ckpts):
        if isinstance(c.get('sgs'), dict):
            history = history_from_checkpoint(c, path)
            columns.append((f'{label}\n{g_column_title(history)}', history.records[0].layers))
    groups = [0] * len(ckpts) + [1] * (len(columns) - len(ckpts))

    from sgs_mm.analysis.plots import plot_matrix_columns
    out = args.out or osp.splitext(args.ckpts[0])[0] + '_kernel_magnitude.png'
    plot_matrix_columns(layers, columns, out, groups=groups,
                        cbar_label=['mean |W| (mean 1)', 'G (mean 1)'],
                        title='Average kernel magnitude matrix' +
                        (' vs G' if len(columns) > len(ckpts) else ''))
    rows = []
    for name in layers:
        for title, mats in columns:
            if name in mats:
                s = centre_edge_corner(mats[name])
                run_label, matrix = title.split('\n', 1)
                rows.append([name, run_label, matrix, f'{s["centre"]:.3f}', f'{s["edge"]:.3f}',
                             f'{s["corner"]:.3f}'])
    print(md_table(['layer', 'run', 'matrix', 'centre', 'edge', 'corner'], rows))
    print(f'wrote {out}')
    return out


def main(argv=None) -> int:
    return run_cli('kernel_magnitude.py', run, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
