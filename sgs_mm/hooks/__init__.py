from .fused_checkpoint_hook import FusedCheckpointHook
from .spatial_grad_scaling_hook import SpatialGradScalingHook

__all__ = ['SpatialGradScalingHook', 'FusedCheckpointHook']
