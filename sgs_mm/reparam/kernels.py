"""Kernel arithmetic of structural reparameterization (torch only).

Every function works on the tensors' own device and dtype; the blocks call
them in float64 and cast the fused result back, so that a fused conv equals its
branches to the precision of the conv's own dtype.
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

KernelBias = Tuple[torch.Tensor, Optional[torch.Tensor]]


def pad_centred(kernel: torch.Tensor, kernel_size: Tuple[int, int]) -> torch.Tensor:
    """Zero-pad a (O, I, bh, bw) kernel to ``kernel_size``, centred.

    Args:
        kernel: a branch kernel whose sides are odd and not larger.
        kernel_size: (kh, kw) of the fused conv.
    """
    kh, kw = kernel_size
    bh, bw = kernel.shape[-2:]
    top, left = (kh - bh) // 2, (kw - bw) // 2
    return F.pad(kernel, (left, kw - bw - left, top, kh - bh - top))


def bn_scale_shift(bn: nn.modules.batchnorm._BatchNorm, dtype=torch.float64
                   ) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(a, b)`` with ``bn(x) == a * x + b`` per channel in eval mode.

    Args:
        bn: a BatchNorm with running statistics.
        dtype: the dtype of the returned tensors.
    """
    std = (bn.running_var.to(dtype) + bn.eps).sqrt()
    gamma = bn.weight.detach().to(dtype) if bn.weight is not None else torch.ones_like(std)
    beta = bn.bias.detach().to(dtype) if bn.bias is not None else torch.zeros_like(std)
    scale = gamma / std
    return scale, beta - bn.running_mean.to(dtype) * scale


def fuse_bn(kernel: torch.Tensor, bias: Optional[torch.Tensor],
            bn: nn.modules.batchnorm._BatchNorm) -> KernelBias:
    """The kernel and bias of ``bn(conv(x))`` in eval mode.

    Args:
        kernel: the conv kernel (O, I, kh, kw), float64.
        bias: the conv bias (O,) or None.
        bn: the BatchNorm after the conv.
    """
    scale, shift = bn_scale_shift(bn, kernel.dtype)
    fused_bias = shift if bias is None else shift + bias * scale
    return kernel * scale.view(-1, 1, 1, 1), fused_bias


def identity_kernel(channels: int, groups: int, kernel_size: Tuple[int, int],
                    device=None, dtype=torch.float64) -> torch.Tensor:
    """The (C, C/groups, kh, kw) kernel of the identity map: 1 at each
    channel's own input, centre tap.

    Args:
        channels: input = output channels.
        groups: the conv's groups.
        kernel_size: (kh, kw), odd.
    """
    per_group = channels // groups
    kernel = torch.zeros(channels, per_group, *kernel_size, device=device, dtype=dtype)
    idx = torch.arange(channels, device=device)
    kernel[idx, idx % per_group, kernel_size[0] // 2, kernel_size[1] // 2] = 1.0
    return kernel


def avg_kernel(channels: int, groups: int, kernel_size: Tuple[int, int],
               device=None, dtype=torch.float64) -> torch.Tensor:
    """The (C, C/groups, kh, kw) kernel of a per-channel ``kh x kw`` average
    pool (zero padding counted, as ``nn.AvgPool2d`` does by default).

    Args:
        channels: input = output channels.
        groups: the groups of the conv this kernel is composed with.
        kernel_size: (kh, kw).
    """
    kh, kw = kernel_size
    eye = identity_kernel(channels, groups, (1, 1), device, dtype)
    return eye.expand(-1, -1, kh, kw) / float(kh * kw)


def compose_1x1_kxk(first: KernelBias, second: KernelBias, groups: int) -> KernelBias:
    """The kernel and bias of ``second(first(x))``: a grouped 1x1 conv
    followed by a grouped KxK conv with the same ``groups``, the input of the
    second padded with the first's output constant (its bias), as DBB's
    BN-and-pad layer does.

    Args:
        first: (kernel (M, C/g, 1, 1), bias (M,) or None).
        second: (kernel (O, M/g, kh, kw), bias (O,) or None).
        groups: g, shared by both convs.
    """
    k1, b1 = first
    k2, b2 = second
    m, o = k1.shape[0], k2.shape[0]
    k1g = k1[:, :, 0, 0].reshape(groups, m // groups, -1)           # g, M/g, C/g
    k2g = k2.reshape(groups, o // groups, m // groups, *k2.shape[-2:])  # g, O/g, M/g, kh, kw
    kernel = torch.einsum('gomhw,gmc->gochw', k2g, k1g).reshape(o, -1, *k2.shape[-2:])
    bias = None
    if b1 is not None:
        b1g = b1.reshape(groups, m // groups)
        bias = torch.einsum('gomhw,gm->go', k2g, b1g).reshape(o)
    if b2 is not None:
        bias = b2 if bias is None else bias + b2
    return kernel, bias


def add(parts) -> KernelBias:
    """Sum of ``(kernel, bias)`` pairs; a None bias counts as zero (the sum's
    bias is None when every bias is None)."""
    kernel, bias = None, None
    for k, b in parts:
        kernel = k if kernel is None else kernel + k
        if b is not None:
            bias = b if bias is None else bias + b
    return kernel, bias
