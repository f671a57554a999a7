"""Helpers that make ``--launcher pytorch`` (torchrun) work on CPU with gloo.

mmengine's ``_init_dist_pytorch`` always calls ``torch.cuda.set_device``, which
fails on a machine without an NVIDIA driver, and the Runner's default model
wrapper passes ``device_ids=[LOCAL_RANK]`` to ``DistributedDataParallel``,
which is wrong for CPU modules. On CPU we therefore

1. initialise the process group ourselves with the gloo backend *before* the
   Runner is built (the Runner then sees an initialised group and skips its own
   init), see :func:`init_cpu_dist_if_needed`;
2. wrap the model with ``MMDistributedDataParallel(device_ids=None,
   broadcast_buffers=False)``, see :func:`cpu_model_wrapper_cfg` and
   :func:`patch_cfg_for_cpu_dist`.

Where CUDA is available (nccl runs) both helpers do nothing.

Typical use in a training script::

    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if init_cpu_dist_if_needed(args.launcher):
        patch_cfg_for_cpu_dist(cfg)
    runner = Runner.from_cfg(cfg)
"""
import os
from typing import Optional

import torch
import torch.distributed as torch_dist

_TORCHRUN_VARS = ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')


def cpu_dist_needed(launcher: Optional[str]) -> bool:
    """Tell whether a run needs the CPU (gloo) distributed setup.

    Args:
        launcher (str | None): The launcher given to the training script
            (``'none'``, ``'pytorch'``, ``'slurm'``, ``'mpi'``).

    Returns:
        bool: True when the launcher is distributed and CUDA is unavailable.
    """
    return (launcher not in (None, 'none') and torch_dist.is_available()
            and not torch.cuda.is_available())


def init_cpu_dist_if_needed(launcher: Optional[str],
                            backend: str = 'gloo') -> bool:
    """Initialise ``torch.distributed`` with gloo on a CPU-only machine.

    Call it before building the Runner. It reads the variables torchrun sets
    (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) through the
    ``env://`` init method. It does nothing for ``launcher='none'``, when CUDA
    is available (mmengine's own nccl init is left untouched), or when a
    process group already exists.

    Args:
        launcher (str | None): The launcher of the run; only ``'pytorch'``
            (torchrun) is initialised here.
        backend (str): Backend for ``init_process_group``. Defaults to
            ``'gloo'``.

    Returns:
        bool: True if this is a CPU distributed run (the process group is
        initialised on return), False if nothing was done because the run is
        not distributed or has CUDA.

    Raises:
        NotImplementedError: For a distributed launcher other than
            ``'pytorch'`` on CPU.
        RuntimeError: If the torchrun environment variables are missing.
    """
    if not cpu_dist_needed(launcher):
        return False
    if torch_dist.is_initialized():
        return True
    if launcher != 'pytorch':
        raise NotImplementedError(
            f'CPU distributed training supports launcher="pytorch" '
            f'(torchrun) only, got {launcher!r}')
    missing = [k for k in _TORCHRUN_VARS if k not in os.environ]
    if missing:
        raise RuntimeError(
            f'launcher="pytorch" needs the torchrun environment; missing '
            f'{", ".join(missing)}. Start the script with torchrun.')
    torch_dist.init_process_group(
        backend=backend,
        init_method='env://',
        rank=int(os.environ['RANK']),
        world_size=int(os.environ['WORLD_SIZE']))
    return True


def cpu_model_wrapper_cfg() -> dict:
    """Return the model wrapper config for distributed training on CPU.

    Returns:
        dict: ``dict(type='MMDistributedDataParallel', device_ids=None,
        broadcast_buffers=False)``; ``device_ids=None`` overrides the Runner's
        default ``[LOCAL_RANK]``, which is only valid for CUDA modules.
    """
    return dict(
        type='MMDistributedDataParallel',
        device_ids=None,
        broadcast_buffers=False)


def patch_cfg_for_cpu_dist(cfg, launcher: Optional[str] = None):
    """Set ``cfg.model_wrapper_cfg`` for a CPU distributed run, in place.

    An existing ``model_wrapper_cfg`` keeps its type and other keys; only
    ``device_ids=None`` is forced (and ``broadcast_buffers=False`` added if
    absent). Nothing changes when CUDA is available or the run is not
    distributed.

    Args:
        cfg (mmengine.Config | dict): The run's config.
        launcher (str | None): The run's launcher. Defaults to
            ``cfg.get('launcher')``.

    Returns:
        mmengine.Config | dict: The same ``cfg`` object.
    """
    if launcher is None:
        launcher = cfg.get('launcher', 'none')
    if not cpu_dist_needed(launcher):
        return cfg
    wrapper = cfg.get('model_wrapper_cfg')
    if wrapper is None:
        cfg['model_wrapper_cfg'] = cpu_model_wrapper_cfg()
    else:
        wrapper = dict(wrapper)
        wrapper.setdefault('type', 'MMDistributedDataParallel')
        wrapper.setdefault('broadcast_buffers', False)
        wrapper['device_ids'] = None
        cfg['model_wrapper_cfg'] = wrapper
    return cfg
