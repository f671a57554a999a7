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
             enabled=True,                      # False: left out
             table=dict(model='PSPNet-18', variant='Baseline')),
    ]

On the command line (``tools/pipeline.py --cfg-options``), a key
``stages.<stage name>.<field>`` changes that stage's entry (e.g.
``stages.pspnet_r18_sgs_diag_removal.enabled=True``); every other key is a
config option of every stage.

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
training, ``stage_result.json`` after testing, every path in them relative to
the work root (a copied or moved work root stays self-contained; a path
recorded outside it is named in the log). A rerun skips stages with
``stage_result.json``, resumes training from the latest checkpoint where
training was interrupted, and only re-tests where only testing is missing
(or where an older result was not of the final checkpoint).

Finished work is never lost: every input of a stage (its config and data,
the checkpoint it starts from) is checked before anything of the stage is
touched, and ``force=True`` moves the finished stage aside
(``<stage>.previous``) until the rerun has finished, restoring it when the
rerun fails (the failed run is kept in ``<stage>.failed``).

Progress: each stage's log path is printed when it starts, and a status
line per running stage (``k/N stage: epoch e/E, iter i/I, ETA``, from the
mmengine log) at least every ``progress`` seconds. ``jobs=N`` runs up to N
independent stages at once (e.g. the baseline and the SGS chain).
"""
import glob
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .pipeline_spec import load_spec, split_stage_options
from .progress import Console, StageStatus
from .results_tables import (METRIC_COLUMNS, _metric, markdown_tables,
                             write_tables)
from .stage_paths import (_inside, from_root, resolve_stored, result_path,
                          to_root)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# the metric whose best in-training validation is reported (labelled)
PRIMARY_METRICS = ('accuracy/top1', 'mIoU', 'PCK')
TASK_OF_SCOPE = {'mmpretrain': 'cls', 'mmseg': 'seg', 'mmpose': 'pose'}
# stage results written by this protocol (older ones are re-tested)
PROTOCOL = 'final-checkpoint'

__all__ = ['load_spec', 'split_stage_options', 'run_pipeline', 'write_tables', 'stage_commands',
           'markdown_tables', 'best_validation', 'seed_work_root',
           'stage_env', 'device_label', 'result_path', 'to_root',
           'from_root', 'resolve_stored', 'StageInputError', 'Console',
           'StageStatus']


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
    if resume:  # True: the latest checkpoint in the work dir; a str: that one
        train.append('--resume')
        if isinstance(resume, str):
            train.append(resume)
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


class StageInputError(RuntimeError):
    """An input of a stage (config, data, initial checkpoint) is missing;
    raised before anything of the stage is touched."""


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


# --------------------------------------------------------- stage processes
# Library warnings every stage process would print again (at import time);
# filtered by message in the stage's environment only.
STAGE_WARNING_FILTERS = (
    'ignore:pkg_resources is deprecated as an API:UserWarning',
)


def stage_env(threads: Optional[int] = None,
              extra: Optional[Dict[str, str]] = None,
              base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The environment of a stage's train/test process: unbuffered output
    (progress), the library warnings of :data:`STAGE_WARNING_FILTERS`
    filtered, ``threads`` CPU threads (OMP/MKL) when given, then ``extra``."""
    env = dict(os.environ if base is None else base)
    filters = [f for f in env.get('PYTHONWARNINGS', '').split(',') if f]
    filters += [f for f in STAGE_WARNING_FILTERS if f not in filters]
    env['PYTHONWARNINGS'] = ','.join(filters)
    env['PYTHONUNBUFFERED'] = '1'
    if threads:
        env['OMP_NUM_THREADS'] = env['MKL_NUM_THREADS'] = str(int(threads))
    env.update(extra or {})
    return env


