"""The command lines and the environment of a pipeline stage's train and
test processes (``tools/train.py`` / ``tools/test.py``, under ``torchrun``,
``srun`` or ``mpirun`` for a distributed launcher)."""
import os
import os.path as osp
import sys
from typing import Dict, List, Optional

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# Library warnings every stage process would print again (at import time);
# filtered by message in the stage's environment only.
STAGE_WARNING_FILTERS = (
    'ignore:pkg_resources is deprecated as an API:UserWarning',
)

__all__ = ['REPO', 'STAGE_WARNING_FILTERS', 'stage_commands', 'stage_env',
           'device_label', 'cuda_visible']


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


def cuda_visible(env: Optional[Dict[str, str]]) -> bool:
    """Whether the stage processes (with ``env`` added) will see a GPU."""
    if env is not None and env.get('CUDA_VISIBLE_DEVICES', None) in ('', '-1'):
        return False
    try:
        import torch
        return torch.cuda.is_available()
    except Exception:  # pragma: no cover
        return False
