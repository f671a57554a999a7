"""Pad image and segmentation maps centred up to a minimum size (mmseg)."""
from typing import Sequence, Union

import mmcv
from mmcv.transforms import BaseTransform
from mmseg.registry import TRANSFORMS


@TRANSFORMS.register_module()
class CentredPad(BaseTransform):
    """Pad the image and every segmentation map, centred, to at least
    ``size`` = (h, w); larger sides stay as they are.

    SemSeg's ``util/transform.py`` ``Crop`` does this before its random crop:
    the missing rows/columns are split ``int(pad / 2)`` before (top/left) and
    the rest after, the image is filled with ``pad_val`` (SemSeg: the mean
    colour, which normalises to 0) and the labels with ``seg_pad_val`` (the
    ignore index). Placed before mmseg's ``RandomCrop`` it reproduces
    ``Crop(crop_type='rand')``; without it mmseg crops first and the
    data_preprocessor pads bottom/right.

    The image keeps its dtype: for uint8 images a fractional ``pad_val``
    rounds to the nearest grey level (OpenCV ``copyMakeBorder``).

    Args:
        size (int | tuple[int, int]): minimum (h, w).
        pad_val (float | Sequence[float]): image fill, per channel in the
            image's channel order. Defaults to 0.
        seg_pad_val (int): label fill. Defaults to 255.
    """

    def __init__(self, size: Union[int, Sequence[int]],
                 pad_val: Union[float, Sequence[float]] = 0,
                 seg_pad_val: int = 255) -> None:
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        assert len(self.size) == 2 and min(self.size) > 0, size
        self.pad_val = tuple(pad_val) if isinstance(pad_val, (list, tuple)) \
            else pad_val
        self.seg_pad_val = seg_pad_val

    def _padding(self, h: int, w: int):
        pad_h, pad_w = max(self.size[0] - h, 0), max(self.size[1] - w, 0)
        top, left = pad_h // 2, pad_w // 2
        return left, top, pad_w - left, pad_h - top  # mmcv.impad order

    def transform(self, results: dict) -> dict:
        img = results['img']
        padding = self._padding(*img.shape[:2])
        if any(padding):
            results['img'] = mmcv.impad(img, padding=padding,
                                        pad_val=self.pad_val)
            for key in results.get('seg_fields', []):
                results[key] = mmcv.impad(results[key], padding=padding,
                                          pad_val=self.seg_pad_val)
        results['img_shape'] = results['img'].shape[:2]
        results['pad_shape'] = results['img'].shape[:2]
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(size={self.size}, '
                f'pad_val={self.pad_val}, seg_pad_val={self.seg_pad_val})')