def device_label(launcher: str, nproc: int, cuda: bool) -> str:
    """What a stage runs on: ``cpu``, ``cpu x2 (gloo)``, ``cuda x1``,
    ``cuda x4`` (mmengine puts the model on the GPU whenever CUDA is
    visible; ``nproc`` processes under a distributed launcher, one GPU
    each)."""
    n = int(nproc) if launcher != 'none' else 1
    if launcher == 'slurm':
        return f'slurm x{n}'
    if cuda:
        return f'cuda x{n}'
    return 'cpu' if n == 1 else f'cpu x{n} (gloo)'


def _cuda_visible(env: Optional[Dict[str, str]]) -> bool:
    if env is not None and env.get('CUDA_VISIBLE_DEVICES', None) in ('', '-1'):
        return False
    try:
        import torch
        return torch.cuda.is_available()
    except Exception:  # pragma: no cover
        return False


def _run(cmd: List[str], log_path: str, quiet: bool,
         env: Optional[Dict[str, str]] = None,
         on_line: Optional[Callable[[str], None]] = None,
         procs: Optional[set] = None) -> Optional[float]:
    """Run ``cmd``, appending its output to ``log_path`` (and to the console
    unless ``quiet``); ``on_line`` sees every line. Returns the CPU seconds
    (user + system) of the process and its children."""
    with open(log_path, 'a', buffering=1) as log:  # line by line: live
        log.write('$ ' + ' '.join(cmd) + '\n')
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True,
                                cwd=os.getcwd(), env=env)
        if procs is not None:
            procs.add(proc)
        tail = []
        try:
            for line in proc.stdout:
                log.write(line)
                tail = (tail + [line])[-40:]
                if on_line is not None:
                    on_line(line)
                if not quiet:
                    sys.stdout.write(line)
            cpu = None
            try:  # the child's own resource usage (not other stages')
                _, status, ru = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
                cpu = ru.ru_utime + ru.ru_stime
            except ChildProcessError:  # pragma: no cover - reaped elsewhere
                pass
            rc = proc.wait()
        finally:
            if procs is not None:
                procs.discard(proc)
    if rc != 0:
        sys.stdout.write(''.join(tail))
        raise RuntimeError(f'command failed (exit {rc}), log: {log_path}')
    return cpu


# -------------------------------------------------------------- one stage
_CONFIG_LOCK = threading.Lock()


def _stage_config(config: str, opts: dict):
    """The stage's resolved config (with its cfg options)."""
    from mmengine.config import Config
    # mmengine's config loading (package lookups for ``mmseg::`` bases) is
    # not thread-safe: one config at a time when stages run side by side
    with _CONFIG_LOCK:
        cfg = Config.fromfile(config)
        if opts:
            cfg.merge_from_dict(dict(opts))
    return cfg


def _schedule_of(cfg) -> Tuple[Optional[int], Optional[str]]:
    tc = cfg.get('train_cfg') or {}
    if tc.get('type', '') == 'IterBasedTrainLoop' or (
            'max_iters' in tc and 'max_epochs' not in tc):
        return tc.get('max_iters'), 'iter'
    if 'max_epochs' in tc:
        return tc.get('max_epochs'), 'epoch'
    return None, None


def _aside_name(wd: str) -> str:
    n = 0
    while True:
        aside = f'{wd}.previous' + (f'-{n}' if n else '')
        if not osp.exists(aside):
            return aside
        n += 1


def _asides(wd: str) -> List[str]:
    return sorted(glob.glob(glob.escape(wd) + '.previous*'))


class _Ctx:
    """What every stage of one pipeline run shares."""

    def __init__(self, root, launcher, nproc, port, force, dry_run, quiet,
                 slurm_partition, cfg_options, env, check_data_first,
                 console, total):
        self.root, self.launcher, self.nproc, self.port = (root, launcher,
                                                           nproc, port)
        self.force, self.dry_run, self.quiet = force, dry_run, quiet
        self.slurm_partition, self.cfg_options = slurm_partition, cfg_options
        self.env, self.check_data = env, check_data_first
        self.console, self.total = console, total
        self.cuda = _cuda_visible(env)
        self.procs = set()

    def say(self, text):
        self.console.say(text)


