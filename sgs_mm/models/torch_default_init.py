"""PyTorch's default initialisation for heads that mmseg initialises itself."""
import torch.nn as nn


def reset_to_torch_defaults(module: nn.Module) -> nn.Module:
    """Re-initialise every conv, linear and norm layer in ``module`` with
    PyTorch's own default (``reset_parameters``: Kaiming-uniform with
    ``a=sqrt(5)`` and a uniform bias for convs/linears, weight 1 and bias 0
    for norms), undoing mmcv's Kaiming-normal ``ConvModule`` init and
    mmseg's Normal(0, 0.01) ``conv_seg`` init."""
    for m in module.modules():
        if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear,
                          nn.modules.batchnorm._NormBase, nn.GroupNorm)):
            m.reset_parameters()
    return module


class TorchDefaultInitMixin:
    """For an mmseg decode head (put first in the bases): the layers keep
    PyTorch's default initialisation, as a plain ``nn.Conv2d`` /
    ``nn.BatchNorm2d`` head built without an init step has it (SemSeg's
    ``model/pspnet.py`` ppm/cls/aux). Applied after construction and again
    after ``init_weights`` (which mmengine's Runner calls), so ``init_cfg``
    and mmcv's ``ConvModule.init_weights`` leave no trace."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault('init_cfg', None)
        super().__init__(*args, **kwargs)
        reset_to_torch_defaults(self)

    def init_weights(self):
        super().init_weights()
        reset_to_torch_defaults(self)
