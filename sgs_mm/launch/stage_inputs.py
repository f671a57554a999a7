"""Checking every input of a pipeline stage -- its config, its data, the
checkpoint it starts from -- before anything of the stage is touched."""
import json
import os.path as osp
import threading
from typing import Optional, Tuple

from .stage_paths import _inside, resolve_stored

TASK_OF_SCOPE = {'mmpretrain': 'cls', 'mmseg': 'seg', 'mmpose': 'pose'}
DEFAULT_INIT_KEY = 'model.backbone.init_cfg.checkpoint'

__all__ = ['StageInputError', 'TASK_OF_SCOPE', 'DEFAULT_INIT_KEY',
           'stage_inputs', 'stage_config', 'schedule_of', 'read_json']


class StageInputError(RuntimeError):
    """An input of a stage (config, data, initial checkpoint) is missing;
    raised before anything of the stage is touched."""


def _arm_options(stage, cfg):
    """:func:`sgs_mm.launch.arms.arm_options` (imported here: it raises
    :class:`StageInputError`)."""
    from .arms import arm_options
    return arm_options(stage, cfg)


def read_json(path):
    with open(path) as f:
        return json.load(f)


_CONFIG_LOCK = threading.Lock()


def stage_config(config: str, opts: dict):
    """The stage's resolved config (with its cfg options)."""
    from mmengine.config import Config
    # mmengine's config loading (package lookups for ``mmseg::`` bases) is
    # not thread-safe: one config at a time when stages run side by side
    with _CONFIG_LOCK:
        cfg = Config.fromfile(config)
        if opts:
            cfg.merge_from_dict(dict(opts))
    return cfg


def schedule_of(cfg) -> Tuple[Optional[int], Optional[str]]:
    """The training length of a config: ``(max_iters, 'iter')``,
    ``(max_epochs, 'epoch')`` or ``(None, None)``."""
    tc = cfg.get('train_cfg') or {}
    if tc.get('type', '') == 'IterBasedTrainLoop' or (
            'max_iters' in tc and 'max_epochs' not in tc):
        return tc.get('max_iters'), 'iter'
    if 'max_epochs' in tc:
        return tc.get('max_epochs'), 'epoch'
    return None, None


def _init_checkpoint(ctx, stage: dict, sroot: str, name: str
                     ) -> Optional[str]:
    """The checkpoint the stage starts from (``init_from``), checked."""
    src = stage.get('init_from')
    if not src:
        return None
    res_path = osp.join(sroot, src, 'stage_result.json')
    if ctx.dry_run and not osp.isfile(res_path):
        return f'<{src} final checkpoint>'
    if not osp.isfile(res_path):
        raise StageInputError(
            f'stage {name} initialises from {src}, which has not '
            f'finished ({res_path} missing)')
    r = read_json(res_path)
    # the final checkpoint unless the spec asks for the best one
    # (selected on the validation split)
    key = 'best_checkpoint' if stage.get(
        'init_ckpt', 'last') == 'best' and r.get(
            'best_checkpoint') else 'last_checkpoint'
    init_ckpt = resolve_stored(ctx.root, r.get(key), osp.join(sroot, src),
                               f'{src}\'s checkpoint', ctx.say)
    if not init_ckpt or not osp.isfile(init_ckpt):
        raise StageInputError(
            f'stage {name} initialises from {src}\'s '
            f'{key.split("_")[0]} checkpoint {init_ckpt}, which does '
            f'not exist (rerun {src}, e.g. --stages {src} --force)')
    return init_ckpt


def stage_inputs(ctx, stage: dict, sroot: str, seed: Optional[int],
                 name: str) -> dict:
    """Check every input of a stage -- its config, its data, the checkpoint
    it starts from -- before anything of it is touched. Raises
    :class:`StageInputError` naming what is missing. ``ctx`` is the run's
    :class:`~sgs_mm.launch.stage_run.StageContext`.

    Returns ``dict(init_ckpt, task, total, unit, stage)``: ``stage`` is the
    entry to run, its arm (:mod:`sgs_mm.launch.arms`) turned into config
    options."""
    config = stage['config']
    if not osp.isfile(config):
        raise StageInputError(f'stage {name}: config {config} not found')
    init_ckpt = _init_checkpoint(ctx, stage, sroot, name)
    opts = dict(ctx.cfg_options or {})
    opts.update(stage.get('cfg_options') or {})
    if seed is not None:
        opts['randomness.seed'] = seed
    init_key = stage.get('init_key', DEFAULT_INIT_KEY)
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
        cfg = stage_config(config, opts)
        arm = _arm_options(stage, cfg)  # the stage's reparam arm, if any
        if arm:
            cfg.merge_from_dict(arm)
    except StageInputError:
        raise
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
    total, unit = schedule_of(cfg)
    if arm:  # the arm's options first: the spec's own options win
        stage = dict(stage, cfg_options=dict(
            arm, **(stage.get('cfg_options') or {})))
    return dict(init_ckpt=init_ckpt, task=TASK_OF_SCOPE.get(scope,
                                                            scope or '?'),
                total=total, unit=unit, stage=stage)
