"""mmseg's ResNet with both 3x3 convs of every dilated BasicBlock dilated."""
from mmseg.models.backbones.resnet import BasicBlock, ResNet
from mmseg.registry import MODELS


@MODELS.register_module()
class FullyDilatedResNet(ResNet):
    """mmseg ``ResNet`` whose BasicBlocks dilate ``conv2`` like ``conv1``.

    mmseg's ``BasicBlock`` gives only ``conv1`` the stage dilation; its
    ``conv2`` keeps dilation 1. In a dilated (D8) ResNet-18/34 that leaves
    half of the 3x3 convs of layer3/layer4 undilated, so those stages see a
    smaller receptive field than the stride-16/32 network they replace. A D8
    network (SemSeg's ``model/pspnet.py`` dilates every 3x3 conv of layer3/4
    of its Bottleneck ResNets; dilated BasicBlock networks such as DRN or
    CSAIL's ``ResnetDilated`` dilate both) dilates every 3x3 conv: here
    ``conv2`` of each BasicBlock takes the block's dilation, the one mmseg
    gives its ``conv1`` (padding = dilation keeps the size).

    Bottleneck ResNets (50+) have one 3x3 conv per block, which mmseg already
    dilates: for them this class builds exactly mmseg's ``ResNet``. The
    parameters and their names are those of ``ResNet`` (checkpoints load 1:1).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for name in self.res_layers:
            for block in getattr(self, name):
                if isinstance(block, BasicBlock) and block.dilation > 1:
                    d = block.dilation
                    block.conv2.dilation = (d, d)
                    block.conv2.padding = (d, d)
