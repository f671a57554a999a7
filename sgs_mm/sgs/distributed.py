"""All-reduce and broadcast many tensors with one collective per op, dtype and device."""
from typing import Callable, List, Tuple

import torch
import torch.distributed as dist

from .dependence_base import MAX, MIN, SUM

_OPS = {SUM: 'SUM', MIN: 'MIN', MAX: 'MAX'}


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@torch.no_grad()
def _coalesced(tensors: List[torch.Tensor], collective: Callable[[torch.Tensor], None]) -> None:
    """Run ``collective`` in place on one flat buffer holding ``tensors`` (one
    dtype and device), then copy the result back. With gloo the buffer lives
    on the CPU; with nccl on the GPU."""
    device = tensors[0].device
    flat = torch.cat([t.reshape(-1) for t in tensors])
    backend = dist.get_backend()
    if backend == 'gloo' and flat.device.type != 'cpu':
        flat = flat.cpu()
    elif backend == 'nccl' and flat.device.type == 'cpu':
        flat = flat.cuda()
    collective(flat)
    flat = flat.to(device)
    offset = 0
    for t in tensors:
        t.copy_(flat[offset:offset + t.numel()].view_as(t))
        offset += t.numel()


def all_reduce_many(items: List[Tuple[torch.Tensor, str]]) -> None:
    """In-place all-reduce of ``(tensor, op)`` pairs across ranks.

    Tensors of the same op, dtype and device share one buffer, so a refresh
    costs a handful of collectives whatever the number of layers. No-op
    outside a multi-process run.
    """
    if not items or not is_distributed():
        return
    groups = {}
    for t, op in items:
        groups.setdefault((op, t.dtype, t.device), []).append(t)
    for (op, _, _), tensors in groups.items():
        reduce_op = getattr(dist.ReduceOp, _OPS[op])
        _coalesced(tensors, lambda flat, reduce_op=reduce_op: dist.all_reduce(flat, op=reduce_op))


def broadcast_from_rank0(tensors: List[torch.Tensor]) -> None:
    """Give every rank global rank 0's values of ``tensors`` (in place), one
    broadcast per dtype and device. No-op outside a multi-process run."""
    if not tensors or not is_distributed():
        return
    groups = {}
    for t in tensors:
        groups.setdefault((t.dtype, t.device), []).append(t)
    for group in groups.values():
        _coalesced(group, lambda flat: dist.broadcast(flat, src=0))
