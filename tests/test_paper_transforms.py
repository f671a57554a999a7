"""The data pieces of the paper recipes against the formulas of the code the
paper names, written here from their description:

- CentredPad (mmseg): SemSeg util/transform.py Crop pads int(pad / 2) before
  and the rest after, image with the mean, label with 255, then crops;
- ClippedNormalBBoxTransform (mmpose): Pytorch-Pose-HG-3D mpii.py
  s *= clip(N(1, 0.25), 0.75, 1.25), r = clip(N(0, 30), -60, 60) w.p. 0.6;
- ClampBBoxScaleToImage (mmpose): s = min(s, max(img.shape[:2]));
- pose pixel scaling: (img / 256 - mean) / std;
- ImageNet decode and resizes: PIL Image.open(...).convert('RGB'),
  PIL-bilinear RandomResizedCrop / Resize(256) + CenterCrop(224).

Real mm transforms, real on-disk fixtures (../shared/fixtures) where the
format matters; the fixture tests skip where that folder is absent."""
import copy
import functools
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
PSPNET = 'pspnet/pspnet_r18-d8_8xb2-paper200e_cityscapes-713x713.py'
POSE = 'simplebaseline/td-hm_res18_1xb32-paper140e_mpii-256x256.py'
IMAGENET = 'pretrain/resnet18_8xb32-paper120e_in1k.py'
MEAN_BGR = (103.53, 116.28, 123.675)


@functools.lru_cache(maxsize=None)
def _cfg_cached(rel):
    from mmengine.config import Config
    return Config.fromfile(str(REPO / 'configs' / rel))


def _cfg(rel):
    return copy.deepcopy(_cfg_cached(rel))


def _transform(scope, cfg):
    from mmengine.registry import DefaultScope
    from mmengine.registry import TRANSFORMS
    import importlib
    importlib.import_module(f'{scope}.datasets')  # registers the transforms
    with DefaultScope.overwrite_default_scope(scope):
        return TRANSFORMS.build(dict(cfg))


def _step(cfg, split, type_):
    pipe = cfg[f'{split}_dataloader']['dataset']['pipeline']
    return next(t for t in pipe if t['type'] == type_)


# ---------------------------------------------------------------- CentredPad
def _semseg_pad(img, label, size, mean, ignore=255):
    """SemSeg's Crop padding, from its description."""
    h, w = label.shape
    pad_h, pad_w = max(size[0] - h, 0), max(size[1] - w, 0)
    ph, pw = int(pad_h / 2), int(pad_w / 2)
    out = np.empty((h + pad_h, w + pad_w, 3), img.dtype)
    out[...] = np.round(np.asarray(mean)).astype(img.dtype)
    out[ph:ph + h, pw:pw + w] = img
    lab = np.full((h + pad_h, w + pad_w), ignore, label.dtype)
    lab[ph:ph + h, pw:pw + w] = label
    return out, lab


def _cityscapes_sample(fixtures):
    import mmcv
    root = fixtures / 'cityscapes_tiny'
    img = mmcv.imread(str(next(root.rglob('*_leftImg8bit.png'))))
    label = mmcv.imread(str(next(root.rglob('*_labelTrainIds.png'))),
                        flag='unchanged')
    return dict(img=img, gt_seg_map=label, seg_fields=['gt_seg_map'],
                img_shape=img.shape[:2])


@pytest.mark.parametrize('size', [(161, 300), (128, 256), (713, 713),
                                  (100, 100)])
def test_centred_pad_is_semseg_crop_padding(shared_fixtures, size):
    """The paper config's CentredPad on the real Cityscapes frame (256x128)
    equals SemSeg's padding; sides already long enough stay."""
    cfg = dict(_step(_cfg(PSPNET), 'train', 'CentredPad'), size=size)
    pad = _transform('mmseg', cfg)
    res = _cityscapes_sample(shared_fixtures)
    img, label = res['img'].copy(), res['gt_seg_map'].copy()
    out = pad(res)
    want_img, want_lab = _semseg_pad(img, label, size, MEAN_BGR)
    assert np.array_equal(out['img'], want_img)
    assert np.array_equal(out['gt_seg_map'], want_lab)
    assert out['img_shape'] == want_img.shape[:2]
    assert out['img'].dtype == img.dtype


