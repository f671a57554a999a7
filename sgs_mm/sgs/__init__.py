"""The SGS engine: spatial dependence estimators, G, and its application."""
from .apply import ScalingApplier
from .autocorr import AutocorrStats
from .collect import collect_dependence
from .geometry import PairGeometry, half_window
from .layers import find_sgs_layers
from .nmi import NMIStats
from .scaling import k_transform, scaling_from_dependence, window_from_half
from .static_scalings import fixed_scaling, reparam_scaling

__all__ = [
    'ScalingApplier', 'AutocorrStats', 'collect_dependence', 'PairGeometry', 'half_window',
    'find_sgs_layers', 'NMIStats', 'k_transform', 'scaling_from_dependence',
    'window_from_half', 'fixed_scaling', 'reparam_scaling'
]
