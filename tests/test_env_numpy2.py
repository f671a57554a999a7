"""numpy 2: the fixes sgs_mm carries for the OpenMMLab stack (sgs_mm.compat).

mmpretrain 1.2.0's retrieval metrics call ``np.in1d``, which numpy 2.4
removed. ``import sgs_mm`` adds it where it is missing. The tests remove
``np.in1d`` (as numpy >= 2.4 ships) to show the real metrics fail without
the fix and give the right values with it, on whatever numpy is installed.
"""
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

import sgs_mm  # noqa: F401  (applies the fixes)
from sgs_mm.compat.numpy2 import apply_numpy2_fixes, in1d


def test_import_sgs_mm_provides_in1d():
    code = ('import warnings; warnings.simplefilter("ignore"); import sgs_mm, numpy as np; '
            'print(np.__version__, np.in1d([[1, 5], [2, 7]], [2, 5]).tolist())')
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split(' ', 1)[1].strip() == '[False, True, True, False]', res.stdout


@pytest.mark.parametrize('invert', [False, True])
@pytest.mark.parametrize('assume_unique', [False, True])
def test_in1d_is_numpys_definition(invert, assume_unique):
    rng = np.random.default_rng(0)
    a = rng.permutation(24).reshape(2, 3, 4)
    b = rng.permutation(30)[:10]
    got = in1d(a, b, assume_unique=assume_unique, invert=invert)
    assert got.shape == (24,) and got.dtype == bool
    expected = np.array([(x in set(b.tolist())) != invert for x in a.ravel().tolist()])
    np.testing.assert_array_equal(got, expected)
    native = np.__dict__.get('in1d')
    if native is not None and native is not in1d:  # numpy < 2.4: the original
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', DeprecationWarning)
            np.testing.assert_array_equal(
                native(a, b, assume_unique=assume_unique, invert=invert), got)


def test_mmpretrain_retrieval_metrics_without_np_in1d(monkeypatch):
    from mmpretrain.evaluation.metrics import (RetrievalAveragePrecision,
                                               RetrievalRecall)
    monkeypatch.delattr(np, 'in1d', raising=False)  # as numpy >= 2.4 ships
    y_pred = [[0], [1], [2], [3]]
    y_true = [[0, 1], [2], [1], [0, 3]]
    with pytest.raises(AttributeError, match='in1d'):
        RetrievalRecall.calculate(y_pred, y_true, topk=1, pred_indices=True,
                                  target_indices=True)

    assert apply_numpy2_fixes() is True
    assert apply_numpy2_fixes() is False  # present now: left alone
    # mmpretrain's own docstring example: samples 0 and 3 hit at top-1
    recall, = RetrievalRecall.calculate(y_pred, y_true, topk=1, pred_indices=True,
                                        target_indices=True)
    assert float(recall) == pytest.approx(50.0)
    # positives at ranks 1 and 3 in both samples: AP = (1 + 2/3) / 2
    scores = torch.tensor([[0.9, 0.8, 0.3, 0.2], [0.1, 0.2, 0.3, 0.4]])
    onehot = torch.tensor([[1, 0, 1, 0], [0, 1, 0, 1]])
    ap = RetrievalAveragePrecision.calculate(scores, onehot, topk=4)
    assert float(ap) == pytest.approx(100 * (1 + 2 / 3) / 2)
