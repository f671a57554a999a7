"""Run a spec of train stages (pretrain -> {pspnet, simplebaseline}, each
with and without SGS), pass each stage's final checkpoint to the stages that
initialise from it, skip finished stages, and write the results tables.

A spec is an mmengine config file (``.py``/``.json``/``.yaml``)::

    work_root = 'work_dirs/pipeline_r18'
    stages = [
        dict(name='pretrain_r18', config='configs/pretrain/...py',
             table=dict(model='ResNet-18', variant='Baseline')),
        dict(name='pspnet_r18', config='configs/pspnet/...py',
             init_from='pretrain_r18',          # stage whose checkpoint ...
             init_ckpt='last',                  # 'last' (default) | 'best'
             init_key='model.backbone.init_cfg.checkpoint',  # ... goes here
             cfg_options=dict(), nproc=None,
             table=dict(model='PSPNet-18', variant='Baseline')),
    ]

Evaluation protocol. Each stage trains with ``tools/train.py`` (a
subprocess; ``torchrun`` for ``--launcher pytorch``, ``srun`` for
``--launcher slurm``), then ``tools/test.py`` evaluates its **final**
checkpoint, as SemSeg and Pytorch-Pose-HG-3D report, and downstream stages
start from the final checkpoint of the stage they initialise from. The best
validation score seen during training (when the config validates during
training) is kept only as a labelled extra column: it is selected on the
split that is reported. ``seeds=N`` runs every stage with
``randomness.seed`` = 0..N-1 (each seed its own chain, in
``<work_root>/seed<k>/``); the tables then show mean ± std over the seeds and
the SGS - baseline difference paired by seed.

State lives in ``<work_root>/[seed<k>/]<stage>/``: ``train_done.json`` after
training, ``stage_result.json`` after testing. A rerun skips stages with
``stage_result.json``, resumes training from the latest checkpoint where
training was interrupted, and only re-tests where only testing is missing
(or where an older result was not of the final checkpoint).
"""
import glob
import json
import math
import os
import os.path as osp
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# (column, metric keys to try) per task
METRIC_COLUMNS = [
    ('top-1', ('accuracy/top1', 'top1', 'accuracy_top-1')),
    ('mIoU', ('mIoU', )),
    ('mAcc', ('mAcc', )),
    ('aAcc', ('aAcc', )),
    ('PCKh@0.5', ('PCK', 'PCKh')),
]
# the metric whose best in-training validation is reported (labelled)
PRIMARY_METRICS = ('accuracy/top1', 'mIoU', 'PCK')
TASK_OF_SCOPE = {'mmpretrain': 'cls', 'mmseg': 'seg', 'mmpose': 'pose'}
# marks a paired difference whose |mean| is not larger than its std
WITHIN_SPREAD = '~'
# stage results written by this protocol (older ones are re-tested)
PROTOCOL = 'final-checkpoint'

__all__ = ['load_spec', 'run_pipeline', 'write_tables', 'stage_commands',
           'markdown_tables', 'best_validation', 'seed_work_root']


def load_spec(path: str) -> dict:
    from mmengine.config import Config
    cfg = Config.fromfile(path)
    spec = dict(
        work_root=cfg.get('work_root', 'work_dirs/pipeline'),
        stages=[dict(s) for s in cfg.stages],
        title=cfg.get('title', osp.splitext(osp.basename(path))[0]))
    names = [s['name'] for s in spec['stages']]
    if len(set(names)) != len(names):
        raise ValueError(f'duplicate stage names in {path}: {names}')
    for s in spec['stages']:
        if s.get('init_from') and s['init_from'] not in names:
            raise ValueError(f'stage {s["name"]}: init_from '
                             f'{s["init_from"]!r} is not a stage')
        if s.get('init_from') and names.index(s['init_from']) > names.index(
                s['name']):
            raise ValueError(f'stage {s["name"]} comes before the stage '
                             f'{s["init_from"]} it initialises from')
        if s.get('init_ckpt', 'last') not in ('last', 'best'):
            raise ValueError(f'stage {s["name"]}: init_ckpt must be "last" '
                             f'or "best", got {s["init_ckpt"]!r}')
    return spec


def seed_work_root(root: str, seed: Optional[int]) -> str:
    """Where one seed's chain lives: ``root`` itself for a single run
    (``seed=None``), ``root/seed<k>`` otherwise."""
    return root if seed is None else osp.join(root, f'seed{seed}')