def _stage_inputs(ctx: _Ctx, stage: dict, sroot: str, seed: Optional[int],
                  name: str) -> dict:
    """Check every input of a stage -- its config, its data, the checkpoint
    it starts from -- before anything of it is touched. Raises
    :class:`StageInputError` naming what is missing."""
    config = stage['config']
    if not osp.isfile(config):
        raise StageInputError(f'stage {name}: config {config} not found')
    init_ckpt = None
    src = stage.get('init_from')
    if src:
        res_path = osp.join(sroot, src, 'stage_result.json')
        if ctx.dry_run and not osp.isfile(res_path):
            init_ckpt = f'<{src} final checkpoint>'
        elif not osp.isfile(res_path):
            raise StageInputError(
                f'stage {name} initialises from {src}, which has not '
                f'finished ({res_path} missing)')
        else:
            r = _read_json(res_path)
            # the final checkpoint unless the spec asks for the best one
            # (selected on the validation split)
            key = 'best_checkpoint' if stage.get(
                'init_ckpt', 'last') == 'best' and r.get(
                    'best_checkpoint') else 'last_checkpoint'
            init_ckpt = resolve_stored(ctx.root, r.get(key),
                                       osp.join(sroot, src),
                                       f'{src}\'s checkpoint', ctx.say)
            if not init_ckpt or not osp.isfile(init_ckpt):
                raise StageInputError(
                    f'stage {name} initialises from {src}\'s '
                    f'{key.split("_")[0]} checkpoint {init_ckpt}, which does '
                    f'not exist (rerun {src}, e.g. --stages {src} --force)')
    opts = dict(ctx.cfg_options or {})
    opts.update(stage.get('cfg_options') or {})
    if seed is not None:
        opts['randomness.seed'] = seed
    init_key = stage.get('init_key', 'model.backbone.init_cfg.checkpoint')
    # checkpoints named by the spec or --cfg-options directly
    for key in (init_key, 'load_from'):
        p = opts.get(key)
        if isinstance(p, str) and p and '://' not in p and not init_ckpt:
            if not osp.isfile(p):
                raise StageInputError(f'stage {name}: {key}={p} does not '
                                      'exist')
            if not _inside(ctx.root, p):
                ctx.say(f'[pipeline] note: stage {name} reads {key}={p}, '
                        f'outside the work root {ctx.root}')
    if init_ckpt and not ctx.dry_run:
        opts[init_key] = init_ckpt
    try:
        cfg = _stage_config(config, opts)
    except Exception as e:
        raise StageInputError(f'stage {name}: config {config} does not load '
                              f'with its options: {e}') from e
    scope = cfg.get('default_scope')
    if ctx.check_data and not ctx.dry_run:
        from .data_check import check_data
        try:
            check_data(cfg, splits=('train', 'val', 'test'))
        except FileNotFoundError as e:
            raise StageInputError(f'stage {name}: {e}') from e
    total, unit = _schedule_of(cfg)
    return dict(init_ckpt=init_ckpt, task=TASK_OF_SCOPE.get(scope,
                                                            scope or '?'),
                total=total, unit=unit)


