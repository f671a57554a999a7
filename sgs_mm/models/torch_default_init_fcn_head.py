"""mmseg's FCNHead with PyTorch's default initialisation."""
from mmseg.models.decode_heads.fcn_head import FCNHead
from mmseg.registry import MODELS

from .torch_default_init import TorchDefaultInitMixin


@MODELS.register_module()
class TorchDefaultInitFCNHead(TorchDefaultInitMixin, FCNHead):
    """``FCNHead`` whose convs and norms keep PyTorch's default init (mmseg
    initialises its convs Kaiming-normal and ``conv_seg`` Normal(0, 0.01)).
    With ``num_convs=1, concat_input=False`` it is SemSeg's auxiliary head:
    3x3 conv + BN + ReLU + Dropout2d + 1x1 conv, all PyTorch defaults."""