def test_centred_pad_then_random_crop_is_semseg_rand_crop(shared_fixtures):
    """Pad + mmseg RandomCrop (cat_max_ratio 1) = SemSeg's Crop('rand'): every
    crop is a window of the centred-padded image, all offsets reachable."""
    cfg = _cfg(PSPNET)
    pad = _transform('mmseg', dict(_step(cfg, 'train', 'CentredPad'),
                                   size=(140, 200)))
    crop = _transform('mmseg', dict(_step(cfg, 'train', 'RandomCrop'),
                                    crop_size=(140, 200)))
    res = _cityscapes_sample(shared_fixtures)
    padded, lab = _semseg_pad(res['img'], res['gt_seg_map'], (140, 200),
                              MEAN_BGR)
    offsets = set()
    np.random.seed(0)
    for _ in range(60):
        out = crop(pad(copy.deepcopy(res)))
        assert out['img'].shape[:2] == (140, 200)
        hits = [(y, x) for y in range(padded.shape[0] - 139)
                for x in range(padded.shape[1] - 199)
                if np.array_equal(padded[y:y + 140, x:x + 200], out['img'])
                and np.array_equal(lab[y:y + 140, x:x + 200],
                                   out['gt_seg_map'])]
        assert hits, 'not a window of the centred-padded image'
        offsets.add(hits[0][1])
    assert len(offsets) > 20  # x offsets 0..56 drawn across the range


def test_pspnet_paper_train_pipeline_on_real_cityscapes(shared_fixtures):
    """The whole paper train pipeline (scale, rotate, blur, flip, centred pad,
    crop) on the real frame gives 713x713 crops before any batch padding;
    labels keep train ids and 255."""
    from mmengine.registry import DefaultScope
    from mmseg.registry import DATASETS
    cfg = _cfg(PSPNET)
    ds_cfg = cfg.train_dataloader.dataset
    ds_cfg.data_root = str(shared_fixtures / 'cityscapes_tiny')
    ds_cfg.data_prefix = dict(img_path='leftImg8bit/val',
                              seg_map_path='gtFine/val')
    np.random.seed(1)
    with DefaultScope.overwrite_default_scope('mmseg'):
        ds = DATASETS.build(ds_cfg)
        for _ in range(4):
            sample = ds[0]
            assert tuple(sample['inputs'].shape) == (3, 713, 713)
            labels = set(np.unique(sample['data_samples'].gt_sem_seg.data))
            assert labels <= set(range(19)) | {255}


# ------------------------------------------------ ClippedNormalBBoxTransform
def test_clipped_normal_bbox_transform_matches_hg3d_distribution():
    """scale = clip(N(1, .25), .75, 1.25): std 0.18, 31.7 % at the bounds;
    rotation w.p. 0.6 = clip(N(0, 30), -60, 60): std 28.8, 4.6 % at +-60.
    mmpose's truncated normal (the previous config) has std 0.135."""
    from mmpose.datasets.transforms import RandomBBoxTransform
    aug = _transform('mmpose', _step(_cfg(POSE), 'train',
                                     'ClippedNormalBBoxTransform'))
    n = 40000
    np.random.seed(0)
    res = aug(dict(bbox_center=np.zeros((n, 2), np.float32),
                   bbox_scale=np.full((n, 2), 100., np.float32)))
    s = res['bbox_scale'][:, 0] / 100.
    assert np.all(res['bbox_center'] == 0)  # no shift upstream
    assert np.allclose(res['bbox_scale'][:, 0], res['bbox_scale'][:, 1])
    assert s.min() >= 0.75 - 1e-6 and s.max() <= 1.25 + 1e-6
    assert abs(s.mean() - 1) < 0.005
    assert abs(s.std() - 0.1796) < 0.004
    at_bounds = np.mean(np.isclose(s, 0.75) | np.isclose(s, 1.25))
    assert abs(at_bounds - 0.3173) < 0.01
    r = res['bbox_rotation']
    rotated = r != 0
    assert abs(rotated.mean() - 0.6) < 0.01
    assert np.abs(r).max() <= 60
    assert abs(r[rotated].std() - 28.78) < 0.6
    assert abs(np.mean(np.abs(r[rotated]) == 60) - 0.0455) < 0.006
    old = RandomBBoxTransform(shift_prob=0, scale_factor=(0.75, 1.25),
                              scale_prob=1.0, rotate_factor=60., rotate_prob=.6)
    old_s = old(dict(bbox_center=np.zeros((n, 2), np.float32),
                     bbox_scale=np.ones((n, 2), np.float32)))['bbox_scale']
    assert abs(old_s[:, 0].std() - 0.135) < 0.004  # what it replaces


