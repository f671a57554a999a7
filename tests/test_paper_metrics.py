"""MpiiPCKhMeans (sgs_mm.evaluation.mpii_pckh_means) against eval_PCKh.py of
Pytorch-Pose-HG-3D as it is described (not copied): per joint,
PCKh_j = 100 * #(visible and ||pred - gt|| / head_size < 0.5) / #visible,
head_size = 0.6 x head-box diagonal; "Mean" = the plain mean of PCKh_j over
the 14 joints other than pelvis (6) and thorax (7). The MPII benchmark's
total (mmpose's `PCK`) weights each PCKh_j by #visible."""
import numpy as np
import pytest


def _metric():
    import sgs_mm.evaluation.mpii_pckh_means  # noqa: F401  registers it
    from mmengine.registry import DefaultScope
    from mmpose.registry import METRICS
    with DefaultScope.overwrite_default_scope('mmpose'):
        return METRICS.build(dict(type='MpiiPCKhMeans'))


def _people(seed=0, n=60):
    """Predictions (1-based, as MPII's .mat), ground truth, visibility and
    head sizes; visibility differs strongly per joint, so the weighted and
    the plain mean differ."""
    rng = np.random.RandomState(seed)
    gt = rng.uniform(50, 400, (n, 16, 2))
    head = rng.uniform(20, 60, n)  # already x 0.6
    err = rng.uniform(0, 1.0, (n, 16, 1)) * head[:, None, None]
    ang = rng.uniform(0, 2 * np.pi, (n, 16, 1))
    pred = gt + err * np.concatenate([np.cos(ang), np.sin(ang)], -1)
    # per-joint visibility rates from 30 % to 100 %
    vis = rng.uniform(size=(n, 16)) < np.linspace(0.3, 1.0, 16)
    vis[0] = True
    # joint-dependent accuracy: joints seen less often are also localised worse
    pred[:, :8] = gt[:, :8] + (pred[:, :8] - gt[:, :8]) * 1.6
    return pred, gt, vis, head


def _eval_pckh(pred, gt, vis, head, thr=0.5):
    """eval_PCKh.py's computation, from its description."""
    scaled = np.linalg.norm(pred - gt, axis=2) / head[:, None]
    count = vis.sum(0)
    pckh = 100. * ((scaled < thr) & vis).sum(0) / count
    keep = np.ones(16, bool)
    keep[[6, 7]] = False
    plain = pckh[keep].mean()
    weighted = (pckh[keep] * count[keep]).sum() / count[keep].sum()
    return plain, weighted, pckh


def _run(metric, pred, gt, vis, head):
    samples = [dict(
        pred_instances=dict(keypoints=(pred[i] - 1.0)[None]),  # 0-based
        gt_instances=dict(keypoints=gt[i][None],
                          keypoints_visible=vis[i][None].astype(np.float32),
                          head_size=head[i]))
        for i in range(len(gt))]
    metric.process([dict(inputs=None)] * len(samples), samples)
    return metric.compute_metrics(metric.results)


@pytest.mark.parametrize('seed', [0, 1])
def test_pckh_both_means_match_eval_pckh(seed):
    pred, gt, vis, head = _people(seed)
    plain, weighted, per_joint = _eval_pckh(pred, gt, vis, head)
    got = _run(_metric(), pred, gt, vis, head)
    assert got['PCKh_mean'] == pytest.approx(plain, abs=1e-6)
    assert got['PCKh_weighted'] == pytest.approx(weighted, abs=1e-6)
    assert got['PCK'] == pytest.approx(weighted, abs=1e-4)  # mmpose's
    assert got['Head PCK'] == pytest.approx(per_joint[9], abs=1e-4)
    assert abs(plain - weighted) > 0.5  # the two means differ here


def test_pckh_plain_mean_skips_a_joint_never_visible():
    pred, gt, vis, head = _people(2)
    vis[:, 0] = False  # right ankle never annotated
    got = _run(_metric(), pred, gt, vis, head)
    keep = [j for j in range(16) if j not in (0, 6, 7)]
    scaled = np.linalg.norm(pred - gt, axis=2) / head[:, None]
    pckh = 100. * ((scaled < 0.5) & vis).sum(0) / np.maximum(vis.sum(0), 1)
    assert got['PCKh_mean'] == pytest.approx(pckh[keep].mean(), abs=1e-6)