def _cfg_option_args(opts: Dict[str, object]) -> List[str]:
    out = []
    for k, v in opts.items():
        if isinstance(v, str):
            out.append(f'{k}={v}')
        elif isinstance(v, bool) or v is None:
            out.append(f'{k}={v}')
        elif isinstance(v, (list, tuple)):
            out.append(f'{k}={list(v)!r}'.replace(' ', ''))
        else:
            out.append(f'{k}={v!r}')
    return out


def _launch_prefix(launcher: str, nproc: int, port: int,
                   slurm_partition: Optional[str]) -> List[str]:
    if launcher == 'pytorch':
        return [
            sys.executable, '-m', 'torch.distributed.run',
            f'--nproc_per_node={nproc}', f'--master_port={port}'
        ]
    if launcher == 'slurm':
        if not slurm_partition:
            raise ValueError('--launcher slurm needs --slurm-partition')
        gpn = min(nproc, int(os.environ.get('GPUS_PER_NODE', 8)))
        return ['srun', '-p', slurm_partition, f'--ntasks={nproc}',
                f'--ntasks-per-node={gpn}', f'--gres=gpu:{gpn}',
                '--kill-on-bad-exit=1'] + \
            os.environ.get('SRUN_ARGS', '').split() + [sys.executable, '-u']
    if launcher == 'mpi':
        return ['mpirun', '-np', str(nproc), sys.executable]
    return [sys.executable]


def stage_commands(stage: dict, work_dir: str, init_ckpt: Optional[str],
                   launcher: str = 'none', nproc: int = 1, port: int = 29500,
                   resume: bool = False,
                   slurm_partition: Optional[str] = None,
                   extra_cfg_options: Optional[dict] = None,
                   seed: Optional[int] = None):
    """The train and test command lines of one stage (test checkpoint is
    filled in later: placeholder ``{ckpt}``). ``seed`` sets
    ``randomness.seed`` (None: the config's own)."""
    opts = dict(extra_cfg_options or {})
    opts.update(stage.get('cfg_options') or {})
    if seed is not None:
        opts['randomness.seed'] = seed
    test_opts = dict(opts)  # testing loads the stage's own checkpoint
    if init_ckpt:
        opts[stage.get('init_key',
                       'model.backbone.init_cfg.checkpoint')] = init_ckpt
    nproc = stage.get('nproc') or nproc
    prefix = _launch_prefix(launcher, nproc, port, slurm_partition)
    common = ['--work-dir', work_dir, '--launcher', launcher]
    cfg_args = ['--cfg-options'] + _cfg_option_args(opts) if opts else []
    test_args = ['--cfg-options'] + _cfg_option_args(test_opts) \
        if test_opts else []
    train = prefix + [osp.join(REPO, 'tools', 'train.py'), stage['config']
                      ] + common + cfg_args
    if resume:
        train.append('--resume')
    test = prefix + [
        osp.join(REPO, 'tools', 'test.py'), stage['config'], '{ckpt}'
    ] + common + test_args + [
        '--metrics-out', osp.join(work_dir, 'test_metrics.json')
    ]
    return train, test


def _read_json(path):
    with open(path) as f:
        return json.load(f)


def _write_json(path, obj):
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def _task_of(config: str) -> str:
    from mmengine.config import Config
    try:
        scope = Config.fromfile(config).get('default_scope')
    except Exception:  # pragma: no cover - reported by train.py itself
        return '?'
    return TASK_OF_SCOPE.get(scope, scope or '?')


def best_validation(work_dir: str,
                    metrics: Sequence[str] = PRIMARY_METRICS
                    ) -> Optional[dict]:
    """The best in-training validation score of a run, from mmengine's
    ``<work_dir>/<timestamp>/vis_data/scalars.json`` (every training session
    of a resumed run): ``dict(metric, value, step)`` for the first of
    ``metrics`` that was logged, or None when the run never validated."""
    series = {m: [] for m in metrics}
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                          'scalars.json'))):
        with open(path) as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                for m in metrics:
                    if isinstance(rec.get(m), (int, float)):
                        series[m].append((float(rec[m]), rec.get('step')))
    for m in metrics:
        if series[m]:
            value, step = max(series[m], key=lambda vs: vs[0])
            return dict(metric=m, value=value, step=step,
                        validations=len(series[m]))
    return None


def _sgs_history(work_dir: str) -> Optional[str]:
    """The SGS hook's G history in a work dir, or None for a run without SGS."""
    from ..analysis.history import find_history_file
    return find_history_file(work_dir)