def _run_stage(ctx: _Ctx, stage: dict, sroot: str, seed: Optional[int],
               k: int, slot: int = 0) -> Optional[dict]:
    """Train (or resume) and test one stage of one seed's chain; return its
    result (None in a dry run). Every input is checked first; a forced rerun
    moves the old results aside and restores them if it fails."""
    name = stage['name']
    wd = osp.join(sroot, name)
    label = f'{k}/{ctx.total} {name}' + (f' (seed {seed})'
                                          if seed is not None else '')
    result_file = osp.join(wd, 'stage_result.json')
    old = None
    if osp.isfile(result_file) and not ctx.force:
        old = _read_json(result_file)
        if old.get('protocol') == PROTOCOL:
            ctx.say(f'{label}: finished before, skipped ({result_file})')
            return old
    for aside in _asides(wd) if not ctx.dry_run else []:
        ctx.say(f'{label}: note: {aside} holds results moved aside by an '
                'interrupted --force run (move it back or remove it)')
    inputs = _stage_inputs(ctx, stage, sroot, seed, name)
    nproc = stage.get('nproc') or ctx.nproc
    device = device_label(ctx.launcher, nproc, ctx.cuda)
    if ctx.dry_run:
        train_cmd, test_cmd = stage_commands(
            stage, wd, inputs['init_ckpt'], ctx.launcher, ctx.nproc,
            ctx.port + slot, False, ctx.slurm_partition, ctx.cfg_options,
            seed=seed)
        print('[pipeline] ' + ' '.join(train_cmd))
        print('[pipeline] ' + ' '.join(test_cmd))
        return None
    aside = None
    if ctx.force and osp.isdir(wd):
        if osp.isfile(result_file) or osp.isfile(
                osp.join(wd, 'train_done.json')) or not _asides(wd):
            # finished (or the only) results: kept until the rerun finished
            aside = _aside_name(wd)
            os.replace(wd, aside)
            ctx.say(f'{label}: --force: previous results moved to {aside} '
                    'until the rerun has finished')
        else:
            # an unfinished rerun of an interrupted --force run; the
            # finished results it replaces are still aside
            shutil.rmtree(wd)
    os.makedirs(wd, exist_ok=True)
    try:
        result = _train_and_test(ctx, stage, wd, seed, label, inputs, device,
                                 slot, old)
    except BaseException:
        if aside is not None:
            failed = wd + '.failed'
            if osp.isdir(failed):
                shutil.rmtree(failed)
            os.replace(wd, failed)
            os.replace(aside, wd)
            ctx.say(f'{label}: the forced rerun failed: previous results '
                    f'restored in {wd}; the failed run is in {failed}')
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    return result


