"""The two composite branches of the Diverse Branch Block (Ding et al., CVPR
2021): 1x1 -> KxK and 1x1 -> KxK average pooling, each a chain with
BatchNorms that fuses into one KxK kernel (eval mode)."""
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .branches import make_bn
from .geometry import conv_padding
from .kernels import KernelBias, avg_kernel, bn_scale_shift, compose_1x1_kxk, fuse_bn, \
    identity_kernel


class IdentityBasedConv1x1(nn.Module):
    """A grouped 1x1 conv (C -> C) whose kernel is ``weight + identity``,
    ``weight`` starting at zero (DBB's first conv of the 1x1 -> KxK branch when
    it keeps the channel count).

    Args:
        channels: input = output channels.
        groups: its groups.
        like: a tensor giving device and dtype.
    """

    def __init__(self, channels: int, groups: int, like: torch.Tensor):
        super().__init__()
        self.groups = groups
        shape = (channels, channels // groups, 1, 1)
        self.weight = nn.Parameter(torch.zeros(shape, device=like.device, dtype=like.dtype))
        self.register_buffer('eye', identity_kernel(channels, groups, (1, 1), like.device,
                                                    like.dtype), persistent=False)

    def kernel(self) -> torch.Tensor:
        return self.weight + self.eye

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.kernel(), None, 1, 0, 1, self.groups)

    def init_weights(self) -> None:
        """Back to the identity (a host model's initialiser may have drawn it)."""
        nn.init.zeros_(self.weight)


class BNAndPad(nn.Module):
    """BatchNorm, then pad (ph, pw) pixels per side with the value the BN
    gives a zero input in eval mode, so that the KxK conv after it sees what a
    zero-padded input would give after fusion (DBB's BNAndPadLayer; the pad
    value uses the running statistics also in training, detached, as there).

    Args:
        bn: the BatchNorm.
        padding: (ph, pw).
    """

    def __init__(self, bn: nn.BatchNorm2d, padding: Tuple[int, int]):
        super().__init__()
        self.bn = bn
        self.padding = tuple(padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(x)
        ph, pw = self.padding
        if not (ph or pw):
            return y
        _, shift = bn_scale_shift(self.bn, y.dtype)
        value = shift.detach().view(1, -1, 1, 1)
        mask = F.pad(torch.zeros_like(y[:1, :1]), (pw, pw, ph, ph), value=1.0)
        return F.pad(y, (pw, pw, ph, ph)) + mask * value


def _first_conv(conv: nn.Conv2d, out_channels: int, identity_based: bool) -> nn.Module:
    if identity_based:
        return IdentityBasedConv1x1(conv.in_channels, conv.groups, conv.weight)
    return nn.Conv2d(conv.in_channels, out_channels, 1, groups=conv.groups, bias=False,
                     device=conv.weight.device, dtype=conv.weight.dtype)


def _first_kernel_bias(first: nn.Module, bn: nn.BatchNorm2d) -> KernelBias:
    kernel = first.kernel() if isinstance(first, IdentityBasedConv1x1) else first.weight
    return fuse_bn(kernel.detach().double(), None, bn)


class OneByOneKxK(nn.Module):
    """DBB's 1x1 -> BN -> KxK -> BN branch.

    The 1x1 conv maps to ``internal`` channels (the input's, as an
    identity-based conv, unless ``conv`` is depthwise: twice the input's,
    DBB's default), with ``conv``'s groups; the KxK conv has ``conv``'s kernel,
    stride and groups and pads nothing (the BN-and-pad layer pads).

    Args:
        conv: the KxK conv the block trains in place of.
    """

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        depthwise = conv.groups >= conv.out_channels
        internal = 2 * conv.in_channels if depthwise else conv.in_channels
        self.first = _first_conv(conv, internal, identity_based=not depthwise)
        self.pad = BNAndPad(make_bn(internal, conv), conv_padding(conv))
        self.second = nn.Conv2d(internal, conv.out_channels, conv.kernel_size, stride=conv.stride,
                                groups=conv.groups, bias=False, device=conv.weight.device,
                                dtype=conv.weight.dtype)
        self.bn = make_bn(conv.out_channels, conv)
        self.groups = conv.groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.second(self.pad(self.first(x))))

    def kernel_bias(self, kernel_size: Tuple[int, int]) -> KernelBias:
        first = _first_kernel_bias(self.first, self.pad.bn)
        second = fuse_bn(self.second.weight.detach().double(), None, self.bn)
        return compose_1x1_kxk(first, second, self.groups)


class OneByOneAvg(nn.Module):
    """DBB's average-pooling branch: 1x1 -> BN -> KxK average pool -> BN, or
    for a depthwise conv (in == out == groups) average pool -> BN.

    Args:
        conv: the KxK conv the block trains in place of.
    """

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.groups = conv.groups
        self.kernel_size = tuple(conv.kernel_size)
        padding = conv_padding(conv)
        if conv.groups < conv.out_channels:
            self.first = _first_conv(conv, conv.out_channels, identity_based=False)
            self.pad = BNAndPad(make_bn(conv.out_channels, conv), padding)
            self.pool = nn.AvgPool2d(conv.kernel_size, conv.stride, padding=0)
        else:
            self.first, self.pad = None, None
            self.pool = nn.AvgPool2d(conv.kernel_size, conv.stride, padding=padding)
        self.bn = make_bn(conv.out_channels, conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.first is not None:
            x = self.pad(self.first(x))
        return self.bn(self.pool(x))

    def kernel_bias(self, kernel_size: Tuple[int, int]) -> KernelBias:
        channels = self.bn.num_features
        groups = self.groups if self.first is not None else channels
        avg = fuse_bn(avg_kernel(channels, groups, kernel_size,
                                 device=self.bn.running_mean.device), None, self.bn)
        if self.first is None:
            return avg
        return compose_1x1_kxk(_first_kernel_bias(self.first, self.pad.bn), avg, self.groups)
