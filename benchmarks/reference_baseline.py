"""The baseline sgs_mm's estimator is timed against: the reference code's algorithm.

The public reference implementation of SGS (Ascend-Research/Reparameterization,
``dependence.py``) captures every KxK conv's zero-padded input to the CPU, then
loops over channels and, inside, over the half window's displacements; for each
(channel, displacement) it flattens the two displaced crops P and Q and bins
them with ``fast_histogram.histogram2d`` (C, one thread) over [min, max] of P
and of Q with Sturges' bin count, then takes entropies with NumPy. This module
is that algorithm with the same histogram routine, written for this benchmark
(no reference code is copied). Semantics are SGS_SPEC §2 so that its G can be
compared with sgs_mm's:

- the maximum is counted in the last bin: ``fast_histogram``'s upper edge is
  exclusive, so it gets the float64 just above the maximum (the reference adds
  1e-12 to a float32 maximum, which under NumPy >= 2 drops the maximal values).
  As with the reference's 1e-12, a value lying exactly on an inner bin edge
  (e.g. exactly half the maximum when the minimum is 0) then falls one bin
  lower than in sgs_mm: on ResNet-50 features G differs by up to ~1e-6 (the
  NumPy loop of loop_baseline.py, binning exactly like sgs_mm, agrees to 1e-12);
- conv padding per side and the dilation step (the reference pads with
  ``padding[0]``/``padding[1]`` only and ignores dilation: identical for
  ResNet-50, whose KxK convs are square, padded symmetrically, undilated);
- inputs stay float32 as captured (fast_histogram reads them as float64).

NaN/Inf inputs are not handled (fast_histogram refuses a non-finite range; the
reference would stop there too). Requires ``fast-histogram``
(``pip install -r requirements/bench.txt``).
"""
import math

import numpy as np
import torch

from loop_baseline import nmi_of_pairs

try:
    from fast_histogram import histogram2d
except ImportError:  # benchmark-only dependency
    histogram2d = None


def require_fast_histogram():
    if histogram2d is None:
        raise SystemExit('the benchmark baseline needs fast-histogram: '
                         'pip install -r requirements/bench.txt')


def _range(v: np.ndarray):
    """[min, max] of ``v`` as fast_histogram's half-open range: the upper edge
    is the float64 just above the maximum, so the maximum lands in the last
    bin (see module docstring). A constant variable gets a range of width
    max(1, |min|) (all of it in bin 0; a zero-width range makes fast_histogram
    divide by zero)."""
    lo, hi = float(v.min()), float(v.max())
    if hi == lo:
        return lo, lo + max(1.0, abs(lo))
    return lo, float(np.nextafter(hi, np.inf))


def _fast_histogram_joint(p: np.ndarray, q: np.ndarray, bins: int) -> np.ndarray:
    return histogram2d(p, q, bins, [_range(p), _range(q)])


def nmi_fast_histogram(p: np.ndarray, q: np.ndarray, diag_removal: bool = False) -> float:
    """S of two equally long 1-D arrays, NaN when undefined (the joint
    histogram from fast_histogram, as the reference counts it)."""
    return nmi_of_pairs(p, q, diag_removal, _fast_histogram_joint)


def reference_layer_scaling(xp: np.ndarray, kernel_size, step=(1, 1), k: float = 5.0,
                            diag_removal: bool = False):
    """G (kh, kw) of one layer from its zero-padded input (N, C, Hp, Wp), or
    None when it would contain NaN. Loops like the reference: channels, then
    the half window's displacements (mirrored)."""
    require_fast_histogram()
    n, c, hp, wp = xp.shape
    kh, kw = kernel_size
    rh, rw = (kh - 1) // 2, (kw - 1) // 2
    half = []
    for a in range(-rh, rh + 1):
        for b in range(-rw, rw + 1):
            if (a, b) != (0, 0) and (-a, -b) not in half:
                half.append((a, b))
    t = np.ones((c, kh, kw))
    for ch in range(c):
        plane = xp[:, ch]
        for a, b in half:
            dy, dx = a * step[0], b * step[1]
            h, w = hp - abs(dy), wp - abs(dx)
            if h <= 0 or w <= 0:
                val = math.nan
            else:
                y0, x0 = max(0, -dy), max(0, -dx)
                p = plane[:, y0:y0 + h, x0:x0 + w].ravel()
                q = plane[:, y0 + dy:y0 + dy + h, x0 + dx:x0 + dx + w].ravel()
                s = nmi_fast_histogram(p, q, diag_removal)
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
    try:
        with torch.no_grad():
            for x in batches:
                model(x)
    finally:
        for h in handles:
            h.remove()
    return feats


def padded_cpu(geometries, dtype=np.float32):
    """``keep`` for :func:`capture_inputs` as the reference does it: the
    zero-padded input moved to the CPU, as a NumPy array (float32 by default)."""
    return lambda name, x: geometries[name].pad(x.detach()).cpu().numpy().astype(
        dtype, copy=False)
