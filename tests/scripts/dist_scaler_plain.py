"""SpatialGradScaler under torchrun with plain DDP and no mmengine (gloo, CPU).

Both ranks build the same small net, wrap it in DistributedDataParallel and
refresh on their own (rank-dependent) batch. Each rank saves its G and batch;
rank 0 also the weights, so one process can recompute G on the union.

    torchrun --nproc_per_node=2 tests/scripts/dist_scaler_plain.py OUT_DIR
"""
import os
import sys


class _NoOpenMMLab:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('mmengine', 'mmcv', 'mmseg', 'mmpose', 'mmpretrain'):
            raise ImportError(f'{name} is blocked in this test')


sys.meta_path.insert(0, _NoOpenMMLab())
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402

from sgs_mm.sgs import SpatialGradScaler  # noqa: E402
from test_scaler import Net, smooth_batch  # noqa: E402


def main(out_dir):
    dist.init_process_group('gloo')
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = DistributedDataParallel(Net())
    sgs = SpatialGradScaler(model)
    sgs.attach(torch.optim.SGD(model.parameters(), lr=0.1))
    batch = smooth_batch(n=3, seed=100 + rank)
    sgs.refresh([batch])
    mm = sorted(m for m in sys.modules if m.split('.')[0] in ('mmengine', 'mmcv'))
    torch.save(dict(scales=sgs.scales(), batch=batch, mm_modules=mm,
                    model=model.module.state_dict()), os.path.join(out_dir, f'rank{rank}.pt'))
    dist.destroy_process_group()


if __name__ == '__main__':
    main(sys.argv[1])
