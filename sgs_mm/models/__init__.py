"""Model parts the paper recipes need that OpenMMLab does not ship.

Importing this package registers them in the OpenMMLab registries
(``custom_imports = dict(imports=['sgs_mm.models'])``); it needs mmseg.
"""
from .semseg_psp_head import SemSegPSPHead

__all__ = ['SemSegPSPHead']