def _train_and_test(ctx: _Ctx, stage: dict, wd: str, seed: Optional[int],
                    label: str, inputs: dict, device: str, slot: int,
                    old: Optional[dict]) -> dict:
    from sgs_mm.launch.runner import find_checkpoint
    name = stage['name']
    root = ctx.root
    done_path = osp.join(wd, 'train_done.json')
    log_path = osp.join(wd, 'pipeline.log')
    env = stage_env(extra=ctx.env)
    status = StageStatus(label, inputs['total'], inputs['unit'])
    key = f'{label}#{slot}'

    def on_line(line):
        event = status.feed(line)
        if event:
            ctx.say(event)

    init_ckpt = inputs['init_ckpt']
    ctx.console.add(key, status)
    try:
        if osp.isfile(done_path):
            done = _read_json(done_path)
            ctx.say(f'{label}: training finished before ({done_path})')
        else:
            resume = find_checkpoint(wd, 'last')
            train_cmd, _ = stage_commands(
                stage, wd, init_ckpt, ctx.launcher, ctx.nproc,
                ctx.port + slot, resume or False, ctx.slurm_partition,
                ctx.cfg_options, seed=seed)
            if old is not None:
                ctx.say(f'{label}: result of {old.get("tested_checkpoint")}'
                        ' predates the final-checkpoint protocol: re-testing')
            what = f'resuming from {osp.basename(resume)}' if resume \
                else 'training'
            ctx.say(f'{label}: {what} on {device}, log {log_path}')
            if not ctx.quiet:
                ctx.say('$ ' + ' '.join(train_cmd))
            status.set_phase('training')
            t0 = time.time()
            cpu = _run(train_cmd, log_path, ctx.quiet, env, on_line,
                       ctx.procs)
            last = find_checkpoint(wd, 'last')
            if last is None:
                raise RuntimeError(f'stage {name}: no checkpoint in {wd}')
            best = find_checkpoint(wd, 'best')
            done = dict(train_seconds=time.time() - t0,
                        train_cpu_seconds=cpu,
                        last_checkpoint=to_root(root, last),
                        best_checkpoint=to_root(root, best)
                        if best != last else None,
                        device=device)
            # before testing: only the training sessions' logs are read
            done['best_val'] = best_validation(wd)
            _write_json(done_path, done)
        if 'best_val' not in done:  # trained by an older version
            done['best_val'] = best_validation(wd)
        ckpt = resolve_stored(root, done['last_checkpoint'], wd,
                              f'{name}\'s final checkpoint', ctx.say)
        if not ckpt or not osp.isfile(ckpt):
            raise RuntimeError(f'stage {name}: its final checkpoint {ckpt} '
                               'is missing')
        _, test_cmd = stage_commands(
            stage, wd, init_ckpt, ctx.launcher, ctx.nproc, ctx.port + slot,
            False, ctx.slurm_partition, ctx.cfg_options, seed=seed)
        test_cmd = [c.replace('{ckpt}', ckpt) for c in test_cmd]
        ctx.say(f'{label}: testing the final checkpoint '
                f'{osp.basename(ckpt)}')
        if not ctx.quiet:
            ctx.say('$ ' + ' '.join(test_cmd))
        status.set_phase('testing')
        t0 = time.time()
        metrics_file = osp.join(wd, 'test_metrics.json')
        if osp.isfile(metrics_file):
            os.remove(metrics_file)
        test_cpu = _run(test_cmd, log_path, ctx.quiet, env, on_line,
                        ctx.procs)
        test_seconds = time.time() - t0
        metrics = _read_json(metrics_file)
    finally:
        ctx.console.remove(key)
    result = dict(
        name=name,
        seed=seed,
        config=stage['config'],
        task=inputs['task'],
        device=done.get('device', device),
        init_from=stage.get('init_from'),
        init_checkpoint=to_root(root, init_ckpt),
        table=dict(stage.get('table') or {}),
        protocol=PROTOCOL,
        metrics=metrics,
        best_val=done.get('best_val'),
        train_seconds=round(done['train_seconds'], 1),
        test_seconds=round(test_seconds, 1),
        train_cpu_seconds=_round(done.get('train_cpu_seconds')),
        test_cpu_seconds=_round(test_cpu),
        last_checkpoint=to_root(root, ckpt),
        best_checkpoint=to_root(root, resolve_stored(
            root, done.get('best_checkpoint'), wd, 'best checkpoint',
            ctx.say)),
        tested_checkpoint=to_root(root, ckpt),
        sgs_history=to_root(root, _sgs_history(wd)),
        log=to_root(root, log_path))
    _write_json(osp.join(wd, 'stage_result.json'), result)
    headline = _headline(metrics)
    ctx.say(f'{label}: done in {result["train_seconds"] + test_seconds:.0f} s'
            f'{headline}')
    return result


def _round(v):
    return None if v is None else round(v, 1)


def _headline(metrics: dict) -> str:
    vals = [(c, _metric(metrics, keys)) for c, keys in METRIC_COLUMNS]
    vals = [f'{c} {v:.1f}' for c, v in vals if v is not None]
    return (': ' + ', '.join(vals)) if vals else ''


