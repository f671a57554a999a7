"""Distributed SGS refresh check, run under torchrun on CPU (gloo).

Trains the toy model of ``tests/toy_runner.py`` with SpatialGradScalingHook
for 2 epochs (refresh at epoch 1), then runs one more refresh on explicitly
drawn batches. Every rank writes ``rank<R>.pt``: its G after training, its G
from the explicit refresh; rank 0 also writes the model weights and the union
of all ranks' explicit batches, so a single process can recompute G on exactly
the same samples (toy_runner.refresh_and_save_rank_result).

    torchrun --nproc_per_node=2 tests/scripts/dist_sgs_toy.py OUT_DIR
"""
import os
import sys

import torch.distributed as dist
from mmengine.config import Config
from mmengine.runner import Runner

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
import sgs_mm  # noqa: E402,F401  registers the hook
from sgs_mm.compat.dist_cpu import init_cpu_dist_if_needed, patch_cfg_for_cpu_dist  # noqa: E402
from toy_runner import refresh_and_save_rank_result, toy_cfg  # noqa: E402

HOOK = dict(type='SpatialGradScalingHook', interval=5, warmup=1, num_batches=2)


def main(out_dir):
    init_cpu_dist_if_needed('pytorch')
    cfg = Config(toy_cfg(os.path.join(out_dir, 'work'), hook=HOOK, max_epochs=2,
                         launcher='pytorch'))
    patch_cfg_for_cpu_dist(cfg)
    runner = Runner.from_cfg(cfg)
    runner.train()
    refresh_and_save_rank_result(runner, out_dir)
    dist.destroy_process_group()


if __name__ == '__main__':
    main(sys.argv[1])
