"""mmpretrain model parts of sgs_mm (needs mmpretrain).

Importing this package registers them in mmpretrain's ``MODELS`` registry
(``custom_imports = dict(imports=['sgs_mm', 'sgs_mm.classifiers'])``):

- ``ReparamImageClassifier``: an ``ImageClassifier`` whose backbone trains
  with ACB / RepVGG / DBB blocks (:mod:`sgs_mm.reparam`) and whose
  checkpoints, with ``FusedCheckpointHook``, hold the fused plain network.
"""
from .reparam_image_classifier import ReparamImageClassifier, reparam_settings

__all__ = ['ReparamImageClassifier', 'reparam_settings']
