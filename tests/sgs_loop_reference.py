"""A plain per-channel, per-displacement loop of SGS_SPEC §2 (NumPy), written
independently of sgs_mm's vectorised estimator to check it.

It follows the reference code's structure (one histogram per channel and
displacement) with the spec's fixes: max included in the last bin, conv
padding per side, dilation step, non-square kernels, NaN handling.
"""
import math

import numpy as np


def _entropy(counts):
    c = counts[counts > 0].astype(np.float64)
    c = c / c.sum()
    return float(-(c * np.log2(c)).sum())


def nmi_pair(p, q, diag_removal=False):
    """S for two equally long 1-D float64 arrays (NaN when undefined)."""
    if diag_removal:
        keep = (p != 0) & (q != 0)
        p, q = p[keep], q[keep]
    n = len(p)
    if n == 0:
        return math.nan
    bins = int(1 + math.ceil(math.log2(n)))
    hist = np.zeros((bins, bins), dtype=np.int64)

    def index(v):
        lo, hi = v.min(), v.max()
        if hi == lo:
            return np.zeros(len(v), dtype=np.int64)
        scale = bins / (hi - lo)
        idx = np.floor((v - lo) * scale)
        return np.minimum(np.maximum(idx, 0), bins - 1).astype(np.int64)

    np.add.at(hist, (index(p), index(q)), 1)
    if diag_removal:
        np.fill_diagonal(hist, 0)
    if hist.sum() == 0:
        return math.nan
    h_pq = _entropy(hist.ravel())
    h_p, h_q = _entropy(hist.sum(1)), _entropy(hist.sum(0))
    if h_pq == 0:
        return math.nan
    return (h_p + h_q - h_pq) / h_pq


def pearson_pair(p, q):
    if p.std() == 0 or q.std() == 0:
        return math.nan
    return max(float(np.corrcoef(p, q)[0, 1]), 0.0)


def loop_scaling(x, kernel_size, padding=(0, 0, 0, 0), step=(1, 1), k=5.0,
                 diag_removal=False, method='nmi'):
    """G (kh, kw) of one conv input x (N, C, H, W) by explicit loops, or None."""
    x = np.asarray(x, dtype=np.float64)
    top, bottom, left, right = padding
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    n, c, hp, wp = xp.shape
    kh, kw = kernel_size
    rh, rw = (kh - 1) // 2, (kw - 1) // 2
    t = np.ones((c, kh, kw))
    for ch in range(c):
        for a in range(-rh, rh + 1):
            for b in range(-rw, rw + 1):
                if (a, b) == (0, 0):
                    continue
                dy, dx = a * step[0], b * step[1]
                ps, qs = [], []
                for y in range(hp):
                    for xx in range(wp):
                        y2, x2 = y + dy, xx + dx
                        if 0 <= y2 < hp and 0 <= x2 < wp:
                            ps.append(xp[:, ch, y, xx])
                            qs.append(xp[:, ch, y2, x2])
                p, q = np.concatenate(ps), np.concatenate(qs)
                s = nmi_pair(p, q, diag_removal) if method == 'nmi' else pearson_pair(p, q)
                if diag_removal and math.isnan(s):
                    s = 0.0
                t[ch, rh + a, rw + b] = k * s / ((k - 1) * s + 1) if not math.isnan(s) else math.nan
    with np.errstate(all='ignore'):
        g_raw = np.nanmean(t, axis=0)
    if np.isnan(g_raw).any():
        return None
    return g_raw / g_raw.mean()