# ----------------------------------------------------- ClampBBoxScaleToImage
def _mpii_dataset(fixtures, split, ann_file=None):
    from mmengine.registry import DefaultScope
    from mmpose.registry import DATASETS
    cfg = _cfg(POSE)
    ds_cfg = cfg[f'{split}_dataloader'].dataset
    images = fixtures / 'mpii_tiny'
    ds_cfg.update(data_root=str(images),
                  ann_file=str(ann_file or images / 'test_mpii.json'),
                  data_prefix=dict(img=str(images) + '/'),
                  headbox_file=None, test_mode=False)
    with DefaultScope.overwrite_default_scope('mmpose'):
        return DATASETS.build(ds_cfg)


def test_clamp_bbox_scale_is_min_of_box_and_longer_image_side(
        shared_fixtures):
    from mmcv import imread
    clamp = _transform('mmpose', _step(_cfg(POSE), 'val',
                                       'ClampBBoxScaleToImage'))
    img = imread(str(shared_fixtures / 'mpii_tiny' / '052475643.jpg'))
    assert img.shape[:2] == (480, 854)
    for s in (300., 854., 1000., 2500.):
        res = clamp(dict(img=img, img_shape=img.shape[:2],
                         bbox_scale=np.array([[s, s]], np.float32)))
        assert np.allclose(res['bbox_scale'], min(s, max(img.shape[:2])))


def test_pose_paper_pipelines_on_real_mpii(shared_fixtures, tmp_path):
    """Test pipeline: the box the affine crop uses is
    min(scale * 200 * 1.25, longer image side) for each real MPII record
    (one record's person scale x3 so that the clamp acts on the 854x480
    image); train pipeline: 256x256 input, 16 x 64x64 heatmaps."""
    import json
    recs = json.loads((shared_fixtures / 'mpii_tiny' /
                       'test_mpii.json').read_text())
    big = next(r for r in recs if r['image'] == '052475643.jpg')
    big['scale'] *= 3  # box 1321 px > 854
    ann = tmp_path / 'mpii.json'
    ann.write_text(json.dumps(recs))
    val = _mpii_dataset(shared_fixtures, 'val', ann)
    sizes = {'052475643.jpg': 854}
    clamped = 0
    for i, rec in enumerate(recs):
        out = val[i]
        side = rec['scale'] * 200 * 1.25
        longer = sizes.get(rec['image'], 1280)
        got = out['data_samples'].metainfo['input_scale']
        assert np.allclose(got, min(side, longer), rtol=1e-5), rec['image']
        clamped += side > longer
    assert clamped == 1
    train = _mpii_dataset(shared_fixtures, 'train')
    np.random.seed(0)
    out = train[0]
    assert tuple(out['inputs'].shape) == (3, 256, 256)
    assert tuple(out['data_samples'].gt_fields.heatmaps.shape) == (16, 64, 64)


