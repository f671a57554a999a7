"""sgs_mm: Spatial Gradient Scaling (ICLR 2023) for OpenMMLab.

Importing the package registers :class:`SpatialGradScalingHook` in mmengine's
root ``HOOKS`` registry (``custom_imports = dict(imports=['sgs_mm'])``).
"""
__version__ = '0.1.0'

from . import compat  # noqa: E402,F401  (torch.load allow-list, CPU dist)

from .hooks import SpatialGradScalingHook  # noqa: E402,F401

__all__ = ['SpatialGradScalingHook', '__version__']
