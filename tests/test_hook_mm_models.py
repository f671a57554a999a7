"""The hook on real OpenMMLab models in a real Runner, on the real-format
fixtures: PSPNet-R18-D8 (mmseg, iteration-based, dilated convs) and
SimpleBaseline-R18 (mmpose). Every eligible conv must get a G that is not all
ones."""
import pytest
import torch
from mmengine.runner import Runner

import sgs_mm
from conftest import fixtures_dir
from mm_configs import no_syncbn, shipped_config

HOOK = dict(type='SpatialGradScalingHook', warmup=0, interval=2, num_batches=1, unit='iter')


def common(cfg, work_dir, max_iters):
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = f'sgs_{work_dir.name}'  # own logger/visualizer singletons
    cfg.custom_imports = dict(imports=['sgs_mm'], allow_failed_imports=False)
    cfg.custom_hooks = [HOOK]
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=1000)
    cfg.optim_wrapper = dict(type='OptimWrapper', optimizer=dict(
        type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4))
    cfg.param_scheduler = []
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator', 'test_dataloader', 'test_cfg',
                'test_evaluator'):
        cfg[key] = None
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1000, by_epoch=False)
    cfg.default_hooks.pop('visualization', None)
    cfg.log_level = 'WARNING'
    return cfg


def check_all_layers_scaled(runner):
    hook = next(h for h in runner.hooks if isinstance(h, sgs_mm.SpatialGradScalingHook))
    assert hook.num_refreshes == 2  # iters 0 and 2
    scales = hook.scales()
    for name, g in scales.items():
        assert not torch.allclose(g, torch.ones_like(g)), f'{name} kept G = 1'
        assert g.mean().item() == pytest.approx(1.0)
    return hook


@pytest.fixture
def fixtures():
    path = fixtures_dir()
    if not path.is_dir():
        pytest.skip(f'shared fixtures folder {path} does not exist (users\' clones)')
    return path


@pytest.mark.slow
def test_pspnet_r18_d8_all_convs_scaled(fixtures, tmp_path):
    cfg = shipped_config('mmseg', 'pspnet/pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py')
    cfg = common(cfg, tmp_path, max_iters=3)
    cfg.model = no_syncbn(cfg.model.to_dict())
    cfg.model['pretrained'] = None
    cfg.model['backbone']['init_cfg'] = None
    cfg.model['data_preprocessor']['size'] = (64, 128)
    cfg.train_dataloader = dict(
        batch_size=2, num_workers=0,  # PSP's 1x1 pooling branch needs BN over >1 value
        sampler=dict(type='InfiniteSampler', shuffle=True),
        dataset=dict(
            type='CityscapesDataset', data_root=str(fixtures / 'cityscapes_tiny'),
            data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
            pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                      dict(type='Resize', scale=(128, 64), keep_ratio=False),
                      dict(type='PackSegInputs')]))
    runner = Runner.from_cfg(cfg)
    runner.train()
    hook = check_all_layers_scaled(runner)
    names = list(hook.layers)
    # stem (3 convs), 8 basic blocks x 2 convs, PSP bottleneck, FCN auxiliary conv
    assert len(names) == 3 + 16 + 2, names
    dilated = [n for n in names if hook.layers[n].dilation != (1, 1)]
    assert {hook.layers[n].dilation for n in dilated} == {(2, 2), (4, 4)}
    assert hook.by_epoch is False


@pytest.mark.slow
def test_simplebaseline_r18_all_convs_scaled(fixtures, tmp_path):
    cfg = shipped_config('mmpose', 'body_2d_keypoint/topdown_heatmap/mpii/'
                  'td-hm_res50_8xb64-210e_mpii-256x256.py')
    cfg = common(cfg, tmp_path, max_iters=3)
    codec = dict(type='MSRAHeatmap', input_size=(64, 64), heatmap_size=(16, 16), sigma=2)
    model = cfg.model.to_dict()
    model['backbone'].update(depth=18, init_cfg=None)
    model['head'].update(in_channels=512, decoder=codec)
    model['test_cfg'] = dict(flip_test=False)
    cfg.model = model
    cfg.train_dataloader = dict(
        batch_size=2, num_workers=0,
        sampler=dict(type='DefaultSampler', shuffle=True),
        dataset=dict(
            type='MpiiDataset', data_root=str(fixtures / 'mpii_tiny'), data_mode='topdown',
            ann_file='test_mpii.json', data_prefix=dict(img=''),
            pipeline=[dict(type='LoadImage'), dict(type='GetBBoxCenterScale'),
                      dict(type='TopdownAffine', input_size=codec['input_size']),
                      dict(type='GenerateTarget', encoder=codec),
                      dict(type='PackPoseInputs')]))
    runner = Runner.from_cfg(cfg)
    runner.train()
    hook = check_all_layers_scaled(runner)
    names = list(hook.layers)
    # stem 7x7 + 8 basic blocks x 2 convs; the deconv head has no Conv2d > 1x1
    assert names[0] == 'backbone.conv1' and hook.layers[names[0]].kernel_size == (7, 7)
    assert len(names) == 1 + 16, names
