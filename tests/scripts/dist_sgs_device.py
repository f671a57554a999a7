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
from sgs_mm.hooks.refresh_batches import draw_batches  # noqa: E402
from toy_runner import toy_cfg  # noqa: E402

HOOK = dict(type='SpatialGradScalingHook', unit='epoch', interval=5, warmup=1, num_batches=2)


def main(out_dir, device):
    assert device in ('cpu', 'cuda'), device
    assert torch.cuda.is_available() == (device == 'cuda'), (device, torch.cuda.is_available())
    dist.init_process_group('gloo')
    rank = dist.get_rank()
    wrapper = dict(type='MMDistributedDataParallel', broadcast_buffers=False,
                   device_ids=[0] if device == 'cuda' else None)
    cfg = Config(toy_cfg(os.path.join(out_dir, 'work'), hook=HOOK, max_epochs=2,
                         launcher='pytorch', model_wrapper_cfg=wrapper))
    runner = Runner.from_cfg(cfg)
    runner.train()
    hook = next(h for h in runner.hooks if isinstance(h, sgs_mm.SpatialGradScalingHook))
    trained_g = hook.scales()
    model = runner.model.module if hasattr(runner.model, 'module') else runner.model
    # broadcast_buffers=False leaves each rank its BatchNorm statistics: give
    # every rank rank 0's, so the refresh sees one model as one process would
    for buf in model.buffers():
        dist.broadcast(buf, src=0)
    batches = draw_batches(runner.train_dataloader, 2, seed=777)  # rank-dependent samples
    hook.refresh(runner, step=1000, batches=batches)
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, batches)
    result = dict(trained_g=trained_g, refresh_g=hook.scales(), rank=rank,
                  backend=dist.get_backend(),
                  model_device=str(next(model.parameters()).device),
                  g_device=str(next(iter(hook.applier.scales.values())).device))
    if rank == 0:
        result['state_dict'] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        result['union_batches'] = [b for rank_batches in gathered for b in rank_batches]
    torch.save(result, os.path.join(out_dir, f'rank{rank}.pt'))
    dist.destroy_process_group()


if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2])
