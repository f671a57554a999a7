"""SpatialGradScaler under FSDP2 (``fully_shard``), torchrun, 2 gloo ranks on CPU.

Every rank refreshes G on its own batch (the distributed refresh), then trains
the sharded model for STEPS SGD steps (momentum, weight decay), each rank on its
own batch. Beside it, each rank trains an unsharded copy of the same initial
model on the concatenation of both ranks' batches (what the reduce-scatter's
mean gradient is), with the same G loaded into a scaler of its own. The rank
saves the gathered sharded weights, the unsharded ones, and the ones an
unscaled (G = 1) unsharded run reaches.

    torchrun --nproc_per_node=2 tests/scripts/dist_scaler_fsdp2.py OUT_DIR [update]
"""
import copy
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from sgs_mm.sgs import SpatialGradScaler  # noqa: E402
from test_scaler import Net, smooth_batch  # noqa: E402

STEPS = 3


def sgd(model):
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)


def train(model, batches, labels, sgs=None, steps=STEPS):
    opt = sgd(model)
    if sgs is not None:
        sgs.attach(opt)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(batches), labels).backward()
        opt.step()
    if sgs is not None:
        sgs.detach()


def gathered(model):
    out = {}
    for name, p in model.named_parameters():
        full = getattr(p, 'full_tensor', None)
        out[name] = (full() if callable(full) else p).detach().clone()
    return out


def main(out_dir, mode='grad'):
    from torch.distributed.fsdp import fully_shard
    dist.init_process_group('gloo')
    rank = dist.get_rank()
    torch.manual_seed(0)
    init = Net()
    batches = [smooth_batch(n=4, seed=200 + r) for r in range(2)]
    labels = [torch.tensor([0, 1, 2, r]) for r in range(2)]

    sharded = copy.deepcopy(init)
    for conv in (sharded.conv1, sharded.conv2):
        fully_shard(conv)
    fully_shard(sharded)
    sgs = SpatialGradScaler(sharded, mode=mode)
    sgs.refresh([batches[rank]])
    train(sharded, batches[rank], labels[rank], sgs)

    both, both_labels = torch.cat(batches), torch.cat(labels)
    plain = copy.deepcopy(init)
    ref = SpatialGradScaler(plain, mode=mode)
    ref.load_state_dict(sgs.state_dict())
    train(plain, both, both_labels, ref)
    unscaled = copy.deepcopy(init)
    train(unscaled, both, both_labels)

    torch.save(dict(sharded=gathered(sharded), plain=gathered(plain),
                    unscaled=gathered(unscaled),
                    scales={k: v.clone() for k, v in sgs.scales().items()},
                    fired=dict(sgs.applier.fired)),
               os.path.join(out_dir, f'rank{rank}.pt'))
    dist.destroy_process_group()


if __name__ == '__main__':
    main(*sys.argv[1:])
