"""Two ranks of the toy SGS run on one device, gloo (tests/test_cuda_dist.py).

    torchrun --nproc_per_node=2 tests/scripts/dist_sgs_device.py OUT_DIR DEVICE

DEVICE 'cuda': both ranks put the model on the same GPU (cuda:0) and talk
gloo over CUDA tensors (DDP's gradient buckets, the SGS statistics), so the
multi-rank path runs on CUDA even on a one-GPU machine. DEVICE 'cpu': the
caller hides the GPUs (CUDA_VISIBLE_DEVICES=). The process group is
initialised here, before the Runner, so mmengine does not call
``torch.cuda.set_device(LOCAL_RANK)`` (rank 1 has no GPU 1).

Like tests/scripts/dist_sgs_toy.py, every rank writes ``rank<R>.pt`` (G after
training, G of one more refresh on explicitly drawn batches, the devices
used); rank 0 adds the weights and the union of both ranks' batches.
"""
import os
import sys

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.runner import Runner

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
import sgs_mm  # noqa: E402
from toy_runner import refresh_and_save_rank_result, toy_cfg  # noqa: E402

HOOK = dict(type='SpatialGradScalingHook', unit='epoch', interval=5, warmup=1, num_batches=2)


def main(out_dir, device):
    assert device in ('cpu', 'cuda'), device
    assert torch.cuda.is_available() == (device == 'cuda'), (device, torch.cuda.is_available())
    dist.init_process_group('gloo')
    wrapper = dict(type='MMDistributedDataParallel', broadcast_buffers=False,
                   device_ids=[0] if device == 'cuda' else None)
    cfg = Config(toy_cfg(os.path.join(out_dir, 'work'), hook=HOOK, max_epochs=2,
                         launcher='pytorch', model_wrapper_cfg=wrapper))
    runner = Runner.from_cfg(cfg)
    runner.train()
    hook = next(h for h in runner.hooks if isinstance(h, sgs_mm.SpatialGradScalingHook))
    model = runner.model.module if hasattr(runner.model, 'module') else runner.model
    refresh_and_save_rank_result(
        runner, out_dir, backend=dist.get_backend(),
        model_device=str(next(model.parameters()).device),
        g_device=str(next(iter(hook.applier.scales.values())).device))
    dist.destroy_process_group()


if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2])