def test_pose_pixel_scaling_divides_by_256():
    """mpii.py: (img / 256 - mean) / std on the RGB image (here the BGR
    image is turned to RGB first)."""
    from mmengine.registry import DefaultScope
    from mmpose.registry import MODELS
    from mmpose.structures import PoseDataSample
    import mmpose.models  # noqa: F401
    pre_cfg = _cfg(POSE).model.data_preprocessor
    with DefaultScope.overwrite_default_scope('mmpose'):
        pre = MODELS.build(pre_cfg)
    bgr = np.random.RandomState(0).randint(0, 256, (8, 8, 3)).astype(np.uint8)
    out = pre(dict(inputs=[torch.from_numpy(bgr).permute(2, 0, 1)],
                   data_samples=[PoseDataSample()]))['inputs'][0]
    mean = np.array([0.485, 0.456, 0.406])
    std = np.array([0.229, 0.224, 0.225])
    want = (bgr[:, :, ::-1].astype(np.float64) / 256. - mean) / std
    assert np.allclose(out.permute(1, 2, 0).numpy(), want, atol=1e-5)


# ------------------------------------------------------ ImageNet PIL pipeline
def _pil_rgb_as_bgr(path):
    from PIL import Image
    with Image.open(path) as im:
        return np.asarray(im.convert('RGB'))[:, :, ::-1]


@pytest.mark.parametrize('name', ['color.jpg', 'gray.jpg'])
def test_imagenet_decode_is_pil_convert_rgb(shared_fixtures, name):
    path = shared_fixtures / 'imagenet_tiny' / name
    load = _transform('mmpretrain', _step(_cfg(IMAGENET), 'train',
                                          'LoadImageFromFile'))
    got = load(dict(img_path=str(path)))['img']
    assert np.array_equal(got, _pil_rgb_as_bgr(path))


@pytest.mark.parametrize('name', ['color.jpg', 'gray.jpg'])
def test_imagenet_test_resize_is_pil_bilinear(shared_fixtures, name):
    """Resize(256) (short side 256, long side int(256 * long / short)) and
    CenterCrop(224) (top = round((h - 224) / 2)) of torchvision on a PIL
    image, bilinear."""
    from PIL import Image
    cfg = _cfg(IMAGENET)
    path = shared_fixtures / 'imagenet_tiny' / name
    steps = [_transform('mmpretrain', t) for t in
             cfg.test_dataloader.dataset.pipeline[:-1]]
    res = dict(img_path=str(path))
    for t in steps:
        res = t(res)
    with Image.open(path) as im:
        im = im.convert('RGB')
        w, h = im.size
        if w < h:
            size = (256, int(256 * h / w))
        else:
            size = (int(256 * w / h), 256)
        im = im.resize(size, Image.BILINEAR)
        top = int(round((size[1] - 224) / 2.))
        left = int(round((size[0] - 224) / 2.))
        want = np.asarray(im.crop((left, top, left + 224, top + 224)))
    assert np.array_equal(res['img'], want[:, :, ::-1])


def test_imagenet_random_resized_crop_resizes_with_pil_bilinear(
        shared_fixtures):
    """With the crop fixed to the whole image (area 1, the image's aspect
    ratio) the paper config's RandomResizedCrop is PIL's bilinear resize of
    the image to 224x224 (timm/torchvision resized_crop on a PIL image)."""
    from PIL import Image
    path = shared_fixtures / 'imagenet_tiny' / 'color.jpg'
    cfg = _cfg(IMAGENET)
    load = _transform('mmpretrain', _step(cfg, 'train', 'LoadImageFromFile'))
    res = load(dict(img_path=str(path)))
    h, w = res['img'].shape[:2]
    rrc = dict(_step(cfg, 'train', 'RandomResizedCrop'),
               crop_ratio_range=(1., 1.), aspect_ratio_range=(w / h, w / h))
    got = _transform('mmpretrain', rrc)(res)['img']
    with Image.open(path) as im:
        want = np.asarray(im.convert('RGB').resize((224, 224),
                                                   Image.BILINEAR))
    assert np.array_equal(got, want[:, :, ::-1])
