"""Normalized mutual information between displaced pixels (SGS_SPEC §2, method ``nmi``).

Vectorised over samples, channels and pixels (the only Python loop runs over
the half window's displacements and batch chunks). Two passes over the same
batches: pass 0 finds, per (displacement, channel), the value ranges of P and
Q and the pair count (which sets the Sturges bin count), pass 1 counts the
joint histograms. Both merge exactly across batches and ranks (MIN/MAX/SUM).
"""
import math

import torch

from .dependence_base import MAX, MIN, SUM, DependenceStats


def sturges_bins(n_pairs: torch.Tensor) -> torch.Tensor:
    """``1 + ceil(log2(n))`` per entry (0 where there are no pairs)."""
    n = n_pairs.to(torch.float64)
    bins = 1 + torch.ceil(torch.log2(n.clamp_min(1)))
    return torch.where(n_pairs > 0, bins, torch.zeros_like(bins)).to(torch.int64)


def bin_index(v: torch.Tensor, vmin: torch.Tensor, vmax: torch.Tensor,
              bins: torch.Tensor) -> torch.Tensor:
    """Uniform bin of each value, ``floor((v - min) * bins / (max - min))``.

    Computed in float64 like the reference's histogram; the max falls into the
    last bin (included), a constant variable (max == min) into bin 0.
    ``vmin``, ``vmax``, ``bins`` broadcast against ``v`` (per channel).
    """
    span = vmax - vmin
    scale = torch.where(span > 0, bins.to(torch.float64) / torch.where(span > 0, span, 1.0),
                        torch.zeros_like(span))
    idx = torch.floor((v.to(torch.float64) - vmin) * scale)
    last = (bins - 1).clamp_min(0).to(torch.float64)
    return torch.minimum(idx.clamp_min(0), last).to(torch.int64)


def entropies(hist: torch.Tensor):
    """H(P), H(Q), H(P,Q) in bits of joint count histograms (..., B, B)."""
    h = hist.to(torch.float64)
    total = h.sum(dim=(-2, -1), keepdim=True)
    p = h / total
    ln2 = math.log(2.0)
    h_pq = -torch.special.xlogy(p, p).sum(dim=(-2, -1)) / ln2
    pp, pq = p.sum(dim=-1), p.sum(dim=-2)
    h_p = -torch.special.xlogy(pp, pp).sum(dim=-1) / ln2
    h_q = -torch.special.xlogy(pq, pq).sum(dim=-1) / ln2
    return h_p, h_q, h_pq


