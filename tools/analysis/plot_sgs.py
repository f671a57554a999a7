#!/usr/bin/env python
"""G heatmaps of an SGS run: rows = conv layers, columns = refreshes (PAPER.md Fig. 4/5).

    python tools/analysis/plot_sgs.py work_dirs/run            # every refresh of the history
    python tools/analysis/plot_sgs.py work_dirs/run --paper    # first/middle/last conv, start/end
    python tools/analysis/plot_sgs.py work_dirs/run/epoch_100.pth --layers 'backbone.layer4.*'

WORK_DIR_OR_CKPT is a work_dir holding ``sgs_g_history.jsonl`` (the hook appends a
line at every refresh; ``sgs_g_history.json`` of earlier versions is read too), that
file, or a checkpoint saved with the hook on (its single current G). Columns are
labelled in the run's unit (``epoch N`` or ``iter N``). Writes a PNG (default:
``<work_dir>/sgs_g.png`` or ``<ckpt>_sgs_g.png``).
"""
import argparse
import os.path as osp
import sys

try:
    import sgs_mm  # noqa: F401
except ImportError:  # run from a checkout without ``pip install -e .``
    sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

from sgs_mm.analysis import (evenly_spaced, first_middle_last,  # noqa: E402
                             load_g_history, select_layers)
from sgs_mm.analysis.errors import run_cli  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('path', metavar='WORK_DIR_OR_CKPT')
    p.add_argument('--out', help='PNG to write')
    p.add_argument('--layers', nargs='+', metavar='GLOB',
                   help="layer name globs, e.g. 'backbone.layer1.*' (default: all)")
    p.add_argument('--max-layers', type=int, default=12, metavar='N',
                   help='at most N layers, evenly spaced, first and last kept (default 12; '
                        '0: no limit)')
    p.add_argument('--max-refreshes', type=int, default=8, metavar='N',
                   help='at most N refresh columns, evenly spaced, first and last kept '
                        '(default 8; 0: no limit)')
    p.add_argument('--paper', action='store_true',
                   help='first / middle / last layer at the first and last refresh, as the '
                        "paper's Fig. 4/5")
    p.add_argument('--trust', action='store_true',
                   help='load the checkpoint with the full unpickler (trusted files only)')
    return p.parse_args(argv)


def default_out(path: str, paper: bool) -> str:
    name = 'sgs_g_paper.png' if paper else 'sgs_g.png'
    if osp.isdir(path):
        return osp.join(path, name)
    return osp.splitext(path)[0] + '_' + name


def run(args) -> str:
    history = load_g_history(args.path, trusted=args.trust)
    for note in history.notes:
        print(f'note: {note}')
    recs = history.records
    if (len(recs) > 1 and all(r.unit == 'epoch' for r in recs)
            and len({r.epoch for r in recs}) < len(recs)
            and None not in {r.iter for r in recs}
            and len({r.iter for r in recs}) == len(recs)):
        # a history whose refreshes share one epoch number (an epoch schedule
        # on an iteration-based loop, written before the hook recorded the
        # schedule's own epoch): the iteration tells the refreshes apart
        for r in recs:
            r.unit = 'iter'
        print('note: the refreshes share one epoch number (an iteration-based loop): '
              'columns are labelled by iteration')
    layers = select_layers(history.layer_names, args.layers, what='layers with G in '
                           f'{history.source}')
    records = history.records
    n_layers, n_records = len(layers), len(records)
    if args.paper:
        layers = first_middle_last(layers)
        records = [records[0], records[-1]] if len(records) > 1 else records
        how = 'first, middle and last layer; first and last refresh'
    else:
        layers = evenly_spaced(layers, args.max_layers)
        records = evenly_spaced(records, args.max_refreshes)
        how = 'evenly spaced; --max-layers 0 --max-refreshes 0 show all'
    # the figure says what it leaves out, as the console does
    left_out = []
    if len(layers) < n_layers:
        left_out.append(f'{len(layers)} of {n_layers} layers')
    if len(records) < n_records:
        left_out.append(f'{len(records)} of {n_records} refreshes')
    note = f'showing {" and ".join(left_out)} ({how})' if left_out else ''
    if note:
        print(f'note: {note}')

    from sgs_mm.analysis.plots import plot_g_grid
    out = args.out or default_out(args.path, args.paper)
    plot_g_grid(history, layers, records, out, note=note)
    first, last = records[0], records[-1]
    print(f'{len(layers)} layer(s) x {len(records)} refresh(es) from {history.source}')
    for name in layers:
        a, b = first.layers.get(name), last.layers.get(name)
        cells = [f'{m[m.shape[0] // 2, m.shape[1] // 2]:.2f}' if m is not None else 'n/a'
                 for m in ((a,) if first is last else (a, b))]
        print(f'  {name}: centre G {" -> ".join(cells)}')
    print(f'wrote {out}')
    return out


def main(argv=None) -> int:
    return run_cli('plot_sgs.py', run, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
