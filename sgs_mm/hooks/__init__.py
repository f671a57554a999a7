from .spatial_grad_scaling_hook import SpatialGradScalingHook

__all__ = ['SpatialGradScalingHook']