def _run(cmd: List[str], log_path: str, quiet: bool) -> None:
    print('[pipeline] $ ' + ' '.join(cmd), flush=True)
    with open(log_path, 'a') as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True,
                                cwd=os.getcwd())
        tail = []
        for line in proc.stdout:
            log.write(line)
            tail = (tail + [line])[-40:]
            if not quiet:
                sys.stdout.write(line)
        rc = proc.wait()
    if rc != 0:
        sys.stdout.write(''.join(tail))
        raise RuntimeError(f'command failed (exit {rc}), log: {log_path}')


def _run_stage(stage: dict, root: str, seed: Optional[int], launcher: str,
               nproc: int, port: int, force: bool, dry_run: bool,
               quiet: bool, slurm_partition: Optional[str],
               cfg_options: Optional[dict]) -> Optional[dict]:
    """Train (or resume) and test one stage of one seed's chain; return its
    result (None in a dry run)."""
    from sgs_mm.launch.runner import find_checkpoint
    name = stage['name']
    wd = osp.join(root, name)
    result_path = osp.join(wd, 'stage_result.json')
    done_path = osp.join(wd, 'train_done.json')
    if force and osp.isdir(wd) and not dry_run:
        # a forced stage starts from scratch: checkpoints (which would be
        # resumed), G history and results all go
        shutil.rmtree(wd)
    if not dry_run:
        os.makedirs(wd, exist_ok=True)
    if osp.isfile(result_path):
        result = _read_json(result_path)
        if result.get('protocol') == PROTOCOL:
            print(f'[pipeline] {name}: finished before, skipped '
                  f'({result_path})', flush=True)
            return result
        # an older result, possibly of a checkpoint selected on the
        # reported split: keep the training, evaluate its final checkpoint
        print(f'[pipeline] {name}: result of {result.get("tested_checkpoint")}'
              f' predates the final-checkpoint protocol: re-testing',
              flush=True)
        if not dry_run:
            os.remove(result_path)
    init_ckpt = None
    if stage.get('init_from'):
        src = osp.join(root, stage['init_from'], 'stage_result.json')
        if dry_run and not osp.isfile(src):
            init_ckpt = f'<{stage["init_from"]} final checkpoint>'
        elif not osp.isfile(src):
            raise RuntimeError(
                f'stage {name} initialises from {stage["init_from"]}, '
                f'which has not finished ({src} missing)')
        else:
            r = _read_json(src)
            # the final checkpoint unless the spec asks for the best one
            # (selected on the validation split)
            init_ckpt = r['best_checkpoint'] if stage.get(
                'init_ckpt', 'last') == 'best' and r.get(
                    'best_checkpoint') else r['last_checkpoint']
    resume = (not osp.isfile(done_path)) and \
        find_checkpoint(wd, 'last') is not None
    train_cmd, test_cmd = stage_commands(
        stage, wd, init_ckpt, launcher, nproc, port, resume,
        slurm_partition, cfg_options, seed=seed)
    if dry_run:
        print('[pipeline] ' + ' '.join(train_cmd))
        print('[pipeline] ' + ' '.join(test_cmd))
        return None
    log_path = osp.join(wd, 'pipeline.log')
    if osp.isfile(done_path):
        done = _read_json(done_path)
        print(f'[pipeline] {name}: training finished before', flush=True)
    else:
        print(f'[pipeline] {name}: training'
              f'{" (resuming)" if resume else ""}', flush=True)
        t0 = time.time()
        _run(train_cmd, log_path, quiet)
        done = dict(train_seconds=time.time() - t0,
                    last_checkpoint=find_checkpoint(wd, 'last'),
                    best_checkpoint=None)
        best = find_checkpoint(wd, 'best')
        if best != done['last_checkpoint']:
            done['best_checkpoint'] = best
        if done['last_checkpoint'] is None:
            raise RuntimeError(f'stage {name}: no checkpoint in {wd}')
        # before testing: only the training sessions' logs are read
        done['best_val'] = best_validation(wd)
        _write_json(done_path, done)
    if 'best_val' not in done:  # trained by an older version
        done['best_val'] = best_validation(wd)
    ckpt = done['last_checkpoint']
    print(f'[pipeline] {name}: testing the final checkpoint {ckpt}',
          flush=True)
    t0 = time.time()
    _run([c.replace('{ckpt}', ckpt) for c in test_cmd], log_path, quiet)
    test_seconds = time.time() - t0
    metrics = _read_json(osp.join(wd, 'test_metrics.json'))
    result = dict(
        name=name,
        seed=seed,
        config=stage['config'],
        task=_task_of(stage['config']),
        init_from=stage.get('init_from'),
        init_checkpoint=init_ckpt,
        table=dict(stage.get('table') or {}),
        protocol=PROTOCOL,
        metrics=metrics,
        best_val=done.get('best_val'),
        train_seconds=round(done['train_seconds'], 1),
        test_seconds=round(test_seconds, 1),
        last_checkpoint=done['last_checkpoint'],
        best_checkpoint=done['best_checkpoint'],
        tested_checkpoint=ckpt,
        sgs_history=_sgs_history(wd))
    _write_json(result_path, result)
    return result