class NMIStats(DependenceStats):
    """Accumulates the NMI statistics of one conv layer's input.

    Args:
        geometry, channels, device, max_elems: see :class:`DependenceStats`.
        diag_removal: the ImageNet variant (SGS_SPEC §2.8): pairs with P == 0
            or Q == 0 are dropped before binning, the joint histogram's
            diagonal is zeroed, and an undefined S becomes 0.
    """
    num_passes = 2

    def __init__(self, geometry, channels, device, max_elems=1 << 22,
                 diag_removal: bool = False):
        super().__init__(geometry, channels, device, max_elems)
        self.diag_removal = bool(diag_removal)
        shape = (geometry.num_displacements, channels)
        f64 = dict(dtype=torch.float64, device=self.device)
        self.p_min = torch.full(shape, math.inf, **f64)
        self.p_max = torch.full(shape, -math.inf, **f64)
        self.q_min = torch.full(shape, math.inf, **f64)
        self.q_max = torch.full(shape, -math.inf, **f64)
        self.n_pairs = torch.zeros(shape, dtype=torch.int64, device=self.device)
        self.bins = None
        self.hist = None
        self._all_finite = True

    # -- pass 0: ranges and counts; pass 1: joint histograms -------------
    def update(self, pass_idx: int, x: torch.Tensor) -> None:
        x = x.detach()
        all_finite = bool(torch.isfinite(x).all())
        if pass_idx == 0:
            self.calls += 1
        for d, p, q in self.geometry.pairs(x, self.max_elems):
            mask = None
            if not all_finite:
                mask = self._count_nonfinite(d, p, q) if pass_idx == 0 else \
                    torch.isfinite(p) & torch.isfinite(q)
            if self.diag_removal:
                nonzero = (p != 0) & (q != 0)
                mask = nonzero if mask is None else mask & nonzero
            if pass_idx == 0:
                self._update_ranges(d, p, q, mask)
            else:
                self._update_hist(d, p, q, mask)

    def _update_ranges(self, d, p, q, mask):
        dims = (0, 2, 3)
        if mask is None:
            self.n_pairs[d] += p.shape[0] * p.shape[2] * p.shape[3]
            for stat, v, fn in ((self.p_min, p, torch.amin), (self.p_max, p, torch.amax),
                                (self.q_min, q, torch.amin), (self.q_max, q, torch.amax)):
                cur = fn(v, dim=dims).to(torch.float64)
                stat[d] = torch.minimum(stat[d], cur) if fn is torch.amin else \
                    torch.maximum(stat[d], cur)
            return
        self.n_pairs[d] += mask.sum(dim=dims)
        inf = torch.tensor(math.inf, dtype=p.dtype, device=p.device)
        self.p_min[d] = torch.minimum(self.p_min[d], torch.where(mask, p, inf).amin(dims).double())
        self.p_max[d] = torch.maximum(self.p_max[d], torch.where(mask, p, -inf).amax(dims).double())
        self.q_min[d] = torch.minimum(self.q_min[d], torch.where(mask, q, inf).amin(dims).double())
        self.q_max[d] = torch.maximum(self.q_max[d], torch.where(mask, q, -inf).amax(dims).double())

    def _update_hist(self, d, p, q, mask):
        c, nb = self.channels, self.num_bins
        view = (1, c, 1, 1)
        bins = self.bins[d].view(view)
        ip = bin_index(p, self.p_min[d].view(view), self.p_max[d].view(view), bins)
        iq = bin_index(q, self.q_min[d].view(view), self.q_max[d].view(view), bins)
        chan = torch.arange(c, device=p.device).view(view) * (nb * nb)
        joint = chan + ip * nb + iq
        sentinel = c * nb * nb
        if mask is not None:
            joint = torch.where(mask, joint, torch.full_like(joint, sentinel))
        counts = torch.bincount(joint.reshape(-1), minlength=sentinel + 1)[:sentinel]
        self.hist[d] += counts.view(c, nb, nb)

    def _reductions(self, pass_idx):
        if pass_idx == 0:
            return [(self.p_min, MIN), (self.q_min, MIN), (self.p_max, MAX),
                    (self.q_max, MAX), (self.n_pairs, SUM)]
        return [(self.hist, SUM)]

    def end_pass(self, pass_idx):
        if pass_idx != 0:
            return
        self.bins = sturges_bins(self.n_pairs)
        self.num_bins = max(1, int(self.bins.max()))
        shape = (self.geometry.num_displacements, self.channels, self.num_bins, self.num_bins)
        self.hist = torch.zeros(shape, dtype=torch.int64, device=self.device)
        # keep the ranges finite where there were no pairs (those S are undefined)
        empty = self.n_pairs == 0
        for t in (self.p_min, self.p_max, self.q_min, self.q_max):
            t.masked_fill_(empty, 0.0)

    def dependence(self) -> torch.Tensor:
        hist = self.hist
        if self.diag_removal:
            hist = hist.clone()
            hist.diagonal(dim1=-2, dim2=-1).zero_()
        h_p, h_q, h_pq = entropies(hist)
        s = (h_p + h_q - h_pq) / h_pq
        if self.diag_removal:
            s = torch.nan_to_num(s, nan=0.0)
        return s.masked_fill(self.nonfinite > 0, math.nan)
