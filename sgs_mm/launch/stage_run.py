"""Running one stage of a pipeline: train (or resume) with
``tools/train.py``, test the final checkpoint with ``tools/test.py``, record
``train_done.json`` / ``stage_result.json``; a forced rerun keeps the old
results until it has finished. The order of the stages is
:mod:`sgs_mm.launch.pipeline`'s business."""
import glob
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

from ..atomic_io import atomic_write_json
from .progress import StageStatus
from .results_tables import METRIC_COLUMNS, _metric
from .run_options import RunOptions
from .stage_commands import (cuda_visible, device_label, stage_commands,
                             stage_env)
from .stage_inputs import StageInputError, read_json, stage_inputs
from .stage_paths import resolve_stored, to_root

# the metric whose best in-training validation is reported (labelled)
PRIMARY_METRICS = ('accuracy/top1', 'mIoU', 'PCK')
# stage results written by this protocol (older ones are re-tested)
PROTOCOL = 'final-checkpoint'

__all__ = ['PRIMARY_METRICS', 'PROTOCOL', 'StageContext', 'StageInputError',
           'best_validation', 'describe_stage', 'run_command', 'run_stage']


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


def run_command(cmd: List[str], log_path: str, quiet: bool,
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


class StageContext:
    """What every stage of one pipeline run shares: the run's
    :class:`RunOptions` (as attributes of the same names), the work root,
    the console, the number of stages, the processes running now and
    ``run``, the function that runs one command
    (:func:`run_command`'s signature)."""

    def __init__(self, options: RunOptions, root: str, console, total: int,
                 run: Callable = run_command):
        o = options
        self.root, self.launcher, self.nproc, self.port = (root, o.launcher,
                                                           o.nproc, o.port)
        self.force, self.dry_run, self.quiet = o.force, o.dry_run, o.quiet
        self.slurm_partition = o.slurm_partition
        self.cfg_options = o.cfg_options
        self.env, self.check_data = o.env, o.check_data
        self.console, self.total, self.run = console, total, run
        self.cuda = cuda_visible(o.env)
        self.procs = set()

    def say(self, text):
        self.console.say(text)


def describe_stage(stage: dict) -> str:
    """One line for the dry run: its table row and column, its arm, where
    it starts from."""
    from .arms import arm_label
    table = stage.get('table') or {}
    what = ' '.join(str(table[k]) for k in ('model', 'variant') if k in table)
    parts = [what or stage['config']]
    arm = arm_label(stage)
    if arm:
        parts.append(arm)
    src = stage.get('init_from')
    which = 'best' if stage.get('init_ckpt') == 'best' else 'final'
    parts.append(f'from {src}\'s {which} checkpoint' if src else
                 'from scratch')
    return ', '.join(parts)


def _aside_name(wd: str) -> str:
    n = 0
    while True:
        aside = f'{wd}.previous' + (f'-{n}' if n else '')
        if not osp.exists(aside):
            return aside
        n += 1


def _asides(wd: str) -> List[str]:
    return sorted(glob.glob(glob.escape(wd) + '.previous*'))


def run_stage(ctx: StageContext, stage: dict, sroot: str,
              seed: Optional[int], k: int, slot: int = 0) -> Optional[dict]:
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
        old = read_json(result_file)
        if old.get('protocol') == PROTOCOL:
            ctx.say(f'{label}: finished before, skipped ({result_file})')
            return old
    for aside in _asides(wd) if not ctx.dry_run else []:
        ctx.say(f'{label}: note: {aside} holds results moved aside by an '
                'interrupted --force run (move it back or remove it)')
    inputs = stage_inputs(ctx, stage, sroot, seed, name)
    stage = inputs['stage']  # with its arm's config options
    nproc = stage.get('nproc') or ctx.nproc
    device = device_label(ctx.launcher, nproc, ctx.cuda)
    if ctx.dry_run:
        ctx.say(f'{label}: {describe_stage(stage)}')
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


def _train(ctx: StageContext, stage: dict, wd: str, seed: Optional[int],
           label: str, init_ckpt: Optional[str], device: str, slot: int,
           old: Optional[dict], env: dict, on_line) -> dict:
    """Train (or resume) the stage; write and return ``train_done.json``."""
    from .runner import find_checkpoint
    log_path = osp.join(wd, 'pipeline.log')
    resume = find_checkpoint(wd, 'last')
    train_cmd, _ = stage_commands(
        stage, wd, init_ckpt, ctx.launcher, ctx.nproc, ctx.port + slot,
        resume or False, ctx.slurm_partition, ctx.cfg_options, seed=seed)
    if old is not None:
        ctx.say(f'{label}: result of {old.get("tested_checkpoint")}'
                ' predates the final-checkpoint protocol: re-testing')
    what = f'resuming from {osp.basename(resume)}' if resume else 'training'
    ctx.say(f'{label}: {what} on {device}, log {log_path}')
    if not ctx.quiet:
        ctx.say('$ ' + ' '.join(train_cmd))
    t0 = time.time()
    cpu = ctx.run(train_cmd, log_path, ctx.quiet, env, on_line, ctx.procs)
    last = find_checkpoint(wd, 'last')
    if last is None:
        raise RuntimeError(f'stage {stage["name"]}: no checkpoint in {wd}')
    best = find_checkpoint(wd, 'best')
    done = dict(train_seconds=time.time() - t0,
                train_cpu_seconds=cpu,
                last_checkpoint=to_root(ctx.root, last),
                best_checkpoint=to_root(ctx.root, best)
                if best != last else None,
                device=device)
    # before testing: only the training sessions' logs are read
    done['best_val'] = best_validation(wd)
    atomic_write_json(osp.join(wd, 'train_done.json'), done, indent=1)
    return done


def _train_and_test(ctx: StageContext, stage: dict, wd: str,
                    seed: Optional[int], label: str, inputs: dict,
                    device: str, slot: int, old: Optional[dict]) -> dict:
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
            done = read_json(done_path)
            ctx.say(f'{label}: training finished before ({done_path})')
        else:
            status.set_phase('training')
            done = _train(ctx, stage, wd, seed, label, init_ckpt, device,
                          slot, old, env, on_line)
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
        test_cpu = ctx.run(test_cmd, log_path, ctx.quiet, env, on_line,
                           ctx.procs)
        test_seconds = time.time() - t0
        metrics = read_json(metrics_file)
    finally:
        ctx.console.remove(key)
    result = dict(
        name=name,
        seed=seed,
        config=stage['config'],
        task=inputs['task'],
        device=done.get('device', device),
        init_from=stage.get('init_from'),
        reparam=stage.get('reparam'),  # the arm (arms.py), None: none
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
    atomic_write_json(osp.join(wd, 'stage_result.json'), result, indent=1)
    ctx.say(f'{label}: done in {result["train_seconds"] + test_seconds:.0f} s'
            f'{_headline(metrics)}')
    return result


def _round(v):
    return None if v is None else round(v, 1)


def _headline(metrics: dict) -> str:
    vals = [(c, _metric(metrics, keys)) for c, keys in METRIC_COLUMNS]
    vals = [f'{c} {v:.1f}' for c, v in vals if v is not None]
    return (': ' + ', '.join(vals)) if vals else ''
