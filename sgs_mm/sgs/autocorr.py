"""Pearson autocorrelation of displaced pixels (SGS_SPEC §2, method ``autocorr``).

One pass of float64 moment sums per (displacement, channel); sums merge
across batches and ranks (every rank ends with the same sums). S = max(r, 0),
NaN for a constant variable. Unlike NMI's integer histograms, float64 sums
depend on the summation order: another chunk size (``max_elems``) or batch
split can change G by the float64 rounding of those sums (tests: < 1e-12).
"""
import torch

from .dependence_base import SUM, DependenceStats, is_all_finite


class AutocorrStats(DependenceStats):
    """Accumulates n, ΣP, ΣQ, ΣP², ΣQ², ΣPQ of one conv layer's input pairs."""
    num_passes = 1

    def __init__(self, geometry, channels, device, max_elems=None):
        super().__init__(geometry, channels, device, max_elems)
        # rows: n, sum_p, sum_q, sum_pp, sum_qq, sum_pq
        self.moments = torch.zeros((6, geometry.num_displacements, channels),
                                   dtype=torch.float64, device=self.device)

    def update(self, pass_idx, x, padding=None):
        x = self._input(x)
        all_finite = is_all_finite(x)
        self.calls += 1
        dims = (0, 2, 3)
        for d, p, q in self.geometry.pairs(x, self.max_elems, padding):
            p, q = p.to(torch.float64), q.to(torch.float64)
            if all_finite:
                n = p.shape[0] * p.shape[2] * p.shape[3]
                self.moments[0, d] += n
            else:
                mask = self._count_nonfinite(d, p, q)
                self.moments[0, d] += mask.sum(dims)
                p = torch.where(mask, p, torch.zeros_like(p))
                q = torch.where(mask, q, torch.zeros_like(q))
            self.moments[1, d] += p.sum(dims)
            self.moments[2, d] += q.sum(dims)
            self.moments[3, d] += (p * p).sum(dims)
            self.moments[4, d] += (q * q).sum(dims)
            self.moments[5, d] += (p * q).sum(dims)

    def _reductions(self, pass_idx):
        return [(self.moments, SUM)]

    def dependence(self):
        n, sp, sq, spp, sqq, spq = self.moments
        cov = n * spq - sp * sq
        var_p = (n * spp - sp * sp).clamp_min(0)
        var_q = (n * sqq - sq * sq).clamp_min(0)
        r = cov / torch.sqrt(var_p * var_q)
        s = r.clamp(0.0, 1.0)  # clamp keeps NaN (constant variable) as NaN
        return s.masked_fill(self.nonfinite > 0, float('nan'))
