"""Box scale/rotation drawn from clipped normals (mmpose)."""
from typing import Sequence, Tuple

import numpy as np
from mmcv.transforms.utils import cache_randomness
from mmpose.datasets.transforms import RandomBBoxTransform
from mmpose.registry import TRANSFORMS


@TRANSFORMS.register_module()
class ClippedNormalBBoxTransform(RandomBBoxTransform):
    """Scale and rotate the box by factors drawn from clipped normals.

    Pytorch-Pose-HG-3D (``src/lib/datasets/mpii.py``) draws, per sample::

        scale  = clip(1 + scale_std * N(0, 1), *scale_range)
        rotate = clip(rotate_std * N(0, 1), *rotate_range)   with prob p,
                 0 otherwise

    (``opts.scale`` 0.25 with range 1 -/+ 0.25, ``opts.rotate`` 30 degrees
    with range -/+ 60, p = 0.6). Clipping keeps the normal's shape inside the
    range and piles the tail mass on the bounds (for the scale: std 0.18,
    32 % of the draws exactly at 0.75 or 1.25); mmpose's
    ``RandomBBoxTransform`` samples a normal truncated to the range instead
    (std 0.135 for the same range). The box centre is not shifted (no shift
    upstream). ``bbox_scale`` is multiplied by ``scale`` and
    ``bbox_rotation`` set, as mmpose's transform does, so ``TopdownAffine``
    applies them.

    Args:
        scale_std (float): std of the scale factor. Defaults to 0.25.
        scale_range (tuple[float, float]): its clip range. Defaults to
            (0.75, 1.25).
        rotate_std (float): std of the rotation in degrees. Defaults to 30.
        rotate_range (tuple[float, float]): its clip range. Defaults to
            (-60, 60).
        rotate_prob (float): probability of rotating. Defaults to 0.6.
    """

    def __init__(self, scale_std: float = 0.25,
                 scale_range: Sequence[float] = (0.75, 1.25),
                 rotate_std: float = 30.,
                 rotate_range: Sequence[float] = (-60., 60.),
                 rotate_prob: float = 0.6) -> None:
        super().__init__(shift_prob=0., scale_prob=1.,
                         rotate_prob=rotate_prob)
        self.scale_std = float(scale_std)
        self.scale_range = tuple(float(v) for v in scale_range)
        self.rotate_std = float(rotate_std)
        self.rotate_range = tuple(float(v) for v in rotate_range)
        assert self.scale_range[0] <= 1 <= self.scale_range[1], scale_range
        assert self.rotate_range[0] <= 0 <= self.rotate_range[1], rotate_range

    @cache_randomness
    def _get_transform_params(self, num_bboxes: int) -> Tuple:
        """(offset (n, 2) zeros, scale (n, 1), rotate (n,)), float32."""
        scale = np.clip(1. + self.scale_std * np.random.randn(num_bboxes, 1),
                        *self.scale_range)
        rotate = np.clip(self.rotate_std * np.random.randn(num_bboxes),
                         *self.rotate_range)
        rotate = np.where(np.random.rand(num_bboxes) < self.rotate_prob,
                          rotate, 0.)
        offset = np.zeros((num_bboxes, 2))
        return (offset.astype(np.float32), scale.astype(np.float32),
                rotate.astype(np.float32))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(scale_std={self.scale_std}, '
                f'scale_range={self.scale_range}, '
                f'rotate_std={self.rotate_std}, '
                f'rotate_range={self.rotate_range}, '
                f'rotate_prob={self.rotate_prob})')
