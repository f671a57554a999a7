"""Data-independent scalings: the paper's alpha/beta grid (Fig. 7) and Lemma 1's
branch masks (``reparam``)."""
from typing import Sequence, Tuple

import torch


def fixed_scaling(alpha: float, beta: float) -> torch.Tensor:
    """The 3x3 ``[[1/β,1/α,1/β],[1/α,1,1/α],[1/β,1/α,1/β]] · 9/(1+4/α+4/β)``."""
    ia, ib = 1.0 / alpha, 1.0 / beta
    g = torch.tensor([[ib, ia, ib], [ia, 1.0, ia], [ib, ia, ib]], dtype=torch.float64)
    return g * (9.0 / (1.0 + 4.0 * ia + 4.0 * ib))


def reparam_scaling(branches: Sequence[Tuple[int, int]], kernel_size: Tuple[int, int],
                    normalize: bool = True) -> torch.Tensor:
    """``Σ_n M_n`` for branches given as kernel shapes, each mask centred in the
    window (Lemma 1). E.g. ACB ``[(3,3),(1,3),(3,1)]`` on 3x3 gives centre 3,
    cross 2, corners 1; ``normalize`` rescales to mean 1."""
    kh, kw = kernel_size
    g = torch.zeros((kh, kw), dtype=torch.float64)
    for bh, bw in branches:
        if bh > kh or bw > kw or bh % 2 == 0 or bw % 2 == 0:
            raise ValueError(f'reparam branch {(bh, bw)} does not fit centred in a '
                             f'{kh}x{kw} kernel (branches must be odd and not larger)')
        top, left = (kh - bh) // 2, (kw - bw) // 2
        g[top:top + bh, left:left + bw] += 1.0
    return g / g.mean() if normalize else g
