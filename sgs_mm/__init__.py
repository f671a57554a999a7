"""sgs_mm: Spatial Gradient Scaling (ICLR 2023) for PyTorch and OpenMMLab.

``sgs_mm.sgs.SpatialGradScaler`` needs torch only. Where mmengine is
installed, importing the package also registers :class:`SpatialGradScalingHook`
in mmengine's root ``HOOKS`` registry (``custom_imports =
dict(imports=['sgs_mm'])``) and the checkpoint-loading fix for torch >= 2.6.
"""
__version__ = '0.1.0'
__all__ = ['__version__']

try:
    import mmengine  # noqa: F401
except ImportError:  # the torch-only engine (pip install sgs_mm without extras)
    pass
else:
    from . import compat  # noqa: F401  (torch.load allow-list, CPU dist)
    from .hooks import SpatialGradScalingHook  # noqa: F401
    __all__.append('SpatialGradScalingHook')
