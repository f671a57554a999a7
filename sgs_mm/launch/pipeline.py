"""Run a spec of train stages (pretrain -> {pspnet, simplebaseline}, each
with and without SGS), pass each stage's checkpoint to the stages that
initialise from it, skip finished stages, and write the results table.

A spec is an mmengine config file (``.py``/``.json``/``.yaml``)::

    work_root = 'work_dirs/pipeline_r18'
    stages = [
        dict(name='pretrain_r18', config='configs/pretrain/...py',
             table=dict(model='ResNet-18', variant='Baseline')),
        dict(name='pspnet_r18', config='configs/pspnet/...py',
             init_from='pretrain_r18',          # stage whose checkpoint ...
             init_ckpt='best',                  # 'best' (fallback last)|'last'
             init_key='model.backbone.init_cfg.checkpoint',  # ... goes here
             cfg_options=dict(), nproc=None,
             table=dict(model='PSPNet-18', variant='Baseline')),
    ]

Each stage trains with ``tools/train.py`` (a subprocess; ``torchrun`` for
``--launcher pytorch``, ``srun`` for ``--launcher slurm``), then evaluates the
chosen checkpoint with ``tools/test.py``. State lives in
``<work_root>/<stage>/``: ``train_done.json`` after training,
``stage_result.json`` after testing. A rerun skips stages with
``stage_result.json``, resumes training from the latest checkpoint where
training was interrupted, and only re-tests where only testing is missing.
"""
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Optional

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# (column, metric keys to try) per task
METRIC_COLUMNS = [
    ('top-1', ('accuracy/top1', 'top1', 'accuracy_top-1')),
    ('mIoU', ('mIoU', )),
    ('mAcc', ('mAcc', )),
    ('aAcc', ('aAcc', )),
    ('PCKh@0.5', ('PCK', 'PCKh')),
]
TASK_OF_SCOPE = {'mmpretrain': 'cls', 'mmseg': 'seg', 'mmpose': 'pose'}

__all__ = ['load_spec', 'run_pipeline', 'write_tables', 'stage_commands']


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
    return spec


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
                   extra_cfg_options: Optional[dict] = None):
    """The train and test command lines of one stage (test checkpoint is
    filled in later: placeholder ``{ckpt}``)."""
    opts = dict(extra_cfg_options or {})
    opts.update(stage.get('cfg_options') or {})
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
                 cfg_options: Optional[dict] = None) -> dict:
    """Run (or skip) every stage in order; return the results dict that
    :func:`write_tables` also writes."""
    from sgs_mm.launch.runner import find_checkpoint
    root = work_root or spec['work_root']
    os.makedirs(root, exist_ok=True)
    results = []
    for stage in spec['stages']:
        name = stage['name']
        wd = osp.join(root, name)
        result_path = osp.join(wd, 'stage_result.json')
        done_path = osp.join(wd, 'train_done.json')
        if only and name not in only:
            if osp.isfile(result_path):
                results.append(_read_json(result_path))
            continue
        if force and osp.isdir(wd) and not dry_run:
            # a forced stage starts from scratch: checkpoints (which would be
            # resumed), G history and results all go
            shutil.rmtree(wd)
        os.makedirs(wd, exist_ok=True)
        if osp.isfile(result_path):
            print(f'[pipeline] {name}: finished before, skipped '
                  f'({result_path})', flush=True)
            results.append(_read_json(result_path))
            continue
        init_ckpt = None
        if stage.get('init_from'):
            src = osp.join(root, stage['init_from'], 'stage_result.json')
            if dry_run and not osp.isfile(src):
                init_ckpt = f'<{stage["init_from"]} checkpoint>'
            elif not osp.isfile(src):
                raise RuntimeError(
                    f'stage {name} initialises from {stage["init_from"]}, '
                    f'which has not finished ({src} missing)')
            else:
                r = _read_json(src)
                prefer = stage.get('init_ckpt', 'best')
                init_ckpt = r['best_checkpoint'] if prefer == 'best' and \
                    r.get('best_checkpoint') else r['last_checkpoint']
        resume = (not osp.isfile(done_path)) and \
            find_checkpoint(wd, 'last') is not None
        train_cmd, test_cmd = stage_commands(
            stage, wd, init_ckpt, launcher, nproc, port, resume,
            slurm_partition, cfg_options)
        if dry_run:
            print('[pipeline] ' + ' '.join(train_cmd))
            print('[pipeline] ' + ' '.join(test_cmd))
            continue
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
            _write_json(done_path, done)
        ckpt = done['best_checkpoint'] or done['last_checkpoint']
        print(f'[pipeline] {name}: testing {ckpt}', flush=True)
        t0 = time.time()
        _run([c.replace('{ckpt}', ckpt) for c in test_cmd], log_path, quiet)
        test_seconds = time.time() - t0
        metrics = _read_json(osp.join(wd, 'test_metrics.json'))
        result = dict(
            name=name,
            config=stage['config'],
            task=_task_of(stage['config']),
            init_from=stage.get('init_from'),
            init_checkpoint=init_ckpt,
            table=dict(stage.get('table') or {}),
            metrics=metrics,
            train_seconds=round(done['train_seconds'], 1),
            test_seconds=round(test_seconds, 1),
            last_checkpoint=done['last_checkpoint'],
            best_checkpoint=done['best_checkpoint'],
            tested_checkpoint=ckpt,
            sgs_history=osp.join(wd, 'sgs_g_history.json')
            if osp.isfile(osp.join(wd, 'sgs_g_history.json')) else None)
        _write_json(result_path, result)
        results.append(result)
    out = dict(title=spec.get('title', ''), work_root=root, stages=results)
    if not dry_run:
        write_tables(out, root)
    return out


