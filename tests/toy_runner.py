"""A tiny real mmengine setup (model + dataset) for hook tests."""
import copy
import os
import uuid

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.dataset import BaseDataset
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, MODELS


@MODELS.register_module(force=True)
class SGSToyNet(BaseModel):
    """conv3x3 -> BN -> ReLU -> dilated conv3x3 -> conv5x5(stride 2) -> 1x1 -> pool -> fc."""

    def __init__(self, num_classes=3, data_preprocessor=None):
        super().__init__(data_preprocessor=data_preprocessor)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=2, dilation=2)
        self.conv3 = nn.Conv2d(8, 8, 5, stride=2, padding=2, groups=2)
        self.proj = nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        x = F.relu(self.bn1(self.conv1(inputs)))
        x = F.relu(self.conv2(x))
        x = F.relu(self.conv3(x))
        x = self.proj(x).mean(dim=(2, 3))
        logits = self.fc(x)
        if mode == 'loss':
            return dict(loss=F.cross_entropy(logits, data_samples))
        if mode == 'predict':
            return logits.argmax(1)
        return logits


@DATASETS.register_module(force=True)
class SGSToyDataset(BaseDataset):
    """Deterministic smooth images with 3 classes (no random transforms)."""

    def __init__(self, size=24, length=32, **kwargs):
        self.size, self.length = size, length
        super().__init__(serialize_data=False, lazy_init=False, **kwargs)

    def load_data_list(self):
        return [dict(idx=i) for i in range(self.length)]

    def get_data_info(self, idx):
        return dict(idx=idx)

    def prepare_data(self, idx):
        g = torch.Generator().manual_seed(idx)
        img = torch.randn(3, self.size, self.size, generator=g)
        img = F.avg_pool2d(img[None], 5, 1, 2)[0] * 3
        label = idx % 3
        img[label] += 1.0
        return dict(inputs=img, data_samples=torch.tensor(label))


def toy_collate(batch):
    return dict(inputs=torch.stack([b['inputs'] for b in batch]),
                data_samples=torch.stack([b['data_samples'] for b in batch]))


def toy_cfg(work_dir, hook=None, by_epoch=True, max_epochs=4, max_iters=16, optim_wrapper=None,
            batch_size=4, **extra):
    """Config dict for ``Runner.from_cfg`` training SGSToyNet."""
    train_cfg = (dict(by_epoch=True, max_epochs=max_epochs) if by_epoch else
                 dict(type='IterBasedTrainLoop', max_iters=max_iters))
    default_hooks = dict(
        checkpoint=dict(type='CheckpointHook', interval=1 if by_epoch else 4,
                        by_epoch=by_epoch, max_keep_ckpts=-1),
        logger=dict(type='LoggerHook', interval=1000))
    cfg = dict(
        model=dict(type='SGSToyNet'),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=dict(type='SGSToyDataset'),
            sampler=dict(type='DefaultSampler', shuffle=True),
            collate_fn=dict(type='sgs_toy_collate'),
            batch_size=batch_size, num_workers=0),
        optim_wrapper=optim_wrapper or dict(
            optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=1e-4)),
        train_cfg=train_cfg,
        custom_hooks=[hook] if hook else [],
        default_hooks=default_hooks,
        custom_imports=dict(imports=['sgs_mm'], allow_failed_imports=False),
        randomness=dict(seed=0, deterministic=False),
        env_cfg=dict(dist_cfg=dict(backend='gloo')),
        log_level='WARNING',
        default_scope=None,
        # mmengine names its logger and visualizer singletons after the
        # start-up second; runners built in the same second would otherwise
        # share them (and write each other's log and scalars files)
        experiment_name=f'sgs_toy_{uuid.uuid4().hex[:12]}',
    )
    cfg.update(extra)
    return copy.deepcopy(cfg)


def build_runner(work_dir, hook=None, **kwargs):
    """A real mmengine Runner training SGSToyNet (``toy_cfg``'s arguments)."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    return Runner.from_cfg(Config(toy_cfg(work_dir, hook=hook, **kwargs)))


def sgs_hook(runner):
    """The runner's SpatialGradScalingHook."""
    from sgs_mm import SpatialGradScalingHook
    return next(h for h in runner.hooks if isinstance(h, SpatialGradScalingHook))


def history(work_dir) -> dict:
    """The G history the hook wrote in ``work_dir`` (header keys + records)."""
    from sgs_mm.analysis.history import HISTORY_FILE, read_history_raw
    return read_history_raw(os.path.join(str(work_dir), HISTORY_FILE))


def records(work_dir) -> list:
    """The refresh records of the G history in ``work_dir``."""
    return history(work_dir)['records']


def is_ones(g) -> bool:
    """``g`` is all ones: no G (or G = 1) for that layer."""
    import torch
    return torch.equal(g, torch.ones_like(g))


class Messages:
    """What the runner's logger says (the hook and engine log through it):
    ``info`` and ``warning`` list the messages of each level."""

    def __init__(self, runner):
        self.info, self.warning = [], []
        for level in ('info', 'warning'):
            orig = getattr(runner.logger, level)
            setattr(runner.logger, level,
                    lambda msg, *a, _l=getattr(self, level), _o=orig, **k: (_l.append(msg),
                                                                             _o(msg, *a, **k)))

    def warned(self, text):
        return [m for m in self.warning if text in m]


def refresh_and_save_rank_result(runner, out_dir: str, **extra) -> None:
    """Under torchrun, after ``runner.train()``: one more SGS refresh on
    explicitly drawn, rank-dependent batches, then ``rank<R>.pt`` with G after
    training (``trained_g``), G of that refresh (``refresh_g``) and ``extra``;
    rank 0 adds the weights and the union of every rank's batches, so that a
    single process can recompute G on exactly the same samples.

    DDP with ``broadcast_buffers=False`` leaves each rank its BatchNorm
    statistics: every rank takes rank 0's first, so the refresh sees one
    model, as a single process would.
    """
    import torch.distributed as dist

    import sgs_mm
    from sgs_mm.hooks.refresh_batches import draw_batches
    rank = dist.get_rank()
    hook = next(h for h in runner.hooks if isinstance(h, sgs_mm.SpatialGradScalingHook))
    trained_g = hook.scales()
    model = runner.model.module if hasattr(runner.model, 'module') else runner.model
    for buf in model.buffers():
        dist.broadcast(buf, src=0)
    batches = draw_batches(runner.train_dataloader, 2, seed=777)
    hook.refresh(runner, step=1000, batches=batches)
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, batches)
    result = dict(trained_g=trained_g, refresh_g=hook.scales(), rank=rank,
                  n_samples=sum(len(b['inputs']) for b in batches), **extra)
    if rank == 0:
        result['state_dict'] = {k: v.detach().cpu().clone()
                                for k, v in model.state_dict().items()}
        result['union_batches'] = [b for rank_batches in gathered for b in rank_batches]
    torch.save(result, os.path.join(out_dir, f'rank{rank}.pt'))


def _register_collate():
    from mmengine.registry import FUNCTIONS
    if 'sgs_toy_collate' not in FUNCTIONS.module_dict:
        FUNCTIONS.register_module(name='sgs_toy_collate', module=toy_collate)


_register_collate()
os.environ.setdefault('OMP_NUM_THREADS', '1')
