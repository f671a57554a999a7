"""Normalized mutual information between displaced pixels (SGS_SPEC §2, method ``nmi``).

Vectorised over samples, channels and pixels; the Python loop runs over the
half window's displacements and batch chunks only. Two passes over the same
batches: pass 0 finds, per (displacement, channel), the value ranges of P and
Q and the pair count (which sets the Sturges bin count); pass 1 counts the
joint histograms. Both merge exactly across batches and ranks (MIN/MAX/SUM).

Speed: P and Q of every displacement are crops of the same padded map, and
their ranges and bin counts are nearly always those of the whole map. Pass 1
therefore bins every pixel once per channel with the map's range and the
channel's most common bin count, and reuses those indices for each
displacement whose (range, bins) match exactly; only the (displacement,
channel) entries that differ are binned again with their own parameters. The
result is bit-identical to binning each pair set separately.
"""
import math
from typing import Optional

import torch

from .dependence_base import MAX, MIN, SUM, DependenceStats, is_all_finite

INT32_MAX = 2**31 - 1


def sturges_bins(n_pairs: torch.Tensor) -> torch.Tensor:
    """``1 + ceil(log2(n))`` per entry (0 where there are no pairs).

    Exact in integers on every device: the float64 ``log2`` estimate is
    corrected to the smallest ``e`` with ``2**e >= n`` (a device whose
    ``log2`` were one ulp off at a power of two would otherwise get another
    bin count, hence another G).
    """
    n = n_pairs.to(torch.int64).clamp_min(1)
    e = torch.ceil(torch.log2(n.to(torch.float64))).to(torch.int64).clamp(0, 62)
    one = torch.ones_like(n)
    e = torch.where(torch.bitwise_left_shift(one, e) < n, e + 1, e)
    below = torch.bitwise_left_shift(one, (e - 1).clamp_min(0))
    e = torch.where((e > 0) & (below >= n), e - 1, e)
    return torch.where(n_pairs > 0, e + 1, torch.zeros_like(e))


def bin_index(v: torch.Tensor, vmin: torch.Tensor, vmax: torch.Tensor, bins: torch.Tensor,
              dtype: torch.dtype = torch.int64) -> torch.Tensor:
    """Uniform bin of each value, ``floor((v - min) * (bins / (max - min)))``.

    Computed in float64 like the reference's histogram; the max falls into the
    last bin (included), a constant variable (max == min) into bin 0.
    ``vmin``, ``vmax``, ``bins`` broadcast against ``v`` (per channel).
    """
    span = vmax - vmin
    positive = span > 0
    scale = torch.where(positive, bins.to(torch.float64) / torch.where(positive, span, 1.0),
                        torch.zeros_like(span))
    last = (bins - 1).clamp_min(0).to(torch.float64)
    idx = v.to(torch.float64, copy=True)
    idx.sub_(vmin).mul_(scale).floor_()
    idx.clamp_(min=torch.zeros_like(last), max=last)
    return idx.to(dtype)


def joint_index_dtype(channels: int, num_bins: int) -> torch.dtype:
    """Integer type of the joint histogram index ``c * nb² + bin_p * nb + bin_q``.

    Its largest value is the sentinel ``channels * nb²`` for pairs left out; it
    depends on the channels and bins only, never on the chunk size (each
    displacement's chunk is counted on its own, there is no index across
    displacements or samples). int32 unless that sentinel does not fit.
    """
    return torch.int32 if channels * num_bins * num_bins <= INT32_MAX else torch.int64


