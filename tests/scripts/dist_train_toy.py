"""Train a toy model with mmengine's Runner, optionally under torchrun on CPU.

Used by the tests to check that training, checkpointing and resuming work on
this torch (mmengine checkpoints need ``sgs_mm``'s torch.load allow-list) and
that ``--launcher pytorch`` works on CPU with gloo::

    python tests/scripts/dist_train_toy.py --work-dir W --max-epochs 2
    python tests/scripts/dist_train_toy.py --work-dir W --max-epochs 4 \
        --resume-from W/epoch_2.pth
    torchrun --nproc_per_node=2 tests/scripts/dist_train_toy.py \
        --launcher pytorch --work-dir W --max-epochs 2

The config is written to ``<work-dir>/toy_config.py`` and read back with
``Config.fromfile``, as a real training tool does, so ``custom_imports`` (which
imports ``sgs_mm``) is honoured. ``sgs_mm`` is not imported by this script for
``--launcher none``: the checkpoint fix must come from ``custom_imports``.
At the end every rank writes ``<work-dir>/result_rank<R>.json``.
"""
import argparse
import json
import os
import os.path as osp
import sys

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, MODELS
from mmengine.runner import Runner
from torch.utils.data import Dataset


@MODELS.register_module(name='SgsToyModel', force=True)
class ToyModel(BaseModel):
    """A tiny conv classifier (a 3x3 conv, as SGS scales)."""

    def __init__(self, num_classes: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, inputs, labels=None, mode='tensor'):
        x = torch.stack(inputs) if isinstance(inputs, (list, tuple)) else inputs
        logits = self.fc(torch.relu(self.conv(x)).mean((2, 3)))
        if mode == 'loss':
            labels = torch.as_tensor(labels)
            return dict(loss=nn.functional.cross_entropy(logits, labels))
        return logits


@DATASETS.register_module(name='SgsToyDataset', force=True)
class ToyDataset(Dataset):
    """Fixed random 3x8x8 images with labels from a fixed generator."""

    def __init__(self, n: int = 32, num_classes: int = 4):
        g = torch.Generator().manual_seed(1234)
        self.x = torch.randn(n, 3, 8, 8, generator=g)
        self.y = torch.randint(0, num_classes, (n, ), generator=g)
        self.metainfo = dict(classes=tuple(range(num_classes)))

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return dict(inputs=self.x[i], labels=int(self.y[i]))


def make_cfg(work_dir: str, max_epochs: int, resume_from: str = None,
             launcher: str = 'none') -> dict:
    """Return the toy run's config as a plain dict.

    Args:
        work_dir (str): Folder for checkpoints and logs.
        max_epochs (int): Total epochs of the run (resumed runs count from 0).
        resume_from (str, optional): Checkpoint to resume from.
        launcher (str): ``'none'`` or ``'pytorch'``.

    Returns:
        dict: A config for ``Runner.from_cfg``.
    """
    return dict(
        custom_imports=dict(imports=['sgs_mm'], allow_failed_imports=False),
        default_scope='mmengine',
        model=dict(type='SgsToyModel'),
        work_dir=work_dir,
        train_dataloader=dict(
            dataset=dict(type='SgsToyDataset', n=32),
            sampler=dict(type='DefaultSampler', shuffle=True, seed=0),
            collate_fn=dict(type='default_collate'),
            batch_size=4,
            num_workers=0),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        optim_wrapper=dict(
            optimizer=dict(type='SGD', lr=0.05, momentum=0.9)),
        # An explicit `end`: without it the scheduler ends at the first run's
        # max_epochs, and that end is restored on resume (mmengine behaviour).
        param_scheduler=dict(
            type='MultiStepLR', milestones=[3], by_epoch=True, begin=0,
            end=4),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=1),
            logger=dict(type='LoggerHook', interval=4)),
        randomness=dict(seed=0),
        env_cfg=dict(dist_cfg=dict(backend=os.environ.get('SGS_TOY_BACKEND', 'gloo'))),
        launcher=launcher,
        load_from=resume_from,
        resume=resume_from is not None)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', required=True)
    parser.add_argument('--max-epochs', type=int, default=2)
    parser.add_argument('--resume-from', default=None)
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch'], default='none')
    args = parser.parse_args(argv)

    rank = int(os.environ.get('RANK', 0))
    os.makedirs(args.work_dir, exist_ok=True)
    cfg_path = osp.join(args.work_dir, f'toy_config_rank{rank}.py')
    Config(make_cfg(args.work_dir, args.max_epochs, args.resume_from,
                    args.launcher)).dump(cfg_path)
    cfg = Config.fromfile(cfg_path)  # honours custom_imports -> sgs_mm
    assert 'sgs_mm' in sys.modules, 'custom_imports did not import sgs_mm'

    if args.launcher != 'none':
        from sgs_mm.compat import (init_cpu_dist_if_needed,
                                   patch_cfg_for_cpu_dist)
        if init_cpu_dist_if_needed(args.launcher):
            patch_cfg_for_cpu_dist(cfg, args.launcher)

    runner = Runner.from_cfg(cfg)
    runner.train()

    model = runner.model.module if hasattr(runner.model, 'module') \
        else runner.model
    result = dict(
        rank=runner.rank,
        world_size=runner.world_size,
        epoch=runner.epoch,
        iter=runner.iter,
        wrapper=type(runner.model).__name__,
        backend=(torch.distributed.get_backend()
                 if torch.distributed.is_initialized() else None),
        weights={k: v.double().sum().item()
                 for k, v in model.state_dict().items()})
    with open(osp.join(args.work_dir, f'result_rank{runner.rank}.json'),
              'w') as f:
        json.dump(result, f)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == '__main__':
    main()
