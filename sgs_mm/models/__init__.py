"""Model parts the paper recipes need that OpenMMLab does not ship (mmseg).

Importing this package registers them in mmseg's ``MODELS`` registry
(``custom_imports = dict(imports=['sgs_mm.models'])``); it needs mmseg.

- ``SemSegPSPHead``: PSPNet's head as SemSeg builds it (PPM branch width,
  PyTorch default init).
- ``TorchDefaultInitFCNHead``: ``FCNHead`` with PyTorch default init
  (SemSeg's auxiliary head).
- ``FullyDilatedResNet``: ResNet whose BasicBlocks dilate both 3x3 convs.
- ``SoftmaxSlideEncoderDecoder``: sliding-window test averaging softmax
  probabilities (optionally with each window's flip), as SemSeg tests.
"""
from .fully_dilated_resnet import FullyDilatedResNet
from .semseg_psp_head import SemSegPSPHead
from .softmax_slide_encoder_decoder import SoftmaxSlideEncoderDecoder
from .torch_default_init import TorchDefaultInitMixin, reset_to_torch_defaults
from .torch_default_init_fcn_head import TorchDefaultInitFCNHead

__all__ = ['SemSegPSPHead', 'TorchDefaultInitFCNHead', 'FullyDilatedResNet',
           'SoftmaxSlideEncoderDecoder', 'TorchDefaultInitMixin',
           'reset_to_torch_defaults']
