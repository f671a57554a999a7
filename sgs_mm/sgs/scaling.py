"""From spatial dependence S to the gradient scaling G (SGS_SPEC §2.6-2.7)."""
from typing import Optional, Sequence, Tuple

import torch


def k_transform(s: torch.Tensor, k: float) -> torch.Tensor:
    """``k·S / ((k-1)·S + 1)``: maps S in [0, 1] to [0, 1], concave for k > 1."""
    return k * s / ((k - 1) * s + 1)


def window_from_half(values: torch.Tensor, displacements: Sequence[Tuple[int, int]],
                     kernel_size: Tuple[int, int], centre: float = 1.0) -> torch.Tensor:
    """Place per-displacement values (D, C) into (C, kh, kw) windows.

    Entry ``[:, rh + a, rw + b]`` and its mirror ``[:, rh - a, rw - b]`` get
    the value of displacement ``(a, b)``; the centre gets ``centre``.
    """
    kh, kw = kernel_size
    rh, rw = (kh - 1) // 2, (kw - 1) // 2
    d_count, channels = values.shape
    out = torch.full((channels, kh, kw), float(centre), dtype=values.dtype,
                     device=values.device)
    a = torch.tensor([d[0] for d in displacements], device=values.device)
    b = torch.tensor([d[1] for d in displacements], device=values.device)
    vals = values.t()  # (C, D)
    out[:, rh + a, rw + b] = vals
    out[:, rh - a, rw - b] = vals
    return out


def scaling_from_dependence(s: torch.Tensor, displacements, kernel_size,
                            k: float) -> Optional[torch.Tensor]:
    """G (kh, kw) from S (D, C): per-channel k-transform, centre 1, NaN-aware
    channel mean, normalised to mean 1. ``None`` when G would have a NaN
    (e.g. every channel constant at some displacement)."""
    per_channel = window_from_half(k_transform(s, k), displacements, kernel_size)
    g_raw = torch.nanmean(per_channel, dim=0)
    if torch.isnan(g_raw).any():
        return None
    return g_raw / g_raw.mean()
