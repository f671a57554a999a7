"""All-reduce many statistics tensors with one collective per operation."""
from typing import List, Tuple

import torch
import torch.distributed as dist

from .dependence_base import MAX, MIN, SUM

_OPS = {SUM: 'SUM', MIN: 'MIN', MAX: 'MAX'}


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_many(items: List[Tuple[torch.Tensor, str]]) -> None:
    """In-place all-reduce of ``(tensor, op)`` pairs across ranks.

    Tensors of the same op and dtype are flattened into one buffer so a
    refresh costs a handful of collectives whatever the number of layers. With
    gloo the buffer is reduced on the CPU; with nccl on the tensors' device.
    No-op outside a multi-process run.
    """
    if not items or not is_distributed():
        return
    backend = dist.get_backend()
    groups = {}
    for t, op in items:
        groups.setdefault((op, t.dtype, t.device), []).append(t)
    for (op, _, device), tensors in groups.items():
        flat = torch.cat([t.reshape(-1) for t in tensors])
        if backend == 'gloo' and flat.device.type != 'cpu':
            flat = flat.cpu()
        elif backend == 'nccl' and flat.device.type == 'cpu':
            flat = flat.cuda()
        dist.all_reduce(flat, op=getattr(dist.ReduceOp, _OPS[op]))
        flat = flat.to(device)
        offset = 0
        for t in tensors:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()


@torch.no_grad()
def broadcast_from_rank0(tensors: List[torch.Tensor]) -> None:
    """Give every rank global rank 0's values of ``tensors`` (in place), one
    broadcast per dtype and device. No-op outside a multi-process run."""
    if not tensors or not is_distributed():
        return
    backend = dist.get_backend()
    groups = {}
    for t in tensors:
        groups.setdefault((t.dtype, t.device), []).append(t)
    for (_, device), group in groups.items():
        flat = torch.cat([t.reshape(-1) for t in group])
        if backend == 'gloo' and flat.device.type != 'cpu':
            flat = flat.cpu()
        elif backend == 'nccl' and flat.device.type == 'cpu':
            flat = flat.cuda()
        dist.broadcast(flat, src=0)
        flat = flat.to(device)
        offset = 0
        for t in group:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()
