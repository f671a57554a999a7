"""What tools/train.py and tools/test.py share: argument parsing in the
OpenMMLab conventions, scope dispatch (mmpretrain / mmseg / mmpose), CPU
adjustments (gloo, SyncBN -> BN) and Runner construction."""
import argparse
import importlib
import os
import os.path as osp
from typing import Optional

import torch

SCOPES = {
    'mmpretrain': 'mmpretrain.utils',
    'mmseg': 'mmseg.utils',
    'mmpose': 'mmpose.utils',
    'mmdet': 'mmdet.utils',
}

__all__ = [
    'add_common_args', 'register_scope', 'syncbn_to_bn', 'load_config',
    'setup_distributed', 'build_runner'
]


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=_dict_action(),
        help='override settings in the config, key=value pairs (xxx=yyy); '
        'e.g. custom_hooks.0.enabled=False switches SGS off')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch passes --local-rank (torch>=2) or --local_rank
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    parser.add_argument(
        '--skip-data-check',
        action='store_true',
        help='do not check the dataset paths before building the Runner')


def _dict_action():
    from mmengine.config import DictAction
    return DictAction


def register_scope(cfg) -> str:
    """Register the modules of the config's ``default_scope`` library."""
    scope = cfg.get('default_scope', None)
    if scope not in SCOPES:
        raise ValueError(
            f'default_scope={scope!r}: tools/train.py supports the configs of '
            f'{sorted(SCOPES)}')
    mod = importlib.import_module(SCOPES[scope])
    mod.register_all_modules(init_default_scope=True)
    return scope


def syncbn_to_bn(obj):
    """Replace ``SyncBN`` norm configs by ``BN`` (in place, recursively)."""
    if isinstance(obj, dict):
        if obj.get('type') in ('SyncBN', 'MMSyncBN'):
            obj['type'] = 'BN'
        for v in obj.values():
            syncbn_to_bn(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            syncbn_to_bn(v)
    return obj


def load_config(args, default_work_root: str = './work_dirs'):
    """Read the config, apply ``--cfg-options``, the launcher and the work
    dir, and register the modules of its scope."""
    import sgs_mm.checkpoint  # noqa: F401  (StrictPretrained initialiser)
    import sgs_mm.compat  # noqa: F401  (torch>=2.6 checkpoint loading)
    from mmengine.config import Config
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
        if 'custom_imports' in cfg:
            # mmengine imports them when it reads the file; imports added
            # with --cfg-options (e.g. by a pipeline arm) are imported here
            from mmengine.utils import import_modules_from_strings
            import_modules_from_strings(**cfg['custom_imports'])
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join(default_work_root,
                                osp.splitext(osp.basename(args.config))[0])
    register_scope(cfg)
    if not torch.cuda.is_available():
        # SyncBN needs CUDA; mmengine reverts it for non-distributed runs
        # only, so do it for every CPU run (incl. gloo multi-process).
        syncbn_to_bn(cfg.model)
    return cfg


def setup_distributed(cfg, launcher: str) -> None:
    """CPU + torchrun: init gloo and use a CPU DDP wrapper (no-op on GPU)."""
    if launcher == 'none' or torch.cuda.is_available():
        return
    try:
        from sgs_mm.compat.dist_cpu import (init_cpu_dist_if_needed,
                                            patch_cfg_for_cpu_dist)
    except ImportError:  # pragma: no cover - older checkout
        import torch.distributed as dist
        if not dist.is_initialized():
            dist.init_process_group('gloo')
        cfg.model_wrapper_cfg = dict(
            type='MMDistributedDataParallel',
            device_ids=None,
            broadcast_buffers=False)
        return
    if init_cpu_dist_if_needed(launcher):
        patch_cfg_for_cpu_dist(cfg, launcher)


def build_runner(cfg):
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    return RUNNERS.build(cfg)


def find_checkpoint(work_dir: str, prefer: str = 'best') -> Optional[str]:
    """``best_*.pth`` (when ``prefer='best'`` and present) else the file named
    in ``last_checkpoint`` (the one of that name in ``work_dir`` first), else
    None."""
    if not osp.isdir(work_dir):
        return None
    if prefer == 'best':
        best = sorted(f for f in os.listdir(work_dir)
                      if f.startswith('best_') and f.endswith('.pth'))
        if best:
            return osp.join(work_dir, best[-1])
    last = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(last):
        with open(last) as f:
            path = f.read().strip()
        if not path:
            return None
        # mmengine writes an absolute path; in a copied or moved work dir it
        # names the other tree, so the file of that name here comes first
        local = osp.join(work_dir, osp.basename(path))
        if osp.isfile(local):
            return local
        if osp.isfile(path):
            return path
    return None
