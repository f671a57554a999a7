"""The straightforward implementation SGS_SPEC §2 replaces: like the reference
code, capture every layer's padded input on the CPU, then loop over channels
and displacements with one NumPy histogram each. Same values as sgs_mm's
estimator (bins, ranges, max included); used only for timing and agreement."""
import math

import numpy as np
import torch


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


def nmi(p, q, diag_removal):
    if diag_removal:
        keep = (p != 0) & (q != 0)
        p, q = p[keep], q[keep]
    n = p.size
    if n == 0:
        return math.nan
    bins = int(1 + math.ceil(math.log2(n)))
    hist = np.bincount(_index(p, bins) * bins + _index(q, bins),
                       minlength=bins * bins).reshape(bins, bins)
    if diag_removal:
        np.fill_diagonal(hist, 0)
    if hist.sum() == 0:
        return math.nan
    h_pq = _entropy(hist.ravel())
    if h_pq == 0:
        return math.nan
    return (_entropy(hist.sum(1)) + _entropy(hist.sum(0)) - h_pq) / h_pq


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


def capture_inputs(model, layers, batches, keep=lambda name, x: x.detach()):
    """One forward over all batches; ``keep(name, input)`` of every layer's
    input per batch, by layer name."""
    feats = {name: [] for name in layers}
    handles = [conv.register_forward_pre_hook(
        lambda m, inp, name=name: feats[name].append(keep(name, inp[0])))
        for name, conv in layers.items()]
    with torch.no_grad():
        for x in batches:
            model(x)
    for h in handles:
        h.remove()
    return feats


def padded_numpy(geometries):
    """``keep`` for :func:`capture_inputs`: the zero-padded input, float64, on the CPU."""
    return lambda name, x: geometries[name].pad(x.detach()).cpu().numpy().astype(np.float64)
