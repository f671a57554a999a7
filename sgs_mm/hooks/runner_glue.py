"""What the SGS hook needs from an mmengine Runner: model, optimizers, loop, forward."""
from typing import Callable, List

import torch
from mmengine.model import is_model_wrapper


def unwrapped_model(runner) -> torch.nn.Module:
    """The model inside the runner's DDP wrapper.

    Raises:
        ValueError: the runner shards the model with FSDP or DeepSpeed
            (FlexibleRunner strategies), under which SGS cannot scale.
    """
    from ..sgs.sharding import refuse_unsupported_wrappers
    model = runner.model
    refuse_unsupported_wrappers(model, owner='SpatialGradScalingHook')
    return model.module if is_model_wrapper(model) else model


def optimizers_of(runner) -> List[torch.optim.Optimizer]:
    """The optimizer(s) of ``runner.optim_wrapper`` (``OptimWrapperDict`` too)."""
    from mmengine.optim import OptimWrapperDict
    wrapper = runner.optim_wrapper
    if isinstance(wrapper, OptimWrapperDict):
        return [w.optimizer for w in wrapper.values()]
    return [wrapper.optimizer]


def loop_counts_epochs(runner) -> bool:
    """True for epoch-based train loops (mmengine calls ``before_train_epoch``)."""
    from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop
    loop = runner.train_loop
    if isinstance(loop, (EpochBasedTrainLoop, IterBasedTrainLoop)):
        return isinstance(loop, EpochBasedTrainLoop)
    return hasattr(loop, 'max_epochs')


def model_forward(mode: str) -> Callable:
    """``forward(model, batch)``: the data_preprocessor in training mode (the
    padding and batch augments training sees), then ``model(..., mode=mode)``."""

    def forward(model, batch):
        data = model.data_preprocessor(batch, True)
        if isinstance(data, dict):
            return model(**data, mode=mode)
        return model(*data, mode=mode)
    return forward
