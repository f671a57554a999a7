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
        dict(name='pretrain_r18_dbb', config='configs/pretrain/...py',
             reparam='dbb',     # an arm: 'acb' | 'repvgg' | 'dbb' (arms.py)
             table=dict(model='ResNet-18', variant='DBB')),
    ]

A stage without its own ``enabled`` is left out with the stage it
initialises from. :func:`run_pipeline` takes the run's options as one
:class:`RunOptions`; the stages themselves run in :mod:`.stage_run`.

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
import os
import os.path as osp
from typing import Dict, Optional

from .pipeline_spec import load_spec, split_stage_options
from .progress import Console, StageStatus
from .results_tables import (METRIC_COLUMNS, _metric, markdown_tables,
                             write_tables)
from .run_options import RunOptions
from .stage_commands import REPO, device_label, stage_commands, stage_env
from .stage_inputs import StageInputError, read_json
from .stage_paths import from_root, resolve_stored, result_path, to_root
from .stage_run import (PRIMARY_METRICS, PROTOCOL, StageContext,
                        best_validation, run_stage)
from .stage_run import run_command as _run

__all__ = ['load_spec', 'split_stage_options', 'run_pipeline', 'RunOptions',
           'write_tables', 'stage_commands', 'markdown_tables',
           'best_validation', 'seed_work_root', 'stage_env', 'device_label',
           'result_path', 'to_root', 'from_root', 'resolve_stored',
           'StageInputError', 'Console', 'StageStatus', 'METRIC_COLUMNS',
           'PRIMARY_METRICS', 'PROTOCOL', 'REPO']


def seed_work_root(root: str, seed: Optional[int]) -> str:
    """Where one seed's chain lives: ``root`` itself for a single run
    (``seed=None``), ``root/seed<k>`` otherwise."""
    return root if seed is None else osp.join(root, f'seed{seed}')


def _stage_result_on_disk(sroot: str, name: str) -> Optional[dict]:
    path = osp.join(sroot, name, 'stage_result.json')
    return read_json(path) if osp.isfile(path) else None


def run_pipeline(spec: dict, options: Optional[RunOptions] = None,
                 **changes) -> dict:
    """Run (or skip) every stage, ``options.seeds`` times; return the
    results dict that :func:`write_tables` also writes (its paths relative
    to the work root: :func:`result_path` resolves them).

    ``options`` (a :class:`RunOptions`; default: its defaults) says how;
    keyword arguments change its fields (``run_pipeline(spec, seeds=3,
    jobs=2)``; an unknown name raises ``TypeError``).

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
    opts = (options or RunOptions()).replace(**changes)
    root = opts.work_root or spec['work_root']
    if not opts.dry_run:
        os.makedirs(root, exist_ok=True)
    seed_list = [None] if int(opts.seeds) == 1 else list(range(
        int(opts.seeds)))
    todo = []  # (seed, sroot, stage)
    for seed in seed_list:
        sroot = seed_work_root(root, seed)
        for stage in spec['stages']:
            if not opts.only or stage['name'] in opts.only:
                todo.append((seed, sroot, stage))
    console = opts.console or Console(0 if opts.dry_run else opts.progress)
    # ``_run`` is looked up here, at call time: the command runner
    ctx = StageContext(opts, root, console, len(todo), run=_run)
    done: Dict[tuple, Optional[dict]] = {}
    with console:
        if int(opts.jobs) <= 1 or opts.dry_run:
            for k, (seed, sroot, stage) in enumerate(todo, 1):
                if seed is not None and stage is spec['stages'][0]:
                    console.say(f'seed {seed}: {sroot}')
                done[(seed, stage['name'])] = run_stage(
                    ctx, stage, sroot, seed, k)
        else:
            _run_concurrently(ctx, todo, int(opts.jobs), done)
    results = []
    for seed in seed_list:
        sroot = seed_work_root(root, seed)
        for stage in spec['stages']:
            r = done.get((seed, stage['name']))
            if r is None and (seed, stage['name']) not in done:
                r = _stage_result_on_disk(sroot, stage['name'])
            if r is not None:
                results.append(r)
    out = dict(title=spec.get('title', ''), work_root=root,
               seeds=None if seed_list == [None] else seed_list,
               protocol=PROTOCOL, stages=results)
    if not opts.dry_run:
        write_tables(out, root)
    return out


def _run_concurrently(ctx: StageContext, todo: list, jobs: int, done: dict) -> None:
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
                        fut = pool.submit(run_stage, ctx, stage, sroot,
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
