"""Sharded models: FSDP2 (``fully_shard``) weights and refreshes, and the wrappers SGS refuses."""
import torch
import torch.nn as nn

from ..compat.versions import dtensor_type, fsdp2_module_type


def is_sharded(w: torch.Tensor) -> bool:
    """``w`` is a shard of a weight (a DTensor: FSDP2 ``fully_shard``)."""
    cls = dtensor_type()
    return cls is not None and isinstance(w, cls)


def local_shard(t: torch.Tensor) -> torch.Tensor:
    """The local shard of a DTensor (a view: in-place ops change it), else ``t``."""
    return t.to_local() if is_sharded(t) else t


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
    cls = fsdp2_module_type()
    if cls is None:
        return 0
    sharded = [m for m in model.modules() if isinstance(m, cls)]
    for m in sharded:
        m.reshard()
    return len(sharded)


def refuse_unsupported_wrappers(model: nn.Module, owner: str = 'SpatialGradScaler') -> None:
    """Raise for the sharding wrappers under which SGS would silently not scale.

    FSDP (``FullyShardedDataParallel``, what mmengine's ``FSDPStrategy``
    wraps with) flattens the weights into one buffer per wrapper: between
    steps a conv's ``weight`` is a slice of this rank's shard, not the KxK
    kernel SGS estimates G for. DeepSpeed's engine writes the gradients into
    its own partitioned buffers. FSDP2 (``fully_shard``) and DDP are supported.

    Raises:
        ValueError: ``model`` is, or contains, such a wrapper.
    """
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
    except ImportError:  # pragma: no cover - torch built without distributed
        FullyShardedDataParallel = ()
    for name, m in model.named_modules():
        kinds = [c.__name__ for c in type(m).__mro__]
        if isinstance(m, FullyShardedDataParallel):
            what = 'FSDP (FullyShardedDataParallel, e.g. mmengine FSDPStrategy)'
        elif 'DeepSpeedEngine' in kinds or 'MMDeepSpeedEngineWrapper' in kinds:
            what = 'DeepSpeed (e.g. mmengine DeepSpeedStrategy)'
        else:
            continue
        raise ValueError(
            f'{owner}: the model{f" ({name})" if name else ""} is wrapped by {what}, under '
            'which SGS cannot scale the KxK conv gradients (the weights are flattened into '
            'sharded buffers). Use DDP, or FSDP2 (torch.distributed.fsdp.fully_shard), which '
            'SGS supports: docs/without_openmmlab.md#sharded-training-fsdp2.')
