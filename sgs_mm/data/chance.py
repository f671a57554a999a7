"""Chance levels of the demo tasks: what a trivial predictor scores on a
dataset in the real on-disk formats, computed with the libraries' own metric
code (so a trained model's number can be read against it).

* classification (top-1): 1 / number of classes, and the most frequent val
  class (the same for the balanced synthetic data);
* segmentation (mIoU / mAcc / aAcc, mmseg ``IoUMetric``): predict the class
  most frequent in the training labels everywhere;
* pose (PCKh@0.5, mmpose ``MpiiPCKAccuracy``): predict the mean training pose
  placed in each val person's box (the box a top-down model is given).

    python -m sgs_mm.data.chance data/demo
"""
import argparse
import json
import os.path as osp
import warnings
from typing import Dict

import numpy as np

__all__ = ['classification_chance', 'segmentation_chance', 'pose_chance',
           'demo_chance']


def classification_chance(root: str) -> Dict[str, float]:
    """ImageNet layout: ``meta/classes.txt`` (or the labels) and
    ``meta/val.txt``."""
    labels = []
    with open(osp.join(root, 'meta', 'val.txt')) as f:
        labels = [int(line.split()[1]) for line in f if line.strip()]
    classes_file = osp.join(root, 'meta', 'classes.txt')
    if osp.isfile(classes_file):
        with open(classes_file) as f:
            n = sum(1 for line in f if line.strip())
    else:
        n = len(set(labels))
    counts = np.bincount(labels, minlength=n)
    return {'top-1': 100.0 / n,
            'top-1 (most frequent class)': 100.0 * counts.max() / counts.sum(),
            'num_classes': n}


def segmentation_chance(root: str, num_classes: int = 19,
                        ignore_index: int = 255) -> Dict[str, float]:
    """Cityscapes layout: the most frequent train class predicted at every
    val pixel, scored by mmseg's ``IoUMetric`` arithmetic."""
    import glob

    import cv2
    import torch
    from mmseg.evaluation.metrics import IoUMetric

    def maps(split):
        pattern = osp.join(root, 'gtFine', split, '*',
                           '*_gtFine_labelTrainIds.png')
        for path in sorted(glob.glob(pattern)):
            yield cv2.imread(path, cv2.IMREAD_UNCHANGED)

    counts = np.zeros(256, np.int64)
    for lab in maps('train'):
        counts += np.bincount(lab.ravel(), minlength=256)
    counts[ignore_index] = 0
    majority = int(counts.argmax())
    areas = []
    for lab in maps('val'):
        label = torch.from_numpy(lab.astype(np.int64))
        pred = torch.full_like(label, majority)
        areas.append(IoUMetric.intersect_and_union(pred, label, num_classes,
                                                   ignore_index))
    if not areas:
        raise FileNotFoundError(f'no val label maps under {root}/gtFine/val')
    totals = [sum(a[i] for a in areas) for i in range(4)]
    m = IoUMetric.total_area_to_metrics(*totals, metrics=['mIoU'])
    return {'mIoU': float(np.nanmean(m['IoU']) * 100),
            'mAcc': float(np.nanmean(m['Acc']) * 100),
            'aAcc': float(m['aAcc'] * 100),
            'predicted class (train id)': majority}


def pose_chance(root: str) -> Dict[str, float]:
    """MPII layout: the mean training pose (joint offsets from the box
    centre in units of the box scale) put into every val box, scored by
    mmpose's ``MpiiPCKAccuracy`` (PCKh@0.5, head boxes from
    ``annotations/mpii_gt_val.mat``)."""
    from mmengine.logging import MMLogger
    from mmpose.datasets import MpiiDataset
    from mmpose.evaluation.metrics import MpiiPCKAccuracy
    MMLogger.get_instance('sgs_mm.chance', log_level='WARNING')

    def instances(split, **kw):
        with warnings.catch_warnings():
            # mmpose looks for its metainfo file relative to the current
            # folder first, warns, then takes its packaged copy
            warnings.filterwarnings('ignore', message='The metainfo config '
                                    'file', category=UserWarning)
            ds = MpiiDataset(ann_file=f'annotations/mpii_{split}.json',
                             data_root=root, data_mode='topdown',
                             data_prefix=dict(img='images/'), pipeline=[],
                             test_mode=True, serialize_data=False, **kw)
        return [ds.get_data_info(i) for i in range(len(ds))]

    def offsets(info):
        # dataset keypoints are MPII's 1-based values, centres 0-based
        kpt = info['keypoints'][0] - 1.0
        return (kpt - info['bbox_center'][0]) / info['bbox_scale'][0]

    train = instances('train')
    mean = np.mean([offsets(i) for i in train], axis=0)
    val = instances('val', headbox_file=osp.join(
        root, 'annotations', 'mpii_gt_val.mat'))
    results = []
    for info in val:
        pred = info['bbox_center'][0] + mean * info['bbox_scale'][0]
        results.append(dict(
            pred_coords=pred[None].astype(np.float32),
            gt_coords=info['keypoints'].astype(np.float32),
            mask=info['keypoints_visible'].astype(bool),
            head_size=np.repeat(info['head_size'].reshape(1, -1)[:, :1], 2,
                                axis=1)))
    metric = MpiiPCKAccuracy(norm_item='head', prefix='chance')
    return {'PCKh@0.5': float(metric.compute_metrics(results)['PCK'])}


def demo_chance(data_root: str) -> Dict[str, Dict[str, float]]:
    """Chance levels of the three demo datasets under ``data_root``
    (``imagenet/``, ``cityscapes/``, ``mpii/``), per task."""
    return dict(
        cls=classification_chance(osp.join(data_root, 'imagenet')),
        seg=segmentation_chance(osp.join(data_root, 'cityscapes')),
        pose=pose_chance(osp.join(data_root, 'mpii')))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('data_root', help='folder with imagenet/, cityscapes/, '
                   'mpii/ (python -m sgs_mm.data.synthetic writes them)')
    args = p.parse_args(argv)
    print(json.dumps(demo_chance(args.data_root), indent=1))


if __name__ == '__main__':
    main()
