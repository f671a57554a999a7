"""numpy >= 2.4 removed ``np.in1d``; mmpretrain 1.2.0 still calls it.

``mmpretrain/evaluation/metrics/retrieval.py`` (``RetrievalRecall`` and
``RetrievalAveragePrecision``, also used by its mAP/recall evaluators) calls
``np.in1d``, which numpy deprecated in 2.0 and removed in 2.4: there it raises
``AttributeError: module 'numpy' has no attribute 'in1d'``. Where numpy lacks
it, :func:`apply_numpy2_fixes` (run on ``import sgs_mm``) adds ``np.in1d`` with
its documented meaning, ``np.isin(ar1, ar2, ...).ravel()``; numpy versions that
still have it are left as they are.
"""
import numpy as np


def in1d(ar1, ar2, assume_unique=False, invert=False, *, kind=None):
    """``numpy.in1d`` as numpy < 2.4 defined it: a flat boolean array telling
    for each element of ``ar1`` whether it is in ``ar2``."""
    return np.isin(np.asarray(ar1).ravel(), ar2, assume_unique=assume_unique,
                   invert=invert, kind=kind)


def apply_numpy2_fixes():
    """Add ``np.in1d`` where this numpy no longer has it; return True if added."""
    try:
        np.in1d  # noqa: B018  (numpy < 2.4: present, maybe deprecated)
        return False
    except AttributeError:
        np.in1d = in1d
        return True
