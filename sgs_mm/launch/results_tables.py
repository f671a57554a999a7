"""The pipeline's results as Markdown: a per-stage table, Baseline-vs-SGS
tables in the layout of the paper's Tables 7 and 8 (mean ± std over seeds
and paired differences where there are several) and, where a task has more
than two variants (the comparison specs' ACB / DBB arms), one row per variant
with its training time, as the paper's Table 2."""
import math
import os.path as osp
from typing import List, Optional

# (column, metric keys to try) per task
METRIC_COLUMNS = [
    ('top-1', ('accuracy/top1', 'top1', 'accuracy_top-1')),
    ('mIoU', ('mIoU', )),
    ('mAcc', ('mAcc', )),
    ('aAcc', ('aAcc', )),
    ('PCKh@0.5', ('PCK', 'PCKh')),  # joints weighted by count (MPII benchmark)
    # plain mean over the joints (the paper's eval_PCKh.py, Table 8); only
    # from sgs_mm's MpiiPCKhMeans metric
    ('PCKh@0.5 mean', ('PCKh_mean', )),
]
# marks a paired difference whose |mean| is not larger than its std
WITHIN_SPREAD = '~'

__all__ = ['METRIC_COLUMNS', 'WITHIN_SPREAD', 'markdown_tables', 'write_tables']


def _metric(metrics: dict, keys) -> Optional[float]:
    for k in keys:
        if k in (metrics or {}):
            return float(metrics[k])
    return None


def _fmt(v: Optional[float]) -> str:
    return '-' if v is None else f'{v:.1f}'


def _mean_std(values: List[float]):
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) \
        if n > 1 else None
    return mean, std


def _fmt_mean_std(values: List[float]) -> str:
    if not values:
        return '-'
    mean, std = _mean_std(values)
    return f'{mean:.1f}' if std is None else f'{mean:.1f} ± {std:.1f}'


def _fmt_diff(diffs: List[float]) -> str:
    """Paired difference: mean ± std over seeds, marked when not larger
    than its spread; one seed has no spread."""
    if not diffs:
        return '-'
    mean, std = _mean_std(diffs)
    if std is None:
        return f'{mean:+.1f}'
    mark = f' {WITHIN_SPREAD}' if abs(mean) <= std else ''
    return f'{mean:+.1f} ± {std:.1f}{mark}'


def _best_val_cell(r: dict) -> str:
    b = r.get('best_val')
    if not b:
        return '-'
    step = f' @{b["step"]}' if b.get('step') is not None else ''
    return f'{b["metric"]} {b["value"]:.1f}{step}'


def markdown_tables(results: dict, preamble: str = '') -> str:
    """The results as Markdown; ``preamble`` (Markdown) follows the title."""
    stages = results['stages']
    multi = any(r.get('seed') is not None for r in stages)
    seeds = sorted({r.get('seed') for r in stages},
                   key=lambda s: -1 if s is None else s)
    lines = [f'# Results: {results.get("title", "")}', '']
    if preamble:
        lines += [preamble.rstrip('\n'), '']
    lines += ['Every metric is of the **final checkpoint** of each stage '
             '(downstream stages start from the final ImageNet checkpoint). '
             '"best val during training" is the best in-training '
             'validation on the same split that is reported: a selected '
             'number, shown for reference only.', '',
             '## Stages', '',
             '| stage | ' + ('seed | ' if multi else '') +
             'task | device | init from | ' +
             ' | '.join(c for c, _ in METRIC_COLUMNS) +
             ' | best val during training (selected on the reported split)'
             ' | train (s) | test (s) |',
             '|' + '---|' * (7 + len(METRIC_COLUMNS) + int(multi))]
    for r in stages:
        vals = [_fmt(_metric(r['metrics'], keys)) for _, keys in
                METRIC_COLUMNS]
        lines.append(f'| {r["name"]} | ' +
                     (f'{r.get("seed")} | ' if multi else '') +
                     f'{r["task"]} | {r.get("device") or "-"} | '
                     f'{r.get("init_from") or "-"} | ' +
                     ' | '.join(vals) + f' | {_best_val_cell(r)}' +
                     f' | {r["train_seconds"]:.0f} | '
                     f'{r["test_seconds"]:.0f} |')
    keys = dict(METRIC_COLUMNS)
    # paper-style tables: rows = model, columns = variants (+ differences)
    for task, title, cols in (
            ('cls', 'Pretraining (top-1)', ('top-1', )),
            ('seg', 'Table 7 style: semantic segmentation '
             '(mIoU/mAcc/aAcc)', ('mIoU', 'mAcc', 'aAcc')),
            ('pose', 'Table 8 style: pose estimation (PCKh@0.5)',
             ('PCKh@0.5', 'PCKh@0.5 mean'))):
        rows = [r for r in stages if r['task'] == task and r.get('table')]
        if not rows:
            continue
        # columns after the first only where some stage has that metric
        cols = cols[:1] + tuple(c for c in cols[1:] if any(
            _metric(r['metrics'], keys[c]) is not None for r in rows))
        variants, models = [], []
        for r in rows:
            v, m = r['table'].get('variant', r['name']), r['table'].get(
                'model', r['name'])
            variants += [v] if v not in variants else []
            models += [m] if m not in models else []
        base = 'Baseline' if 'Baseline' in variants else None
        others = [v for v in variants if v != base] if base else []

        def cell(m, v):
            """{seed: [metric values]} of model m, variant v."""
            out = {}
            for r in rows:
                if r['table'].get('model', r['name']) == m and \
                        r['table'].get('variant', r['name']) == v:
                    out[r.get('seed')] = [
                        _metric(r['metrics'], keys[c]) for c in cols]
            return out

        n_seeds = len(seeds)
        sub = (f'final checkpoints, mean ± std over {n_seeds} seeds'
               if multi else 'final checkpoints, one run each')
        header = '| Model | ' + ' | '.join(
            f'{v} ({"/".join(cols)})' for v in variants)
        header += ''.join(f' | {v} − {base} (paired)' for v in others)
        lines += ['', f'## {title}', '', f'({sub})', '',
                  header + ' |',
                  '|---|' + '---|' * (len(variants) + len(others))]
        for m in models:
            cells = []
            per_variant = {v: cell(m, v) for v in variants}
            for v in variants:
                runs = per_variant[v]
                if not runs:
                    cells.append('-')
                    continue
                cells.append(' / '.join(
                    _fmt_mean_std([x[i] for x in runs.values()
                                   if x[i] is not None])
                    for i in range(len(cols))))
            for v in others:
                a, b = per_variant[v], per_variant[base]
                paired = [s for s in a if s in b]
                cells.append(' / '.join(
                    _fmt_diff([a[s][i] - b[s][i] for s in paired
                               if a[s][i] is not None
                               and b[s][i] is not None])
                    for i in range(len(cols))) if paired else '-')
            lines.append(f'| {m} | ' + ' | '.join(cells) + ' |')
        if others:
            lines += ['', ('Differences are paired by seed: mean ± std of '
                           f'(variant − {base}) over the seeds; '
                           f'"{WITHIN_SPREAD}" marks a difference whose '
                           'size is not larger than its std (not '
                           'distinguishable from seed noise).')
                      if multi else
                      ('One run per stage: the difference has no spread '
                       'estimate; run with --seeds N (N >= 2) for mean ± '
                       'std and paired differences.')]
    lines += _comparison_tables(stages, multi)
    return '\n'.join(lines) + '\n'


