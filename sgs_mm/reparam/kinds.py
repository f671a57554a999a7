"""The block kinds: which branches each trains in place of a KxK conv, and
where a kind is not defined for a conv."""
from typing import Optional, Union

import torch.nn as nn

from .block import BranchBlock
from .branches import ConvBranch, IdentityBranch, make_bn, side_conv
from .dbb import OneByOneAvg, OneByOneKxK
from .geometry import branch_padding, is_same_padding

KINDS = ('acb', 'repvgg', 'dbb')
LINEAR_KINDS = ('acb', 'repvgg')


def side_shapes(kind: str, conv: nn.Conv2d) -> list:
    """The (name, (bh, bw)) side-branch kernels of the masks-only kinds.

    Args:
        kind: ``'acb'`` (1xK and Kx1) or ``'repvgg'`` (1x1).
        conv: the KxK conv.
    """
    kh, kw = conv.kernel_size
    if kind == 'acb':
        return [('hor', (1, kw)), ('ver', (kh, 1))]
    return [('1x1', (1, 1))]


def lemma1_branches(kind: str, kernel_size=(3, 3)) -> list:
    """The ``branches`` of ``SpatialGradScalingHook(method='reparam')`` that
    trains like ``kind``'s Lemma 1 form on a ``kernel_size`` conv.

    Args:
        kind: ``'acb'`` or ``'repvgg'``.
        kernel_size: (kh, kw).
    """
    kh, kw = kernel_size
    return [(kh, kw), (1, kw), (kh, 1)] if kind == 'acb' else [(kh, kw), (1, 1)]


def has_identity(conv: nn.Conv2d) -> bool:
    """RepVGG's identity branch fits: in == out channels, stride 1 and the
    window's half padded (the centre tap reads the pixel itself)."""
    return (conv.in_channels == conv.out_channels and tuple(conv.stride) == (1, 1)
            and is_same_padding(conv))


def why_not(kind: str, conv: nn.Conv2d) -> Optional[str]:
    """Why ``kind`` is not defined for ``conv`` (None: it is).

    Args:
        kind: one of :data:`KINDS`.
        conv: an eligible KxK conv with a plain forward.
    """
    if kind == 'dbb':
        if tuple(conv.dilation) != (1, 1):
            return 'dilated (DBB pools and pads undilated)'
        if not is_same_padding(conv):
            return 'DBB needs padding K // 2'
        if conv.padding_mode != 'zeros':
            return f"DBB needs zero padding, not {conv.padding_mode!r}"
        if conv.groups >= conv.out_channels and conv.in_channels != conv.out_channels:
            return 'depthwise with a channel multiplier (DBB\'s pool branch needs in == out)'
        return None
    if conv.padding_mode != 'zeros':
        for _, shape in side_shapes(kind, conv):
            if min(branch_padding(conv, shape)) < 0:
                return f'a {shape} branch would crop a {conv.padding_mode!r}-padded input'
    return None


def _without_bias(conv: nn.Conv2d) -> bool:
    had_bias = conv.bias is not None
    if had_bias:
        conv.register_parameter('bias', None)
    return had_bias


def build_block(kind: str, conv: nn.Conv2d, linear: bool) -> Union[BranchBlock, str]:
    """The block of ``kind`` for ``conv``, or why there is none.

    Linear form: the bias-free side branches start at zero, the ``'kxk'``
    branch is ``conv`` with its bias (the fused block equals ``conv``).
    Published form: every branch gets its own BatchNorm and ``conv`` loses
    its bias (the BN after it would cancel it); side convs are initialised
    as PyTorch does.

    Args:
        kind: one of :data:`KINDS`.
        conv: the eligible KxK conv (reused as the ``'kxk'`` branch's conv).
        linear: the Lemma 1 form (``'acb'``, ``'repvgg'`` only).
    """
    reason = why_not(kind, conv)
    if reason is not None:
        return reason
    branches = {}
    if linear:
        branches['kxk'] = ConvBranch(conv)
        for name, shape in side_shapes(kind, conv):
            side, crop = side_conv(conv, shape)
            nn.init.zeros_(side.weight)
            branches[name] = ConvBranch(side, crop=crop)
        return BranchBlock(conv, branches, kind, linear=True)
    had_bias = _without_bias(conv)
    branches['kxk'] = ConvBranch(conv, make_bn(conv.out_channels, conv))
    if kind == 'dbb':
        if conv.groups < conv.out_channels:
            side, crop = side_conv(conv, (1, 1))
            branches['1x1'] = ConvBranch(side, make_bn(conv.out_channels, conv), crop)
        branches['1x1_kxk'] = OneByOneKxK(conv)
        branches['1x1_avg'] = OneByOneAvg(conv)
    else:
        for name, shape in side_shapes(kind, conv):
            side, crop = side_conv(conv, shape)
            branches[name] = ConvBranch(side, make_bn(conv.out_channels, conv), crop)
        if kind == 'repvgg' and has_identity(conv):
            branches['identity'] = IdentityBranch(make_bn(conv.out_channels, conv), conv.groups)
    return BranchBlock(conv, branches, kind, linear=False, had_bias=had_bias)
