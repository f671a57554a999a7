"""Where the pixel pairs of a conv's kernel window come from (SGS_SPEC §2.1-2.3)."""
from dataclasses import dataclass
from typing import Iterator, List, Tuple

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


def _conv_padding(conv: nn.Conv2d) -> Tuple[int, int, int, int]:
    """(top, bottom, left, right) zero padding the conv applies to its input."""
    if isinstance(conv.padding, str):
        if conv.padding == 'valid':
            return 0, 0, 0, 0
        # 'same': PyTorch puts the extra pixel of an odd total on the far side.
        pads = []
        for k, d in zip(conv.kernel_size, conv.dilation):
            total = d * (k - 1)
            pads.append((total // 2, total - total // 2))
        return pads[0][0], pads[0][1], pads[1][0], pads[1][1]
    ph, pw = conv.padding
    return ph, ph, pw, pw


@dataclass(frozen=True)
class PairGeometry:
    """How a conv's input is padded and which displaced pixels are paired.

    Attributes:
        kernel_size: (kh, kw), both odd.
        padding: (top, bottom, left, right) zero padding.
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

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom, left, right = self.padding
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

    def padded_chunks(self, x: torch.Tensor, max_elems: int) -> Iterator[torch.Tensor]:
        """The zero-padded input in batch chunks of at most ``max_elems``
        elements (at least one sample per chunk)."""
        c, h, w = x.shape[1:]
        top, bottom, left, right = self.padding
        per_sample = max(1, c * (h + top + bottom) * (w + left + right))
        chunk = max(1, max_elems // per_sample)
        for n0 in range(0, x.shape[0], chunk):
            yield self.pad(x[n0:n0 + chunk])

    def pairs(self, x: torch.Tensor, max_elems: int
              ) -> Iterator[Tuple[int, torch.Tensor, torch.Tensor]]:
        """Yield ``(d, P, Q)`` views for every displacement (see :meth:`crops`)
        and batch chunk (see :meth:`padded_chunks`)."""
        for xp in self.padded_chunks(x, max_elems):
            for d, (py, px), (qy, qx) in self.crops(*xp.shape[-2:]):
                yield d, xp[:, :, py, px], xp[:, :, qy, qx]