def _metric(metrics: dict, keys) -> Optional[float]:
    for k in keys:
        if k in metrics:
            return float(metrics[k])
    return None


def _fmt(v: Optional[float]) -> str:
    return '-' if v is None else f'{v:.1f}'


def markdown_tables(results: dict) -> str:
    lines = [f'# Results: {results.get("title", "")}', '',
             '## Stages', '',
             '| stage | task | init from | ' +
             ' | '.join(c for c, _ in METRIC_COLUMNS) +
             ' | train (s) | test (s) |',
             '|' + '---|' * (5 + len(METRIC_COLUMNS))]
    for r in results['stages']:
        vals = [_fmt(_metric(r['metrics'], keys)) for _, keys in
                METRIC_COLUMNS]
        lines.append(f'| {r["name"]} | {r["task"]} | '
                     f'{r.get("init_from") or "-"} | ' + ' | '.join(vals) +
                     f' | {r["train_seconds"]:.0f} | '
                     f'{r["test_seconds"]:.0f} |')
    # paper-style tables: rows = model, columns = variants
    for task, title, cols in (
            ('cls', 'Pretraining (top-1)', ('top-1', )),
            ('seg', 'Table 7 style: semantic segmentation '
             '(mIoU/mAcc/aAcc)', ('mIoU', 'mAcc', 'aAcc')),
            ('pose', 'Table 8 style: pose estimation (PCKh@0.5)',
             ('PCKh@0.5', ))):
        rows = [r for r in results['stages']
                if r['task'] == task and r.get('table')]
        if not rows:
            continue
        variants, models = [], []
        for r in rows:
            v, m = r['table'].get('variant', r['name']), r['table'].get(
                'model', r['name'])
            variants += [v] if v not in variants else []
            models += [m] if m not in models else []
        keys = dict(METRIC_COLUMNS)
        lines += ['', f'## {title}', '',
                  '| Model | ' + ' | '.join(
                      f'{v} ({"/".join(cols)})' for v in variants) + ' |',
                  '|---|' + '---|' * len(variants)]
        for m in models:
            cells = []
            for v in variants:
                r = next((r for r in rows if r['table'].get('model',
                                                             r['name']) == m
                          and r['table'].get('variant', r['name']) == v),
                         None)
                cells.append('-' if r is None else '/'.join(
                    _fmt(_metric(r['metrics'], keys[c])) for c in cols))
            lines.append(f'| {m} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def write_tables(results: dict, root: str) -> str:
    _write_json(osp.join(root, 'results.json'), results)
    md = markdown_tables(results)
    with open(osp.join(root, 'results.md'), 'w') as f:
        f.write(md)
    return md
