"""The synthetic demo data is deterministic and in the real on-disk formats
(read by the libraries' own dataset classes through our configs); the real
fixtures in ../shared/fixtures go through our configs' pipelines and a
forward/eval pass."""
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(imagenet_num_train_per_class=3, imagenet_num_val_per_class=2,
             cityscapes_num_train=3, cityscapes_num_val=2, mpii_num_train=4,
             mpii_num_val=3)


def _shared_fixtures() -> Path:
    env = os.environ.get('SGS_SHARED_DIR')
    base = Path(env) if env else REPO.parent / 'shared'
    path = base / 'fixtures'
    if not path.is_dir():
        pytest.skip(f'real-format fixtures not found at {path} (set '
                    'SGS_SHARED_DIR to the folder holding fixtures/)')
    return path


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory):
    from sgs_mm.data.synthetic import make_all
    root = tmp_path_factory.mktemp('demo_data')
    make_all(str(root), seed=0, **SMALL)
    return root


def _digest(root: Path):
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob('*')) if p.is_file()}


def test_generation_is_deterministic(demo_root, tmp_path):
    import time
    from sgs_mm.data.synthetic import make_all
    time.sleep(1.1)  # a time stamp anywhere (e.g. the .mat header) would show
    make_all(str(tmp_path / 'again'), seed=0, **SMALL)
    assert _digest(demo_root) == _digest(tmp_path / 'again')
    make_all(str(tmp_path / 'other'), seed=1, **SMALL)
    assert _digest(demo_root) != _digest(tmp_path / 'other')


def test_on_disk_layout(demo_root):
    from scipy.io import loadmat
    from sgs_mm.data.synthetic import CITYSCAPES_CLASSES_USED
    im = demo_root / 'imagenet'
    lines = (im / 'meta' / 'train.txt').read_text().split('\n')
    rel, label = lines[0].split()
    assert (im / 'train' / rel).is_file() and rel.endswith('.JPEG')
    assert (im / 'meta' / 'val.txt').is_file()
    cs = demo_root / 'cityscapes'
    imgs = sorted((cs / 'leftImg8bit' / 'train').rglob('*_leftImg8bit.png'))
    labs = sorted((cs / 'gtFine' / 'train').rglob(
        '*_gtFine_labelTrainIds.png'))
    assert len(imgs) == len(labs) == 3
    import cv2
    lab = cv2.imread(str(labs[0]), cv2.IMREAD_UNCHANGED)
    assert lab.dtype == np.uint8 and lab.ndim == 2
    assert set(np.unique(lab)) <= set(CITYSCAPES_CLASSES_USED) | {255}
    mp = demo_root / 'mpii' / 'annotations'
    rec = json.loads((mp / 'mpii_val.json').read_text())[0]
    assert set(rec) == {'joints', 'joints_vis', 'image', 'scale', 'center'}
    assert np.array(rec['joints']).shape == (16, 2)
    mat = loadmat(str(mp / 'mpii_gt_val.mat'))
    assert mat['headboxes_src'].shape == (2, 2, 3)
    assert mat['pos_gt_src'].shape == (2, 16, 3)
    assert mat['jnt_visible'].shape == (16, 3)
    assert mat['dataset_joints'].shape == (1, 16)


def _dataset(rel, split, root_key, root, **over):
    from mmengine.config import Config
    from mmengine.registry import DATASETS, DefaultScope
    from sgs_mm.launch.runner import register_scope
    cfg = Config.fromfile(str(REPO / 'configs' / rel))
    register_scope(cfg)
    ds = cfg[f'{split}_dataloader'].dataset
    ds[root_key] = str(root)
    ds.update(over)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return cfg, DATASETS.build(ds)


def _model(cfg):
    from mmengine.registry import MODELS, DefaultScope
    from sgs_mm.launch.runner import syncbn_to_bn
    syncbn_to_bn(cfg.model)
    cfg.model.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(cfg.model)
    model.eval()
    return model


def _evaluate(cfg, model, dataset, n):
    from mmengine.dataset import pseudo_collate
    from mmengine.evaluator import Evaluator
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        evaluator = Evaluator(cfg.val_evaluator)
        evaluator.dataset_meta = dataset.metainfo
        batch = pseudo_collate([dataset[i] for i in range(n)])
        with torch.no_grad():
            outs = model.test_step(batch)
        evaluator.process(outs, batch)
        return evaluator.evaluate(n)


