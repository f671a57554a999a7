"""MPII PCKh with both means: joint-count-weighted and plain (mmpose)."""
from typing import Dict

import numpy as np
from mmpose.evaluation.functional import keypoint_pck_accuracy
from mmpose.evaluation.metrics import MpiiPCKAccuracy
from mmpose.registry import METRICS

# MPII joint order; pelvis (6) and thorax (7) are left out of the means
MPII_EXCLUDED = (6, 7)


@METRICS.register_module()
class MpiiPCKhMeans(MpiiPCKAccuracy):
    """``MpiiPCKAccuracy`` plus the plain mean of the per-joint PCKh.

    Both means are over the 14 joints other than pelvis and thorax, of the
    per-joint PCKh@``thr`` (percentage of visible joints within ``thr`` x
    head size, head size = 0.6 x the head-box diagonal):

    - ``PCKh_weighted``: each joint weighted by its number of visible
      annotations (= correct / visible over all 14 joints pooled). This is
      mmpose's ``PCK`` and the MPII benchmark's "Total" (kept under ``PCK``
      as well).
    - ``PCKh_mean``: the unweighted mean of the 14 per-joint values, what
      ``eval_PCKh.py`` of Pytorch-Pose-HG-3D (the paper's Table 8 code)
      prints as "Mean".

    A joint with no visible annotation is left out of both means.
    Per-part values (``Head PCK`` ... ``Ankle PCK``) and ``PCK@0.1`` are
    mmpose's.
    """

    def compute_metrics(self, results: list) -> Dict[str, float]:
        metrics = super().compute_metrics(results)
        if 'head' not in self.norm_item:
            return metrics
        pred = np.concatenate([r['pred_coords'] for r in results]) + 1.0
        gt = np.concatenate([r['gt_coords'] for r in results])
        mask = np.concatenate([r['mask'] for r in results])
        head = np.concatenate([r['head_size'] for r in results])
        per_joint, _, _ = keypoint_pck_accuracy(pred, gt, mask, self.thr,
                                                head)
        keep = np.ones(per_joint.shape[0], dtype=bool)
        keep[list(MPII_EXCLUDED)] = False
        counts = mask.sum(axis=0).astype(np.float64)
        keep &= counts > 0  # a joint never visible has no PCKh
        counts, values = counts[keep], 100. * per_joint[keep]
        metrics['PCKh_weighted'] = float(np.sum(values * counts) /
                                         counts.sum())
        metrics['PCKh_mean'] = float(np.mean(values))
        return metrics