def _stage_result_on_disk(root: str, sroot: str, name: str) -> Optional[dict]:
    path = osp.join(sroot, name, 'stage_result.json')
    return _read_json(path) if osp.isfile(path) else None


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
                 seeds: int = 1,
                 jobs: int = 1,
                 env: Optional[Dict[str, str]] = None,
                 progress: float = 20.0,
                 check_data: bool = True,
                 console: Optional[Console] = None) -> dict:
    """Run (or skip) every stage, ``seeds`` times; return the results dict
    that :func:`write_tables` also writes (its paths relative to the work
    root: :func:`result_path` resolves them).

    ``seeds=1`` runs each stage once with its config's own seed in
    ``<work_root>/<stage>``; ``seeds=N`` runs the whole chain for
    ``randomness.seed`` = 0..N-1 in ``<work_root>/seed<k>/<stage>``, each
    downstream stage initialised from its own seed's upstream stage.

    ``jobs`` > 1 runs up to that many stages at once (a stage starts when
    the stage it initialises from has finished; torchrun ports are
    ``port + slot``). ``env`` adds variables to every stage's environment
    (e.g. ``OMP_NUM_THREADS``, ``CUDA_VISIBLE_DEVICES``). ``progress``:
    seconds between the status lines of the running stages (0: none).
    """
    if int(seeds) < 1:
        raise ValueError(f'seeds must be >= 1, got {seeds}')
    root = work_root or spec['work_root']
    if not dry_run:
        os.makedirs(root, exist_ok=True)
    seed_list = [None] if int(seeds) == 1 else list(range(int(seeds)))
    todo = []  # (seed, sroot, stage)
    for seed in seed_list:
        sroot = seed_work_root(root, seed)
        for stage in spec['stages']:
            if not only or stage['name'] in only:
                todo.append((seed, sroot, stage))
    console = console or Console(0 if dry_run else progress)
    ctx = _Ctx(root, launcher, nproc, port, force, dry_run, quiet,
               slurm_partition, cfg_options, env, check_data, console,
               len(todo))
    done: Dict[tuple, Optional[dict]] = {}
    with console:
        if int(jobs) <= 1 or dry_run:
            for k, (seed, sroot, stage) in enumerate(todo, 1):
                if seed is not None and stage is spec['stages'][0]:
                    console.say(f'seed {seed}: {sroot}')
                done[(seed, stage['name'])] = _run_stage(
                    ctx, stage, sroot, seed, k)
        else:
            _run_concurrently(ctx, todo, int(jobs), done)
    results = []
    for seed in seed_list:
        sroot = seed_work_root(root, seed)
        for stage in spec['stages']:
            r = done.get((seed, stage['name']))
            if r is None and (seed, stage['name']) not in done:
                r = _stage_result_on_disk(root, sroot, stage['name'])
            if r is not None:
                results.append(r)
    out = dict(title=spec.get('title', ''), work_root=root,
               seeds=None if seed_list == [None] else seed_list,
               protocol=PROTOCOL, stages=results)
    if not dry_run:
        write_tables(out, root)
    return out


def _run_concurrently(ctx: _Ctx, todo: list, jobs: int, done: dict) -> None:
    """Run the stages of ``todo`` with up to ``jobs`` at a time, each stage
    once the stage it initialises from (same seed) has finished."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
    pending = [(k, item) for k, item in enumerate(todo, 1)]
    selected = {(seed, st['name']) for seed, _, st in todo}
    running = {}  # future -> (key, slot)
    free = list(range(jobs))
    errors = []
    pool = ThreadPoolExecutor(max_workers=jobs,
                              thread_name_prefix='pipeline-stage')

    def ready(seed, stage):
        src = stage.get('init_from')
        return not src or (seed, src) not in selected or (seed, src) in done

    try:
        while pending or running:
            if not errors:
                for entry in list(pending):
                    k, (seed, sroot, stage) = entry
                    if not free:
                        break
                    if ready(seed, stage):
                        pending.remove(entry)
                        slot = free.pop(0)
                        fut = pool.submit(_run_stage, ctx, stage, sroot,
                                          seed, k, slot)
                        running[fut] = ((seed, stage['name']), slot)
            if not running:
                if pending and not errors:  # pragma: no cover - load_spec
                    raise RuntimeError('pipeline: unsatisfiable stage order')
                break
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in finished:
                key, slot = running.pop(fut)
                free.append(slot)
                free.sort()
                try:
                    done[key] = fut.result()
                except BaseException as e:  # noqa: B902
                    errors.append(e)
                    ctx.say(f'{key[1]}: failed ({e}); waiting for the '
                            'running stages to finish, starting no new one')
    except BaseException:
        for proc in list(ctx.procs):  # e.g. Ctrl-C: end the stage processes
            try:
                proc.terminate()
            except OSError:  # pragma: no cover
                pass
        pool.shutdown(wait=True)
        raise
    pool.shutdown(wait=True)
    if errors:
        raise errors[0]


# ------------------------------------------------------------------ tables
