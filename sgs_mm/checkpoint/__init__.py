"""Checkpoint helpers: move pretrained ResNet backbones between libraries.

Importing this package registers the ``StrictPretrained`` weight initialiser
in mmengine's root registry.
"""
from .backbone_state import (BackboneKeyMismatch, StrictPretrainedInit,
                             convert_backbone_state, extract_backbone_state,
                             load_backbone_strict, stem_style)

__all__ = [
    'BackboneKeyMismatch', 'StrictPretrainedInit', 'convert_backbone_state',
    'extract_backbone_state', 'load_backbone_strict', 'stem_style'
]