def test_demo_data_through_demo_configs(demo_root):
    cfg, ds = _dataset('demo/resnet18_demo.py', 'val', 'data_root',
                       demo_root / 'imagenet')
    assert len(ds) == 8 and ds[0]['inputs'].shape[-2:] == (64, 64)
    m = _evaluate(cfg, _model(cfg), ds, 4)
    assert 0 <= m['accuracy/top1'] <= 100
    cfg, ds = _dataset('demo/pspnet_r18-d8_demo.py', 'val', 'data_root',
                       demo_root / 'cityscapes')
    assert len(ds) == 2
    m = _evaluate(cfg, _model(cfg), ds, 2)
    assert {'mIoU', 'mAcc', 'aAcc'} <= set(m)
    mp = demo_root / 'mpii'
    cfg, ds = _dataset('demo/td-hm_res18_demo.py', 'val', 'data_root',
                       str(mp) + '/',
                       headbox_file=str(mp / 'annotations/mpii_gt_val.mat'))
    assert len(ds) == 3 and ds[0]['data_samples'].gt_instances.head_size > 0
    m = _evaluate(cfg, _model(cfg), ds, 3)
    assert 0 <= m['PCK'] <= 100


def test_shared_cityscapes_fixture_through_our_configs():
    fx = _shared_fixtures() / 'cityscapes_tiny'
    # the real PSPNet config's test pipeline (Resize to 2048x1024, labels)
    cfg, ds = _dataset(
        'pspnet/pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py', 'val',
        'data_root', fx)
    assert len(ds) == 1
    sample = ds[0]
    assert tuple(sample['inputs'].shape[-2:]) == (1024, 2048)
    gt = sample['data_samples'].gt_sem_seg.data
    assert set(torch.unique(gt).tolist()) <= set(range(19)) | {255}
    # the training pipeline (random resize/crop/photometric) runs as well
    cfg_tr, ds_tr = _dataset(
        'pspnet/pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py', 'train',
        'data_root', fx,
        data_prefix=dict(img_path='leftImg8bit/val',
                         seg_map_path='gtFine/val'))
    assert tuple(ds_tr[0]['inputs'].shape[-2:]) == (512, 1024)
    # forward + IoUMetric with a PSPNet-R18-D8 at the demo input size
    cfg_d, ds_d = _dataset(
        'demo/pspnet_r18-d8_demo.py', 'val', 'data_root', fx)
    m = _evaluate(cfg_d, _model(cfg_d), ds_d, 1)
    assert {'mIoU', 'mAcc', 'aAcc'} <= set(m)


def test_shared_mpii_fixture_through_our_configs(tmp_path):
    from scipy.io import savemat
    fx = _shared_fixtures() / 'mpii_tiny'
    recs = json.loads((fx / 'test_mpii.json').read_text())
    # no head-box .mat ships with the fixture: derive one from the real
    # upper-neck/head-top joints (in MPII's own .mat layout)
    boxes = []
    for r in recs:
        j = np.array(r['joints'])
        c, s = (j[8] + j[9]) / 2, np.linalg.norm(j[9] - j[8]) / 2 + 1
        boxes.append([c - s, c + s])
    mat = tmp_path / 'mpii_gt_val.mat'
    savemat(str(mat), dict(headboxes_src=np.transpose(np.array(boxes),
                                                      [1, 2, 0])))
    over = dict(ann_file=str(fx / 'test_mpii.json'),
                data_prefix=dict(img=str(fx) + '/'), headbox_file=str(mat))
    cfg, ds = _dataset('simplebaseline/td-hm_res18_8xb64-210e_mpii-256x256.py',
                       'val', 'data_root', fx, **over)
    assert len(ds) == len(recs)
    assert tuple(ds[0]['inputs'].shape[-2:]) == (256, 256)
    cfg_tr, ds_tr = _dataset(
        'simplebaseline/td-hm_res18_8xb64-210e_mpii-256x256.py', 'train',
        'data_root', fx, ann_file=str(fx / 'test_mpii.json'),
        data_prefix=dict(img=str(fx) + '/'))
    assert ds_tr[0]['data_samples'].gt_fields.heatmaps.shape == (16, 64, 64)
    m = _evaluate(cfg, _model(cfg), ds, 2)
    assert 0 <= m['PCK'] <= 100 and 'PCK@0.1' in m


def test_chance_levels_of_trivial_predictors(demo_root):
    """sgs_mm.data.chance scores trivial predictors with the libraries'
    metric code: 1/num_classes; the majority class everywhere; the mean
    pose in each box (well below what a trained model reaches)."""
    from sgs_mm.data.chance import demo_chance
    ch = demo_chance(str(demo_root))
    assert ch['cls']['top-1'] == 25.0 and ch['cls']['num_classes'] == 4
    seg = ch['seg']
    # one class predicted: mAcc = 100 / (classes present in the val labels)
    assert 100 / 6 - 1e-3 <= seg['mAcc'] <= 100 / 3 + 1e-3
    assert 0 < seg['mIoU'] < seg['aAcc'] < 100
    assert 0 <= ch['pose']['PCKh@0.5'] < 60


def test_figures_lean_so_the_mean_pose_is_no_good_predictor(tmp_path):
    from sgs_mm.data.chance import pose_chance
    from sgs_mm.data.synthetic import make_mpii
    make_mpii(str(tmp_path / 'mpii'), num_train=60, num_val=30, seed=3)
    assert pose_chance(str(tmp_path / 'mpii'))['PCKh@0.5'] < 40
