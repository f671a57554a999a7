"""SpatialGradScaler under torchrun (gloo, CPU) when one rank runs out of memory.

Rank 1's estimator raises ``torch.OutOfMemoryError`` for large chunks
(``MODE=retry``: the first attempt only; ``MODE=always``: every attempt).
Every rank must retry, or give up, together: none may wait forever in a
collective the other left. Each rank saves its G and report.

    MODE=retry torchrun --nproc_per_node=2 tests/scripts/dist_scaler_oom.py OUT_DIR
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402

from sgs_mm.compat.versions import OutOfMemoryError  # noqa: E402
from sgs_mm.sgs import NMIStats, SpatialGradScaler  # noqa: E402
from test_scaler import Net, smooth_batch  # noqa: E402


def main(out_dir):
    dist.init_process_group('gloo')
    rank = dist.get_rank()
    mode = os.environ['MODE']
    if rank == 1:
        update = NMIStats.update

        def update_or_oom(self, pass_idx, x, padding=None):
            if mode == 'always' or self.max_elems >= 1 << 20:
                raise OutOfMemoryError('CUDA out of memory (simulated on rank 1)')
            return update(self, pass_idx, x, padding)
        NMIStats.update = update_or_oom
    torch.manual_seed(0)
    model = DistributedDataParallel(Net())
    sgs = SpatialGradScaler(model)
    batch = smooth_batch(n=3, seed=100 + rank)
    report = sgs.refresh([batch])
    torch.save(dict(scales=sgs.scales(), batch=batch, failed=report.failed,
                    refreshes=sgs.num_refreshes, model=model.module.state_dict()),
               os.path.join(out_dir, f'rank{rank}.pt'))
    dist.destroy_process_group()


if __name__ == '__main__':
    main(sys.argv[1])