def flat(t: torch.Tensor) -> torch.Tensor:
    """All elements of ``t`` as a 1-D tensor, in memory order where possible
    (a view for contiguous and channels_last tensors; order does not matter to
    a histogram)."""
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(
            memory_format=torch.channels_last):
        return t.permute(0, 2, 3, 1).reshape(-1)
    return t.reshape(-1)


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

    def __init__(self, geometry, channels, device, max_elems=None,
                 diag_removal: bool = False):
        super().__init__(geometry, channels, device, max_elems)
        self.diag_removal = bool(diag_removal)
        shape = (geometry.num_displacements, channels)
        f64 = dict(dtype=torch.float64, device=self.device)
        self.p_min = torch.full(shape, math.inf, **f64)
        self.p_max = torch.full(shape, -math.inf, **f64)
        self.q_min = torch.full(shape, math.inf, **f64)
        self.q_max = torch.full(shape, -math.inf, **f64)
        # range of every counted value of the whole map, per channel
        self.c_min = torch.full((channels, ), math.inf, **f64)
        self.c_max = torch.full((channels, ), -math.inf, **f64)
        self.n_pairs = torch.zeros(shape, dtype=torch.int64, device=self.device)
        self.bins = self.hist = None

    # ------------------------------------------------------------- passes
    def update(self, pass_idx: int, x: torch.Tensor, padding=None) -> None:
        x = self._input(x)
        all_finite = is_all_finite(x)
        if pass_idx == 0:
            self.calls += 1
        for xp in self.geometry.padded_chunks(x, self.max_elems, padding):
            crops = self.geometry.crops(*xp.shape[-2:])
            valid = self._valid_map(xp, all_finite)
            if pass_idx == 0:
                self._update_ranges(xp, crops, valid, all_finite)
            else:
                self._update_hist(xp, crops, valid)

    def _valid_map(self, xp, all_finite) -> Optional[torch.Tensor]:
        """Values that may be counted (None: all of them)."""
        valid = None if all_finite else torch.isfinite(xp)
        if self.diag_removal:
            nonzero = xp != 0
            valid = nonzero if valid is None else valid & nonzero
        return valid

    def _update_ranges(self, xp, crops, valid, all_finite):
        dims = (0, 2, 3)
        n = xp.shape[0]
        if valid is None:
            # per-pixel extremes over the batch first, then each crop's: the
            # data is read once whatever the number of displacements
            lo, hi = torch.aminmax(xp, dim=0)
            lo, hi = lo.double(), hi.double()
            self.c_min = torch.minimum(self.c_min, lo.amin((1, 2)))
            self.c_max = torch.maximum(self.c_max, hi.amax((1, 2)))
            for d, (py, px), (qy, qx) in crops:
                self.n_pairs[d] += n * (py.stop - py.start) * (px.stop - px.start)
                self.p_min[d] = torch.minimum(self.p_min[d], lo[:, py, px].amin((1, 2)))
                self.p_max[d] = torch.maximum(self.p_max[d], hi[:, py, px].amax((1, 2)))
                self.q_min[d] = torch.minimum(self.q_min[d], lo[:, qy, qx].amin((1, 2)))
                self.q_max[d] = torch.maximum(self.q_max[d], hi[:, qy, qx].amax((1, 2)))
            return
        inf = torch.tensor(math.inf, dtype=xp.dtype, device=xp.device)
        self.c_min = torch.minimum(self.c_min, torch.where(valid, xp, inf).amin(dims).double())
        self.c_max = torch.maximum(self.c_max, torch.where(valid, xp, -inf).amax(dims).double())
        finite = None if all_finite else torch.isfinite(xp)
        for d, (py, px), (qy, qx) in crops:
            p, q = xp[:, :, py, px], xp[:, :, qy, qx]
            mask = valid[:, :, py, px] & valid[:, :, qy, qx]
            if finite is not None:
                both = finite[:, :, py, px] & finite[:, :, qy, qx]
                self.nonfinite[d] += (~both).sum(dims)
            self.n_pairs[d] += mask.sum(dims)
            self.p_min[d] = torch.minimum(self.p_min[d], torch.where(mask, p, inf).amin(dims).double())
            self.p_max[d] = torch.maximum(self.p_max[d], torch.where(mask, p, -inf).amax(dims).double())
            self.q_min[d] = torch.minimum(self.q_min[d], torch.where(mask, q, inf).amin(dims).double())
            self.q_max[d] = torch.maximum(self.q_max[d], torch.where(mask, q, -inf).amax(dims).double())

    def _update_hist(self, xp, crops, valid):
        c, nb, itype = self.channels, self.num_bins, self.index_dtype
        view = (1, c, 1, 1)
        # joint index = channel * nb² + bin(P) * nb + bin(Q); the P part is
        # scaled and offset once per chunk, so each displacement costs one add
        chan = (torch.arange(c, device=xp.device, dtype=itype) * (nb * nb)).view(view)
        shared_q = shared_p = None
        if bool((self.match_p | self.match_q).any()):
            shared_q = bin_index(xp, self.c_min.view(view), self.c_max.view(view),
                                 self.common_bins.view(view), itype)
            if bool(self.match_p.any()):
                shared_p = shared_q * nb
                shared_p += chan
        sentinel = c * nb * nb
        for d, pw, qw in crops:
            ip = self._indices(xp, shared_p, d, pw, self.match_p[d], self.p_min, self.p_max,
                               nb, chan)
            iq = self._indices(xp, shared_q, d, qw, self.match_q[d], self.q_min, self.q_max)
            joint = ip + iq
            if valid is not None:
                keep = valid[:, :, pw[0], pw[1]] & valid[:, :, qw[0], qw[1]]
                joint.masked_fill_(~keep, sentinel)
            counts = torch.bincount(flat(joint), minlength=sentinel + 1)[:sentinel]
            self.hist[d] += counts.view(c, nb, nb)

    def _indices(self, xp, shared, d, window, match, vmin, vmax, scale=1, offset=None):
        """``bin * scale + offset`` of one crop, from the shared indices where
        (range, bins) match and from the crop's own parameters elsewhere."""
        if shared is not None and bool(match.all()):
            return shared[:, :, window[0], window[1]]
        region = xp[:, :, window[0], window[1]]
        if shared is None or not bool(match.any()):
            own = torch.ones_like(match)
        else:
            own = ~match
        everything = bool(own.all())
        sel = slice(None) if everything else own.nonzero().squeeze(1)
        v = (1, -1, 1, 1)
        idx = bin_index(region if everything else region[:, sel], vmin[d, sel].view(v),
                        vmax[d, sel].view(v), self.bins[d, sel].view(v), self.index_dtype)
        if scale != 1:
            idx *= scale
        if offset is not None:
            idx += offset[:, sel]
        if everything:
            return idx
        out = shared[:, :, window[0], window[1]].clone()
        out[:, sel] = idx
        return out

    # ------------------------------------------------------- reductions
    def _reductions(self, pass_idx):
        if pass_idx == 0:
            return [(self.p_min, MIN), (self.q_min, MIN), (self.c_min, MIN), (self.p_max, MAX),
                    (self.q_max, MAX), (self.c_max, MAX), (self.n_pairs, SUM)]
        return [(self.hist, SUM)]

    def end_pass(self, pass_idx):
        if pass_idx != 0:
            return
        self.bins = sturges_bins(self.n_pairs)
        self.num_bins = max(1, int(self.bins.max()))
        self.index_dtype = joint_index_dtype(self.channels, self.num_bins)
        self.common_bins = torch.mode(self.bins, dim=0).values
        shape = (self.geometry.num_displacements, self.channels, self.num_bins, self.num_bins)
        self.hist = torch.zeros(shape, dtype=torch.int64, device=self.device)
        # keep ranges finite where nothing was counted (those S are undefined)
        empty = self.n_pairs == 0
        for t in (self.p_min, self.p_max, self.q_min, self.q_max):
            t.masked_fill_(empty, 0.0)
        for t in (self.c_min, self.c_max):
            t.masked_fill_(~torch.isfinite(t), 0.0)
        same = self.bins == self.common_bins
        self.match_p = same & (self.p_min == self.c_min) & (self.p_max == self.c_max)
        self.match_q = same & (self.q_min == self.c_min) & (self.q_max == self.c_max)

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
