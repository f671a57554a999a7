"""The real dataset-format files in ../shared/fixtures load through the
libraries' own dataset classes and standard pipelines."""
import numpy as np
import torch
from mmengine.registry import DefaultScope

CITYSCAPES_TRAIN_IDS = {0, 1, 2, 4, 5, 7, 8, 10, 11, 13, 255}


def test_cityscapes_fixture_through_mmseg_pipeline(shared_fixtures):
    import mmseg.datasets  # noqa: F401
    from mmseg.registry import DATASETS
    from mmseg.structures import SegDataSample

    root = shared_fixtures / 'cityscapes_tiny'
    cfg = dict(
        type='CityscapesDataset',
        data_root=str(root),
        data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations'),
            dict(type='PackSegInputs'),
        ])
    with DefaultScope.overwrite_default_scope('mmseg'):
        dataset = DATASETS.build(cfg)
        assert len(dataset) == 1
        assert len(dataset.metainfo['classes']) == 19
        item = dataset[0]

    img = item['inputs']
    sample = item['data_samples']
    assert isinstance(sample, SegDataSample)
    assert img.dtype == torch.uint8 and tuple(img.shape) == (3, 128, 256)
    assert sample.img_path.endswith('frankfurt_000000_000294_leftImg8bit.png')
    assert sample.seg_map_path.endswith('_gtFine_labelTrainIds.png')
    seg = sample.gt_sem_seg.data
    assert tuple(seg.shape) == (1, 128, 256)
    values = set(torch.unique(seg).tolist())
    assert values <= CITYSCAPES_TRAIN_IDS and len(values) > 3


def test_mpii_fixture_through_mmpose_topdown_pipeline(shared_fixtures):
    import mmpose.datasets  # noqa: F401
    from mmpose.registry import DATASETS
    from mmpose.structures import PoseDataSample

    root = shared_fixtures / 'mpii_tiny'
    codec = dict(type='MSRAHeatmap', input_size=(256, 256),
                 heatmap_size=(64, 64), sigma=2)
    cfg = dict(
        type='MpiiDataset',
        data_root=str(root),
        data_mode='topdown',
        ann_file='test_mpii.json',
        data_prefix=dict(img=''),
        pipeline=[
            dict(type='LoadImage'),  # mmpose's LoadImageFromFile
            dict(type='GetBBoxCenterScale'),
            dict(type='TopdownAffine', input_size=codec['input_size']),
            dict(type='GenerateTarget', encoder=codec),
            dict(type='PackPoseInputs'),
        ])
    with DefaultScope.overwrite_default_scope('mmpose'):
        dataset = DATASETS.build(cfg)
        assert len(dataset) > 0
        assert dataset.metainfo['num_keypoints'] == 16
        items = [dataset[i] for i in range(len(dataset))]

    images = {it['data_samples'].img_path for it in items}
    assert len(images) == 5  # five real MPII images
    for it in items:
        img, sample = it['inputs'], it['data_samples']
        assert isinstance(sample, PoseDataSample)
        assert img.dtype == torch.uint8 and tuple(img.shape) == (3, 256, 256)
        heatmaps = sample.gt_fields.heatmaps
        assert tuple(heatmaps.shape) == (16, 64, 64)
        weights = np.asarray(sample.gt_instance_labels.keypoint_weights)
        assert weights.shape == (1, 16)
        # visible joints inside the crop produce a Gaussian peak near 1
        assert float(heatmaps.max()) > 0.5 and weights.sum() > 0
        assert sample.gt_instances.keypoints.shape == (1, 16, 2)
