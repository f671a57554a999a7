"""Sharded models (FSDP2 ``fully_shard``) around a refresh."""
import torch.nn as nn


def _fsdp2_module_type():
    for where in ('torch.distributed.fsdp', 'torch.distributed._composable.fsdp'):
        try:
            module = __import__(where, fromlist=['FSDPModule'])
        except ImportError:
            continue
        cls = getattr(module, 'FSDPModule', None)
        if isinstance(cls, type):
            return cls
    return None


def reshard_fsdp2(model: nn.Module) -> int:
    """Free the gathered weights FSDP2 keeps after a forward without backward.

    FSDP2 leaves the root module's parameters gathered after its forward (the
    backward would need them again). A refresh runs forwards only, so without
    this the module would hold full, unsharded Parameters afterwards: an
    optimizer or a checkpoint taken from ``model.parameters()`` then would see
    those instead of the shards.

    Args:
        model: the model the refresh ran on.

    Returns:
        int: how many FSDP2 modules were resharded.
    """
    cls = _fsdp2_module_type()
    if cls is None:
        return 0
    sharded = [m for m in model.modules() if isinstance(m, cls)]
    for m in sharded:
        m.reshard()
    return len(sharded)
