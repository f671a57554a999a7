"""The SGS engine (torch only): estimators, G, its application, and
:class:`SpatialGradScaler`, which puts them together for any training loop."""
from .apply import ScalingApplier
from .autocorr import AutocorrStats
from .collect import collect_dependence
from .geometry import PairGeometry, half_window
from .layers import find_sgs_layers, unwrap_model
from .nmi import NMIStats
from .options import SGSOptions
from .scaler import RefreshReport, SpatialGradScaler
from .state_checks import InvalidSGSState
from .scaling import k_transform, scaling_from_dependence, window_from_half
from .static_scalings import fixed_scaling, reparam_scaling

__all__ = [
    'SpatialGradScaler', 'RefreshReport', 'InvalidSGSState', 'SGSOptions', 'ScalingApplier',
    'AutocorrStats',
    'collect_dependence', 'PairGeometry', 'half_window', 'find_sgs_layers', 'unwrap_model',
    'NMIStats', 'k_transform', 'scaling_from_dependence', 'window_from_half', 'fixed_scaling',
    'reparam_scaling'
]