def _fmt_seconds(values: List[float]) -> str:
    mean = sum(values) / len(values)
    if mean < 120:
        return f'{mean:.0f} s'
    if mean < 7200:
        return f'{mean / 60:.1f} min'
    return f'{mean / 3600:.1f} h'


def _fmt_ratio(ratios: List[float]) -> str:
    if not ratios:
        return '-'
    mean, std = _mean_std(ratios)
    return f'{mean:.2f}x' if std is None else f'{mean:.2f}x ± {std:.2f}'


def _comparison_tables(stages: List[dict], multi: bool) -> List[str]:
    """Where a task has more than two variants (e.g. Baseline, SGS, ACB,
    DBB): one row per variant with the primary metric, its paired difference
    to Baseline and the training time (the paper's cost column, as measured
    in this run)."""
    keys = dict(METRIC_COLUMNS)
    lines = []
    for task, what, col in (('cls', 'pretraining', 'top-1'),
                            ('seg', 'semantic segmentation', 'mIoU'),
                            ('pose', 'pose estimation', 'PCKh@0.5')):
        rows = [r for r in stages if r['task'] == task and r.get('table')]
        variants, models = [], []
        for r in rows:
            v = r['table'].get('variant', r['name'])
            m = r['table'].get('model', r['name'])
            variants += [v] if v not in variants else []
            models += [m] if m not in models else []
        if len(variants) <= 2:
            continue
        base = 'Baseline' if 'Baseline' in variants else None
        lines += ['', f'## Comparison: {what} ({col}) and training time', '',
                  '(train time: the wall-clock time of the stage\'s '
                  'training in this run, on the device of the stage table; '
                  'comparable between stages that ran on the same devices '
                  'one at a time)', '',
                  f'| Model | Variant | {col} | − {base or "-"} (paired) | '
                  f'train time | train time / {base or "-"} (paired) |',
                  '|---|---|---|---|---|---|']
        for m in models:
            runs = {v: {r.get('seed'): r for r in rows
                        if r['table'].get('model', r['name']) == m
                        and r['table'].get('variant', r['name']) == v}
                    for v in variants}
            ref = runs.get(base, {})
            for v in variants:
                got = runs[v]
                if not got:
                    continue
                vals = {s: _metric(r['metrics'], keys[col])
                        for s, r in got.items()}
                diff, ratio = '-', '-'
                if base and v != base:
                    paired = [s for s in got if s in ref]
                    diff = _fmt_diff([vals[s] - _metric(
                        ref[s]['metrics'], keys[col]) for s in paired
                        if vals[s] is not None and _metric(
                            ref[s]['metrics'], keys[col]) is not None])
                    ratio = _fmt_ratio([
                        got[s]['train_seconds'] / ref[s]['train_seconds']
                        for s in paired if ref[s]['train_seconds']])
                lines.append(
                    f'| {m} | {v} | '
                    f'{_fmt_mean_std([x for x in vals.values() if x is not None])}'
                    f' | {diff} | '
                    f'{_fmt_seconds([r["train_seconds"] for r in got.values()])}'
                    f' | {ratio} |')
    return lines


def write_tables(results: dict, root: str, preamble: str = '') -> str:
    """Write ``results.json`` and ``results.md`` (atomically) into
    ``root``; return the Markdown."""
    from ..atomic_io import atomic_write_json, atomic_write_text
    atomic_write_json(osp.join(root, 'results.json'), results, indent=1)
    md = markdown_tables(results, preamble)
    atomic_write_text(osp.join(root, 'results.md'), md)
    return md
