"""Where the pixel pairs of a conv's kernel window come from (SGS_SPEC §2.1-2.3)."""
from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


def half_window(kernel_size: Tuple[int, int]) -> List[Tuple[int, int]]:
    """Displacements of a KhxKw window, one of each ``(a, b)`` / ``(-a, -b)`` pair.

    The order is the reference's: raster order over ``a`` in ``[-rh, rh]`` and
    ``b`` in ``[-rw, rw]``, keeping a displacement unless its mirror was
    already kept; the centre ``(0, 0)`` is left out.
    """
    kh, kw = kernel_size
    rh, rw = (kh - 1) // 2, (kw - 1) // 2
    kept: List[Tuple[int, int]] = []
    for a in range(-rh, rh + 1):
        for b in range(-rw, rw + 1):
            if (a, b) != (0, 0) and (-a, -b) not in kept:
                kept.append((a, b))
    return kept


Padding = Tuple[int, int, int, int]


def zero_padding(padding, kernel_size, dilation) -> Padding:
    """(top, bottom, left, right) zeros of a ``F.conv2d(..., padding=padding)`` call.

    ``padding`` as F.conv2d takes it: an int, a pair, ``'valid'`` or
    ``'same'`` (PyTorch puts the extra pixel of an odd total on the far side).
    """
    if isinstance(padding, str):
        if padding == 'valid':
            return 0, 0, 0, 0
        pads = []
        for k, d in zip(_pair(kernel_size), _pair(dilation)):
            total = d * (k - 1)
            pads.append((total // 2, total - total // 2))
        return pads[0][0], pads[0][1], pads[1][0], pads[1][1]
    ph, pw = _pair(padding)
    return int(ph), int(ph), int(pw), int(pw)


def _pair(v) -> Tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (v[0], v[0]) if len(v) == 1 else (v[0], v[1])
    return v, v


def _conv_padding(conv: nn.Conv2d) -> Padding:
    """(top, bottom, left, right) zero padding ``conv.padding`` asks for."""
    return zero_padding(conv.padding, conv.kernel_size, conv.dilation)


def as_batch(x: torch.Tensor) -> torch.Tensor:
    """A conv input as (N, C, H, W): an unbatched (C, H, W) input is one sample."""
    return x.unsqueeze(0) if x.dim() == 3 else x


def slid_input(conv: nn.Conv2d, x: torch.Tensor) -> Tuple[torch.Tensor, Padding]:
    """What ``conv._conv_forward(x, ...)`` slides its kernel over.

    ``(x', zeros)``: ``x'`` is ``x`` (as a batch) padded with the conv's
    ``padding_mode`` when that is not ``'zeros'`` (as ``nn.Conv2d`` does before
    calling ``F.conv2d`` with no padding), and ``zeros`` the zero padding
    ``F.conv2d`` still adds (SGS_SPEC §2.1).
    """
    x = as_batch(x)
    if conv.padding_mode != 'zeros':
        pad = getattr(conv, '_reversed_padding_repeated_twice', None)
        if pad is None:  # pragma: no cover - torch versions without it
            top, bottom, left, right = _conv_padding(conv)
            pad = (left, right, top, bottom)
        return F.pad(x, pad, mode=conv.padding_mode), (0, 0, 0, 0)
    return x, _conv_padding(conv)


@dataclass(frozen=True)
class PairGeometry:
    """How a conv's input is padded and which displaced pixels are paired.

    Attributes:
        kernel_size: (kh, kw), both odd.
        padding: (top, bottom, left, right) zero padding of ``conv.padding``
            (an input captured from the ``F.conv2d`` call itself comes with
            that call's padding, see :func:`slid_input`).
        step: (sh, sw) pixels per kernel tap (the dilation, or 1).
        displacements: the half window, see :func:`half_window`.
    """
    kernel_size: Tuple[int, int]
    padding: Tuple[int, int, int, int]
    step: Tuple[int, int]
    displacements: Tuple[Tuple[int, int], ...]

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, respect_dilation: bool = True) -> 'PairGeometry':
        kernel_size = tuple(conv.kernel_size)
        step = tuple(conv.dilation) if respect_dilation else (1, 1)
        return cls(kernel_size, _conv_padding(conv), step, tuple(half_window(kernel_size)))

    @property
    def num_displacements(self) -> int:
        return len(self.displacements)

    def pad(self, x: torch.Tensor, padding: Optional[Padding] = None) -> torch.Tensor:
        top, bottom, left, right = self.padding if padding is None else padding
        if top == bottom == left == right == 0:
            return x
        return F.pad(x, (left, right, top, bottom), mode='constant', value=0.0)

    def crops(self, hp: int, wp: int) -> List[Tuple[int, Tuple[slice, slice], Tuple[slice, slice]]]:
        """``(d, P window, Q window)`` slices into a padded (.., hp, wp) map.

        ``P = Xp[..., y, x]`` and ``Q = Xp[..., y + a*sh, x + b*sw]`` over all
        positions where both lie inside the map; displacements that leave no
        pair are omitted.
        """
        sh, sw = self.step
        out = []
        for d, (a, b) in enumerate(self.displacements):
            dy, dx = a * sh, b * sw
            h, w = hp - abs(dy), wp - abs(dx)
            if h <= 0 or w <= 0:
                continue
            y0, x0 = max(0, -dy), max(0, -dx)
            out.append((d, (slice(y0, y0 + h), slice(x0, x0 + w)),
                        (slice(y0 + dy, y0 + dy + h), slice(x0 + dx, x0 + dx + w))))
        return out

    def padded_chunks(self, x: torch.Tensor, max_elems: int,
                      padding: Optional[Padding] = None) -> Iterator[torch.Tensor]:
        """The zero-padded input in batch chunks of at most ``max_elems``
        elements (at least one sample per chunk). ``padding`` (top, bottom,
        left, right) replaces the conv's own for this input (the zero padding
        of the ``F.conv2d`` call that slid over it)."""
        padding = self.padding if padding is None else tuple(padding)
        c, h, w = x.shape[1:]
        top, bottom, left, right = padding
        per_sample = max(1, c * (h + top + bottom) * (w + left + right))
        chunk = max(1, max_elems // per_sample)
        for n0 in range(0, x.shape[0], chunk):
            yield self.pad(x[n0:n0 + chunk], padding)

    def pairs(self, x: torch.Tensor, max_elems: int, padding: Optional[Padding] = None
              ) -> Iterator[Tuple[int, torch.Tensor, torch.Tensor]]:
        """Yield ``(d, P, Q)`` views for every displacement (see :meth:`crops`)
        and batch chunk (see :meth:`padded_chunks`)."""
        for xp in self.padded_chunks(x, max_elems, padding):
            for d, (py, px), (qy, qx) in self.crops(*xp.shape[-2:]):
                yield d, xp[:, :, py, px], xp[:, :, qy, qx]
