"""Interface of a per-layer spatial-dependence accumulator.

An accumulator sees the conv's input batch by batch (``update``), possibly over
several passes over the same batches; between passes, and at the end, the
runner all-reduces the tensors it lists in ``reductions`` across ranks, so a
distributed refresh ends with exactly the statistics of the union of all
ranks' batches. ``dependence`` returns S for the half window as a float64
tensor (num_displacements, channels), NaN where S is undefined.
"""
from typing import List, Optional, Tuple

import torch

from .chunking import resolve_max_elems
from .geometry import PairGeometry

# all-reduce operations named independently of torch.distributed
SUM, MIN, MAX = 'sum', 'min', 'max'


def is_all_finite(x: torch.Tensor) -> bool:
    """True when every value is finite (one reduction; a sum that overflows
    to Inf only sends the data down the slower masked path)."""
    return bool(torch.isfinite(x.sum()))


class DependenceStats:
    """Base class of the per-layer accumulators (see module docstring).

    Args:
        geometry: pairs of the layer's kernel window.
        channels: input channels of the conv.
        device: where the statistics live and are computed (the layer's
            device; an input on another device is moved there).
        max_elems: largest chunk (elements of the zero-padded input) processed
            at once; ``None`` picks it from ``device`` (2**20 on the CPU, from
            free memory on CUDA, see :func:`~.chunking.resolve_max_elems`).
            Any value gives the same statistics; it only trades temporary
            memory (up to ~48 bytes per element) for speed.
    """
    num_passes = 1

    def __init__(self, geometry: PairGeometry, channels: int,
                 device: torch.device, max_elems: Optional[int] = None):
        self.geometry = geometry
        self.channels = channels
        self.device = torch.device(device)
        self.max_elems = resolve_max_elems(max_elems, self.device)
        shape = (geometry.num_displacements, channels)
        # pairs whose P or Q is NaN/Inf, per (displacement, channel)
        self.nonfinite = torch.zeros(shape, dtype=torch.int64, device=self.device)
        # forward calls of the conv seen in pass 0 (all ranks together)
        self.calls = torch.zeros(1, dtype=torch.int64, device=self.device)

    def update(self, pass_idx: int, x: torch.Tensor, padding=None) -> None:
        """Add one input ``x`` of the conv: (N, C, H, W), or (C, H, W) for one
        sample; ``padding`` (top, bottom, left, right) is the zero padding the
        conv adds to it (None: the geometry's, i.e. ``conv.padding``)."""
        raise NotImplementedError

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        """The conv input as a batch, detached, on the statistics' device."""
        x = x.detach()
        if x.dim() == 3:  # nn.Conv2d accepts an unbatched (C, H, W) input
            x = x.unsqueeze(0)
        if x.dim() != 4:
            raise ValueError(f'SGS: a conv input of shape {tuple(x.shape)}; expected '
                             '(N, C, H, W) or (C, H, W)')
        return x.to(self.device)

    def reductions(self, pass_idx: int) -> List[Tuple[torch.Tensor, str]]:
        """Tensors to all-reduce in place after pass ``pass_idx``."""
        common = [(self.calls, SUM), (self.nonfinite, SUM)] if pass_idx == 0 else []
        return common + self._reductions(pass_idx)

    def _reductions(self, pass_idx: int) -> List[Tuple[torch.Tensor, str]]:
        raise NotImplementedError

    def end_pass(self, pass_idx: int) -> None:
        """Called after the reductions of ``pass_idx``."""

    def dependence(self) -> torch.Tensor:
        raise NotImplementedError

    def _count_nonfinite(self, d: int, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """Mask of pairs with both values finite; counts the others."""
        finite = torch.isfinite(p) & torch.isfinite(q)
        self.nonfinite[d] += (~finite).sum(dim=(0, 2, 3))
        return finite
