"""Box size at most the image's longer side (mmpose)."""
import numpy as np
from mmcv.transforms import BaseTransform
from mmpose.registry import TRANSFORMS


@TRANSFORMS.register_module()
class ClampBBoxScaleToImage(BaseTransform):
    """Clamp each side of ``bbox_scale`` to the longer image side.

    Pytorch-Pose-HG-3D (``src/lib/datasets/mpii.py``) sets, in training and
    test alike and after the scale augmentation,
    ``s = min(s, max(img.shape[0], img.shape[1]))`` for its square box of
    side ``s``: a person box larger than the whole image is shrunk to the
    image's longer side before the affine crop. Here every side of
    ``bbox_scale`` (w, h) is clamped the same way, using ``img_shape``
    (or the image). Put it after ``GetBBoxCenterScale`` and, in training,
    after the box augmentation, before ``TopdownAffine``.
    """

    def transform(self, results: dict) -> dict:
        h, w = results.get('img_shape', results['img'].shape[:2])[:2]
        limit = max(h, w)
        results['bbox_scale'] = np.minimum(results['bbox_scale'],
                                           limit).astype(np.float32)
        return results
