"""A per-channel, per-displacement NumPy loop of SGS_SPEC §2, used by the
benchmark only as a correctness cross-check of sgs_mm's estimator (same bins,
ranges, max included: G agrees to ~1e-12). It is NOT the speed baseline: binning
with NumPy is several times slower than the reference code, which bins with
``fast_histogram`` (see reference_baseline.py, the baseline the benchmark
times)."""
import math

import numpy as np


def _entropy(counts):
    c = counts[counts > 0].astype(np.float64)
    c /= c.sum()
    return float(-(c * np.log2(c)).sum())


def _index(v, bins):
    lo, hi = v.min(), v.max()
    if hi == lo:
        return np.zeros(v.shape, dtype=np.int64)
    idx = np.floor((v - lo) * (bins / (hi - lo)))
    return np.minimum(np.maximum(idx, 0), bins - 1).astype(np.int64)


def nmi_of_pairs(p, q, diag_removal, joint_histogram):
    """S of two equally long 1-D arrays (NaN when undefined), with the joint
    histogram counted by ``joint_histogram(p, q, bins)`` (Sturges bins)."""
    if diag_removal:
        keep = (p != 0) & (q != 0)
        p, q = p[keep], q[keep]
    n = p.size
    if n == 0:
        return math.nan
    bins = int(1 + math.ceil(math.log2(n)))
    hist = joint_histogram(p, q, bins)
    if diag_removal:
        np.fill_diagonal(hist, 0)
    if hist.sum() == 0:
        return math.nan
    h_pq = _entropy(hist.ravel())
    if h_pq == 0:
        return math.nan
    return (_entropy(hist.sum(1)) + _entropy(hist.sum(0)) - h_pq) / h_pq


def _numpy_joint(p, q, bins):
    """Exact binning like sgs_mm: [min, max] per variable, max in the last bin."""
    return np.bincount(_index(p, bins) * bins + _index(q, bins),
                       minlength=bins * bins).reshape(bins, bins)


def nmi(p, q, diag_removal):
    return nmi_of_pairs(p, q, diag_removal, _numpy_joint)


def layer_scaling(xp, kernel_size, step, k=5.0, diag_removal=False):
    """G of one layer from its zero-padded input (N, C, Hp, Wp) as NumPy."""
    n, c, hp, wp = xp.shape
    kh, kw = kernel_size
    rh, rw = (kh - 1) // 2, (kw - 1) // 2
    t = np.ones((c, kh, kw))
    done = []
    for a in range(-rh, rh + 1):
        for b in range(-rw, rw + 1):
            if (a, b) == (0, 0) or (-a, -b) in done:
                continue
            done.append((a, b))
            dy, dx = a * step[0], b * step[1]
            h, w = hp - abs(dy), wp - abs(dx)
            y0, x0 = max(0, -dy), max(0, -dx)
            for ch in range(c):
                p = xp[:, ch, y0:y0 + h, x0:x0 + w].ravel()
                q = xp[:, ch, y0 + dy:y0 + dy + h, x0 + dx:x0 + dx + w].ravel()
                s = nmi(p, q, diag_removal)
                if diag_removal and math.isnan(s):
                    s = 0.0
                val = k * s / ((k - 1) * s + 1)
                t[ch, rh + a, rw + b] = t[ch, rh - a, rw - b] = val
    with np.errstate(all='ignore'):
        g = np.nanmean(t, axis=0)
    return None if np.isnan(g).any() else g / g.mean()
