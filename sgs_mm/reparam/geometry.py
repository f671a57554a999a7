"""Where a smaller branch kernel must sit so that it is centred in the KxK
window of the conv it is trained in place of."""
from typing import Optional, Tuple

import torch.nn as nn

from ..sgs.geometry import zero_padding

# conv classes whose forward is exactly nn.Conv2d's (mmcv's wrapper only adds
# an empty-tensor path for torch < 1.4): their padding and padding_mode say all
_PLAIN_FORWARD_MODULES = ('mmcv.cnn.bricks.wrappers', )


def has_plain_forward(conv: nn.Conv2d) -> bool:
    """``conv`` slides its kernel as ``nn.Conv2d.forward`` does (so a branch
    built from its attributes sees the same pixels).

    Args:
        conv: any ``nn.Conv2d`` (subclass).
    """
    cls = type(conv)
    if cls.__module__ in _PLAIN_FORWARD_MODULES and cls.__name__ == 'Conv2d':
        return True
    return cls.forward is nn.Conv2d.forward and cls._conv_forward is nn.Conv2d._conv_forward


def conv_padding(conv: nn.Conv2d) -> Tuple[int, int]:
    """The conv's symmetric (ph, pw) padding (``'same'`` / ``'valid'``
    resolved; odd kernels always pad symmetrically).

    Args:
        conv: a conv with odd kernel sides.
    """
    top, _, left, _ = zero_padding(conv.padding, conv.kernel_size, conv.dilation)
    return top, left


def branch_offset(conv: nn.Conv2d, branch: Tuple[int, int]) -> Tuple[int, int]:
    """Pixels by which a centred ``branch`` (bh, bw) kernel's first tap lies
    inside the conv's first tap: ``(K - b) / 2`` taps times the dilation.

    Args:
        conv: the KxK conv.
        branch: (bh, bw), odd and not larger than the kernel.
    """
    (kh, kw), (dh, dw) = conv.kernel_size, conv.dilation
    bh, bw = branch
    return (kh - bh) // 2 * dh, (kw - bw) // 2 * dw


def branch_padding(conv: nn.Conv2d, branch: Tuple[int, int]) -> Tuple[int, int]:
    """The (ph, pw) padding of a centred ``branch`` conv with the conv's
    stride and dilation; negative where the branch must crop its input.

    Args:
        conv: the KxK conv.
        branch: (bh, bw).
    """
    (ph, pw), (oh, ow) = conv_padding(conv), branch_offset(conv, branch)
    return ph - oh, pw - ow


def is_same_padding(conv: nn.Conv2d) -> bool:
    """The conv pads ``dilation * (K - 1) / 2`` on every side (its centre tap
    reads the output pixel's own input pixel at stride 1)."""
    (kh, kw), (dh, dw) = conv.kernel_size, conv.dilation
    return conv_padding(conv) == (dh * (kh - 1) // 2, dw * (kw - 1) // 2)


def why_not_convertible(conv: nn.Conv2d) -> Optional[str]:
    """Why no branch can be trained in place of ``conv`` (None: it can).

    Args:
        conv: an eligible SGS layer (odd KxK, trainable).
    """
    if not has_plain_forward(conv):
        return f'{type(conv).__name__} has its own forward (its padding is not its attributes)'
    if isinstance(conv.padding, str) and conv.padding not in ('same', 'valid'):
        return f'padding {conv.padding!r}'
    return None
