"""The parallel branches of a block: each computes its part of the output and
says which (kernel, bias) of the block's KxK conv it equals in eval mode."""
from typing import Optional, Tuple

import torch
import torch.nn as nn

from .geometry import branch_padding
from .kernels import KernelBias, fuse_bn, identity_kernel, pad_centred


def side_conv(conv: nn.Conv2d, branch: Tuple[int, int]) -> Tuple[nn.Conv2d, Tuple[int, int]]:
    """A bias-free ``branch``-shaped conv centred in ``conv``'s window.

    Same channels, stride, dilation, groups, padding mode, device and dtype as
    ``conv``, default PyTorch initialisation.

    Args:
        conv: the KxK conv.
        branch: (bh, bw).

    Returns:
        ``(conv, crop)``: ``crop`` (ch, cw) pixels to cut from each side of the
        input first where ``conv`` pads less than the branch is off centre
        (e.g. an unpadded 3x3 conv and a 1x1 branch).
    """
    ph, pw = branch_padding(conv, branch)
    crop = (max(0, -ph), max(0, -pw))
    side = nn.Conv2d(conv.in_channels, conv.out_channels, branch, stride=conv.stride,
                     padding=(max(0, ph), max(0, pw)), dilation=conv.dilation,
                     groups=conv.groups, bias=False, padding_mode=conv.padding_mode,
                     device=conv.weight.device, dtype=conv.weight.dtype)
    return side, crop


def make_bn(channels: int, like: nn.Conv2d) -> nn.BatchNorm2d:
    """A default BatchNorm2d on ``like``'s device and dtype."""
    return nn.BatchNorm2d(channels, device=like.weight.device, dtype=like.weight.dtype)


class ConvBranch(nn.Module):
    """``bn(conv(x))`` (``bn`` optional), the conv centred in the KxK window.

    Args:
        conv: the branch conv (the block's own KxK conv, or a smaller one from
            :func:`side_conv`).
        bn: the branch's own BatchNorm, or None (the Lemma 1 form).
        crop: (ch, cw) input pixels cut from each side before the conv.
    """

    def __init__(self, conv: nn.Conv2d, bn: Optional[nn.Module] = None,
                 crop: Tuple[int, int] = (0, 0)):
        super().__init__()
        self.conv = conv
        self.bn = bn
        self.crop = tuple(crop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ch, cw = self.crop
        if ch or cw:
            x = x[..., ch:x.shape[-2] - ch, cw:x.shape[-1] - cw]
        y = self.conv(x)
        return y if self.bn is None else self.bn(y)

    def kernel_bias(self, kernel_size: Tuple[int, int]) -> KernelBias:
        """This branch as ``(kernel, bias)`` of the KxK conv, float64."""
        kernel = pad_centred(self.conv.weight.detach().double(), kernel_size)
        bias = None if self.conv.bias is None else self.conv.bias.detach().double()
        return (kernel, bias) if self.bn is None else fuse_bn(kernel, bias, self.bn)


class IdentityBranch(nn.Module):
    """RepVGG's identity branch: ``bn(x)``, the input itself (in == out
    channels, stride 1, the conv pads its window's half so that the centre tap
    reads each output pixel's own input pixel).

    Args:
        bn: its BatchNorm.
        groups: the groups of the conv it is fused into.
    """

    def __init__(self, bn: nn.Module, groups: int):
        super().__init__()
        self.bn = bn
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x)

    def kernel_bias(self, kernel_size: Tuple[int, int]) -> KernelBias:
        kernel = identity_kernel(self.bn.num_features, self.groups, kernel_size,
                                 device=self.bn.running_mean.device)
        return fuse_bn(kernel, None, self.bn)
