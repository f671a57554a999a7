"""SGS on a stock mmdet detector through tools/train.py and tools/test.py (issue 17 §5).

mmdet's own RetinaNet-R18 config (``mmdet::retinanet/retinanet_r18_fpn_1x_coco.py``,
shipped in the installed package) with the two SGS lines, its backbone initialised
from an mmpretrain ResNet-18 checkpoint through ``sgs_mm.checkpoint.convert_backbone``
(as docs/detection.md describes), trained for 2 iterations on a tiny COCO-format set
written here (jpg images + instances json), then evaluated by tools/test.py with
mmdet's CocoMetric.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip('mmdet')
pytest.importorskip('pycocotools')

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ('square', 'bar')


def write_coco(root: Path, n_images=4, size=(128, 96), seed=0):
    """``root/images/*.jpg`` + ``root/instances.json``: noise with 1-2 coloured boxes each."""
    rng = np.random.default_rng(seed)
    (root / 'images').mkdir(parents=True)
    w, h = size
    images, annotations = [], []
    for i in range(n_images):
        img = rng.integers(60, 120, (h, w, 3), dtype=np.uint8)
        for j in range(1 + i % 2):
            cat = 1 + (i + j) % 2
            bw, bh = (30, 30) if cat == 1 else (50, 16)
            x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            img[y:y + bh, x:x + bw] = (230, 40, 40) if cat == 1 else (40, 40, 230)
            annotations.append(dict(id=len(annotations) + 1, image_id=i + 1, category_id=cat,
                                    bbox=[x, y, bw, bh], area=bw * bh, iscrowd=0))
        name = f'{i:03d}.jpg'
        Image.fromarray(img).save(root / 'images' / name, quality=95)
        images.append(dict(id=i + 1, file_name=name, width=w, height=h))
    categories = [dict(id=k + 1, name=c) for k, c in enumerate(CLASSES)]
    (root / 'instances.json').write_text(json.dumps(dict(
        images=images, annotations=annotations, categories=categories)))


CONFIG = '''
_base_ = 'mmdet::retinanet/retinanet_r18_fpn_1x_coco.py'

# the two SGS lines (sgs_mm.checkpoint: the StrictPretrained backbone initialiser)
custom_imports = dict(imports=['sgs_mm', 'sgs_mm.checkpoint'], allow_failed_imports=False)
custom_hooks = [dict(type='SpatialGradScalingHook', k=5, interval=1, warmup=1, unit='iter',
                     num_batches=1)]

# fine-tune from the (SGS-)pretrained backbone, no download
model = dict(backbone=dict(init_cfg=dict(type='StrictPretrained', checkpoint={backbone!r},
                                         prefix='backbone.')),
             bbox_head=dict(num_classes=2),
             test_cfg=dict(score_thr=0.0))  # 2 iterations score below the default 0.05

# a tiny COCO-format set, small images
data_root = {data!r}
metainfo = dict(classes={classes!r})
train_pipeline = [
    dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(128, 96), keep_ratio=True), dict(type='PackDetInputs')]
test_pipeline = [
    dict(type='LoadImageFromFile'), dict(type='Resize', scale=(128, 96), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='instances.json',
                 data_prefix=dict(img='images/'), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='instances.json',
                 data_prefix=dict(img='images/'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'instances.json')
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=1, val_interval=1)
default_hooks = dict(logger=dict(interval=1))
'''


def run_tool(tool, *args, timeout=600):
    proc = subprocess.run([sys.executable, str(ROOT / 'tools' / tool), *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_retinanet_r18_with_sgs_trains_and_tests(tmp_path):
    write_coco(tmp_path / 'coco')
    # an mmpretrain ResNet-18 classifier checkpoint (the SGS pretrain stage saves these)
    from mmengine.registry import DefaultScope
    from mmpretrain.models import ImageClassifier
    torch.manual_seed(0)
    # built in mmpretrain's scope whatever scope an earlier test left behind
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        classifier = ImageClassifier(backbone=dict(type='ResNet', depth=18),
                                     neck=dict(type='GlobalAveragePooling'),
                                     head=dict(type='LinearClsHead', num_classes=10,
                                               in_channels=512))
    pretrain = classifier.state_dict()
    torch.save(dict(meta=dict(epoch=100), state_dict=pretrain), tmp_path / 'epoch_100.pth')
    out = subprocess.run([sys.executable, '-m', 'sgs_mm.checkpoint.convert_backbone',
                          tmp_path / 'epoch_100.pth', tmp_path / 'r18_backbone.pth',
                          '--to', 'plain'], capture_output=True, text=True, check=True,
                         cwd=ROOT).stdout
    assert '120 tensors (plain -> plain)' in out
    config = tmp_path / 'retinanet_r18_sgs_tiny.py'
    config.write_text(CONFIG.format(backbone=str(tmp_path / 'r18_backbone.pth'),
                                    data=f'{tmp_path / "coco"}/', classes=CLASSES))

    work = tmp_path / 'work'
    log = run_tool('train.py', config, '--work-dir', work)
    assert 'StrictPretrained: loaded 120 tensors' in log
    history = [json.loads(ln) for ln in (work / 'sgs_g_history.jsonl').read_text().splitlines()]
    header, records = history[0], history[1:]
    assert header['unit'] == 'iter' and [r['refresh'] for r in records] == [1]
    layers = records[0]['layers']
    # the detector's trainable KxK convs: backbone stages 2-4, FPN, RetinaNet head
    for name in ('backbone.layer2.0.conv1', 'backbone.layer4.1.conv2', 'neck.fpn_convs.0.conv',
                 'bbox_head.cls_convs.3.conv', 'bbox_head.retina_cls', 'bbox_head.retina_reg'):
        assert name in layers, sorted(layers)
        g = np.asarray(layers[name])
        assert g.shape == (3, 3) and abs(g.mean() - 1) < 1e-4 and g.std() > 1e-3, name
    # frozen_stages=1: the stem and layer1 do not train, so SGS leaves them out
    assert not [n for n in layers if n == 'backbone.conv1' or n.startswith('backbone.layer1.')]
    assert len(layers) == 27, sorted(layers)
    ckpt = torch.load(work / 'epoch_1.pth', map_location='cpu', weights_only=False)
    assert ckpt['meta']['iter'] == 2 and ckpt['sgs']['num_refreshes'] == 1
    # the frozen stem kept the pretrained weights
    torch.testing.assert_close(ckpt['state_dict']['backbone.conv1.weight'],
                               pretrain['backbone.conv1.weight'])

    metrics_file = tmp_path / 'metrics.json'
    log = run_tool('test.py', config, work / 'epoch_1.pth', '--work-dir', tmp_path / 'test',
                   '--metrics-out', metrics_file)
    assert 'bbox_mAP' in log
    metrics = json.loads(metrics_file.read_text())
    assert {'coco/bbox_mAP', 'coco/bbox_mAP_50'} <= set(metrics)
    assert all(-1 <= metrics[k] <= 1 for k in ('coco/bbox_mAP', 'coco/bbox_mAP_50'))
