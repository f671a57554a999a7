"""Compatibility fixes for the OpenMMLab stack on current torch and on CPU.

Importing this package (it is imported by ``sgs_mm``, e.g. through
``custom_imports=dict(imports=['sgs_mm'])``) registers the allow-list that makes
mmengine checkpoints load on torch >= 2.6. The distributed-on-CPU helpers are
exported for training scripts to call.
"""
from .dist_cpu import (cpu_dist_needed, cpu_model_wrapper_cfg,
                       init_cpu_dist_if_needed, patch_cfg_for_cpu_dist)
from .torch_load import apply_torch_load_fix, safe_globals

apply_torch_load_fix()

__all__ = [
    'apply_torch_load_fix', 'safe_globals', 'cpu_dist_needed',
    'init_cpu_dist_if_needed', 'cpu_model_wrapper_cfg', 'patch_cfg_for_cpu_dist'
]
