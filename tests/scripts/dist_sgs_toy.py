"""Distributed SGS refresh check, run under torchrun on CPU (gloo).

Trains the toy model of ``tests/toy_runner.py`` with SpatialGradScalingHook
for 2 epochs (refresh at epoch 1), then runs one more refresh on explicitly
drawn batches. Every rank writes ``rank<R>.pt``: its G after training, its G
from the explicit refresh; rank 0 also writes the model weights and the union
of all ranks' explicit batches, so a single process can recompute G on exactly
the same samples.

    torchrun --nproc_per_node=2 tests/scripts/dist_sgs_toy.py OUT_DIR
"""
import os
import sys

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.runner import Runner

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
import sgs_mm  # noqa: E402
from sgs_mm.compat.dist_cpu import init_cpu_dist_if_needed, patch_cfg_for_cpu_dist  # noqa: E402
from sgs_mm.hooks.refresh_batches import draw_batches  # noqa: E402
from toy_runner import toy_cfg  # noqa: E402

HOOK = dict(type='SpatialGradScalingHook', interval=5, warmup=1, num_batches=2)


def main(out_dir):
    init_cpu_dist_if_needed('pytorch')
    rank = dist.get_rank()
    cfg = Config(toy_cfg(os.path.join(out_dir, 'work'), hook=HOOK, max_epochs=2,
                         launcher='pytorch'))
    patch_cfg_for_cpu_dist(cfg)
    runner = Runner.from_cfg(cfg)
    runner.train()
    hook = next(h for h in runner.hooks if isinstance(h, sgs_mm.SpatialGradScalingHook))
    trained_g = hook.scales()
    # CPU DDP runs with broadcast_buffers=False, so BatchNorm running stats
    # differ per rank; give every rank rank 0's buffers so the refresh sees
    # one model, as a single process would.
    model = runner.model.module if hasattr(runner.model, 'module') else runner.model
    for buf in model.buffers():
        dist.broadcast(buf, src=0)
    batches = draw_batches(runner.train_dataloader, 2, seed=777)  # rank-dependent samples
    hook.refresh(runner, step=1000, batches=batches)
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, batches)
    result = dict(trained_g=trained_g, refresh_g=hook.scales(), rank=rank,
                  n_samples=sum(len(b['inputs']) for b in batches))
    if rank == 0:
        result['state_dict'] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        result['union_batches'] = [b for rank_batches in gathered for b in rank_batches]
    torch.save(result, os.path.join(out_dir, f'rank{rank}.pt'))
    dist.destroy_process_group()


if __name__ == '__main__':
    main(sys.argv[1])
