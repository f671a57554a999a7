"""The module that trains in place of one KxK conv: parallel branches whose
outputs are summed, fusable into the original conv."""
from typing import Optional, Tuple

import torch
import torch.nn as nn

from .dbb import IdentityBasedConv1x1
from .kernels import KernelBias, add


class BranchBlock(nn.Module):
    """Parallel branches summed; in eval mode equal to one KxK conv.

    The block keeps the original conv object as (the conv of) its ``'kxk'``
    branch, so that :meth:`to_conv` hands back a module of the original class
    and attributes with the fused kernel.

    Args:
        conv: the original conv (becomes the ``'kxk'`` branch's conv).
        branches: ``{name: branch}``, each with ``kernel_bias(kernel_size)``;
            ``'kxk'`` must hold ``conv``.
        kind: ``'acb'``, ``'repvgg'`` or ``'dbb'``.
        linear: the Lemma 1 form (no BN in any branch).
        had_bias: the original conv had a bias that the published form took
            off (a BN follows each branch): :meth:`to_conv` gives it one again.

    Attributes:
        norm_name: the name (in the model :func:`~sgs_mm.reparam.to_branches`
            converted) of the BatchNorm that takes the fused bias, or None.
        conv_name: this block's name in that model.
    """

    def __init__(self, conv: nn.Conv2d, branches: 'dict[str, nn.Module]', kind: str,
                 linear: bool, had_bias: bool = False):
        super().__init__()
        self.branches = nn.ModuleDict(branches)
        self.kind, self.linear, self.had_bias = kind, linear, had_bias
        self.kernel_size: Tuple[int, int] = tuple(conv.kernel_size)
        self.conv_name: Optional[str] = None
        self.norm_name: Optional[str] = None

    @property
    def conv(self) -> nn.Conv2d:
        """The original conv (the ``'kxk'`` branch's)."""
        return self.branches['kxk'].conv

    # the geometry of the conv it stands for, for code that reads it off the
    # layer (e.g. a neck asking for out_channels)
    in_channels = property(lambda self: self.conv.in_channels)
    out_channels = property(lambda self: self.conv.out_channels)
    stride = property(lambda self: self.conv.stride)
    padding = property(lambda self: self.conv.padding)
    dilation = property(lambda self: self.conv.dilation)
    groups = property(lambda self: self.conv.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = None
        for branch in self.branches.values():
            y = branch(x)
            out = y if out is None else out + y
        return out

    def kernel_bias(self) -> KernelBias:
        """The fused ``(kernel, bias)``, float64 (bias None when there is none:
        the Lemma 1 form of a bias-free conv)."""
        return add(b.kernel_bias(self.kernel_size) for b in self.branches.values())

    def to_conv(self) -> Tuple[nn.Conv2d, Optional[torch.Tensor]]:
        """The original conv with the fused kernel (and bias, where it has or
        had one), and the bias it cannot hold (float64, None if none).

        The conv's weight Parameter is kept (its values replaced), so its
        ``requires_grad`` stays.
        """
        conv = self.conv
        kernel, bias = self.kernel_bias()
        with torch.no_grad():
            conv.weight.copy_(kernel.to(conv.weight.dtype))
        if self.had_bias and conv.bias is None:
            conv.bias = nn.Parameter(torch.zeros(conv.out_channels, device=conv.weight.device,
                                                 dtype=conv.weight.dtype),
                                     requires_grad=conv.weight.requires_grad)
        if conv.bias is not None:
            with torch.no_grad():
                conv.bias.copy_(bias.to(conv.bias.dtype) if bias is not None else 0.0)
            bias = None
        return conv, bias

    def init_weights(self) -> None:
        """Re-establish the kind's own starting values after a host model's
        initialiser (mmengine's ``init_weights`` calls this after its
        ``init_cfg`` drew every conv and BN): the Lemma 1 form's side branches
        start at zero (the fused conv starts as the drawn KxK conv), DBB's
        identity-based 1x1 conv at the identity."""
        for name, branch in self.branches.items():
            if self.linear and name != 'kxk':
                nn.init.zeros_(branch.conv.weight)
        for module in self.branches.modules():
            if isinstance(module, IdentityBasedConv1x1):
                module.init_weights()

    def extra_repr(self) -> str:
        form = 'linear' if self.linear else 'published'
        return f'kind={self.kind!r}, form={form}, kernel_size={self.kernel_size}'
