"""Compatibility fixes for the OpenMMLab stack on current torch and on CPU.

Importing this package (it is imported by ``sgs_mm``, e.g. through
``custom_imports=dict(imports=['sgs_mm'])``) registers the allow-list that makes
mmengine checkpoints load on torch >= 2.6, and adds ``np.in1d`` where numpy
>= 2.4 removed it (mmpretrain's retrieval metrics call it). The
distributed-on-CPU helpers are exported for training scripts to call.
Every branch on the torch version goes through :mod:`sgs_mm.compat.versions`
(e.g. :func:`load_weights_only`: the same restricted loading on torch 2.1 to
the newest).
"""
from .dist_cpu import (cpu_dist_needed, cpu_model_wrapper_cfg,
                       init_cpu_dist_if_needed, patch_cfg_for_cpu_dist)
from .numpy2 import apply_numpy2_fixes
from .torch_load import apply_torch_load_fix, safe_globals
from .versions import (OUT_OF_MEMORY_ERRORS, cpu_capability, grad_scaler,
                       load_weights_only, torch_version)

apply_torch_load_fix()
apply_numpy2_fixes()

__all__ = [
    'apply_torch_load_fix', 'apply_numpy2_fixes', 'safe_globals', 'cpu_dist_needed',
    'init_cpu_dist_if_needed', 'cpu_model_wrapper_cfg', 'patch_cfg_for_cpu_dist',
    'OUT_OF_MEMORY_ERRORS', 'cpu_capability', 'grad_scaler', 'load_weights_only',
    'torch_version'
]