def run_pipeline(spec: dict,
                 work_root: Optional[str] = None,
                 only: Optional[List[str]] = None,
                 launcher: str = 'none',
                 nproc: int = 1,
                 port: int = 29500,
                 force: bool = False,
                 dry_run: bool = False,
                 quiet: bool = False,
                 slurm_partition: Optional[str] = None,
                 cfg_options: Optional[dict] = None,
                 seeds: int = 1) -> dict:
    """Run (or skip) every stage in order, ``seeds`` times; return the
    results dict that :func:`write_tables` also writes.

    ``seeds=1`` runs each stage once with its config's own seed in
    ``<work_root>/<stage>``; ``seeds=N`` runs the whole chain for
    ``randomness.seed`` = 0..N-1 in ``<work_root>/seed<k>/<stage>``, each
    downstream stage initialised from its own seed's upstream stage.
    """
    if int(seeds) < 1:
        raise ValueError(f'seeds must be >= 1, got {seeds}')
    root = work_root or spec['work_root']
    if not dry_run:
        os.makedirs(root, exist_ok=True)
    seed_list = [None] if int(seeds) == 1 else list(range(int(seeds)))
    results = []
    for seed in seed_list:
        sroot = seed_work_root(root, seed)
        if seed is not None:
            print(f'[pipeline] seed {seed}: {sroot}', flush=True)
        for stage in spec['stages']:
            if only and stage['name'] not in only:
                path = osp.join(sroot, stage['name'], 'stage_result.json')
                if osp.isfile(path):
                    results.append(_read_json(path))
                continue
            r = _run_stage(stage, sroot, seed, launcher, nproc, port, force,
                           dry_run, quiet, slurm_partition, cfg_options)
            if r is not None:
                results.append(r)
    out = dict(title=spec.get('title', ''), work_root=root,
               seeds=None if seed_list == [None] else seed_list,
               protocol=PROTOCOL, stages=results)
    if not dry_run:
        write_tables(out, root)
    return out


# ------------------------------------------------------------------ tables
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


def markdown_tables(results: dict) -> str:
    stages = results['stages']
    multi = any(r.get('seed') is not None for r in stages)
    seeds = sorted({r.get('seed') for r in stages},
                   key=lambda s: -1 if s is None else s)
    lines = [f'# Results: {results.get("title", "")}', '',
             'Every metric is of the **final checkpoint** of each stage '
             '(downstream stages start from the final ImageNet checkpoint). '
             '"best val during training" is the best in-training '
             'validation on the same split that is reported: a selected '
             'number, shown for reference only.', '',
             '## Stages', '',
             '| stage | ' + ('seed | ' if multi else '') +
             'task | init from | ' +
             ' | '.join(c for c, _ in METRIC_COLUMNS) +
             ' | best val during training (selected on the reported split)'
             ' | train (s) | test (s) |',
             '|' + '---|' * (6 + len(METRIC_COLUMNS) + int(multi))]
    for r in stages:
        vals = [_fmt(_metric(r['metrics'], keys)) for _, keys in
                METRIC_COLUMNS]
        lines.append(f'| {r["name"]} | ' +
                     (f'{r.get("seed")} | ' if multi else '') +
                     f'{r["task"]} | {r.get("init_from") or "-"} | ' +
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
             ('PCKh@0.5', ))):
        rows = [r for r in stages if r['task'] == task and r.get('table')]
        if not rows:
            continue
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
    return '\n'.join(lines) + '\n'


def write_tables(results: dict, root: str) -> str:
    _write_json(osp.join(root, 'results.json'), results)
    md = markdown_tables(results)
    with open(osp.join(root, 'results.md'), 'w') as f:
        f.write(md)
    return md
