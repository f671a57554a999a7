"""SGS is applied exactly once, or says loudly why not (issue: no silent failure).

Each test here failed before its fix: a crash, a wrong gradient, or SGS
silently off, in a training setup users run.
"""
import functools
import logging

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from mmengine.config import Config
from mmengine.registry import MODELS
from mmengine.runner import Runner

import sgs_mm  # noqa: F401  registers the hook
from sgs_mm import SpatialGradScalingHook
from sgs_mm.sgs import SpatialGradScaler, fixed_scaling
from toy_runner import (Messages, SGSToyNet, build_runner, history, is_ones, records,
                        sgs_hook, toy_cfg)

HOOK = dict(type='SpatialGradScalingHook', k=5, interval=1, warmup=1, num_batches=1)


make_runner = functools.partial(build_runner, hook=HOOK)


# 2 ------------------------------------------------------------ shared weights
@MODELS.register_module(force=True)
class SGSSharedWeightNet(SGSToyNet):
    """conv2b reuses conv2's weight Parameter."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv2b = nn.Conv2d(8, 8, 3, padding=2, dilation=2, bias=False)
        self.conv2b.weight = self.conv2.weight

    def forward(self, inputs, data_samples=None, mode='tensor'):
        x = F.relu(self.bn1(self.conv1(inputs)))
        x = F.relu(self.conv2b(F.relu(self.conv2(x))))
        x = F.relu(self.conv3(x))
        logits = self.fc(self.proj(x).mean(dim=(2, 3)))
        if mode == 'loss':
            return dict(loss=F.cross_entropy(logits, data_samples))
        return logits


def test_shared_weight_is_scaled_once(tmp_path):
    runner = make_runner(tmp_path, max_epochs=2, model=dict(type='SGSSharedWeightNet'))
    runner.train()
    hook, model = sgs_hook(runner), runner.model
    assert hook.scaler.groups['conv2'] == ['conv2', 'conv2b']
    assert list(hook.scales()) == ['conv1', 'conv2', 'conv3']
    g = hook.scales()['conv2']
    assert not is_ones(g)
    batch = next(iter(runner.train_dataloader))
    grads = {}
    for attached in (True, False):
        model.zero_grad()
        (hook.scaler.attach if attached else hook.scaler.detach)()
        loss = model(**model.data_preprocessor(batch, True), mode='loss')['loss']
        loss.backward()
        grads[attached] = model.conv2.weight.grad.detach().clone()
    torch.testing.assert_close(grads[True], grads[False] * g.to(grads[False]),
                               rtol=1e-5, atol=1e-8)


def test_second_scaler_on_the_same_weights_takes_over(caplog):
    """Not refused (issue 15 case 5: the user may no longer hold the first one),
    not applied twice: the first is detached, with a warning naming the layers."""
    net = SGSToyNet()
    first = SpatialGradScaler(net)
    first.attach()
    with caplog.at_level(logging.WARNING, logger='sgs_mm'):
        SpatialGradScaler(net).attach()
    assert "still attached to ['conv1', 'conv2', 'conv3']" in caplog.text
    assert not first.applier.attached


# 3 --------------------------------------------------- efficient_conv_bn_eval
@MODELS.register_module(force=True)
class SGSToyResNet(SGSToyNet):
    """A torchvision ResNet-18 as ``backbone`` (17 KxK convs)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.backbone = torchvision.models.resnet18(num_classes=3)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        logits = self.backbone(inputs)
        if mode == 'loss':
            return dict(loss=F.cross_entropy(logits, data_samples))
        return logits


def test_efficient_conv_bn_eval_still_gets_g(tmp_path):
    runner = make_runner(tmp_path, max_epochs=1, model=dict(type='SGSToyResNet'),
                         hook=dict(HOOK, warmup=0, include='backbone.*'),
                         efficient_conv_bn_eval=['backbone'])
    runner.train()
    assert 'forward' in vars(runner.model.backbone)  # mmengine's fused fx forward is on
    scales = sgs_hook(runner).scales()
    assert len(scales) == 17
    assert not [n for n, g in scales.items() if is_ones(g)]


# 4 + schedule in epochs on an iteration-based loop
@pytest.mark.parametrize('batch_size,sampler,expected', [
    (4, 'DefaultSampler', [8, 16]), (8, 'DefaultSampler', [4, 8, 12, 16]),
    (4, 'InfiniteSampler', [8, 16]), (8, 'InfiniteSampler', [4, 8, 12, 16])])
@pytest.mark.parametrize('args', [dict(unit='epoch'), dict(by_epoch=True)])
def test_epochs_on_iteration_loop(tmp_path, batch_size, sampler, expected, args):
    # 32 samples: one epoch is 8 iterations at batch 4, 4 at batch 8
    cfg = toy_cfg(tmp_path, hook=dict(HOOK, **args), by_epoch=False, max_iters=19,
                  batch_size=batch_size)
    cfg['train_dataloader']['sampler']['type'] = sampler
    runner = Runner.from_cfg(Config(cfg))
    runner.train()
    assert [r['iter'] for r in records(tmp_path)] == expected
    hook = sgs_hook(runner)
    assert hook.schedule.iters_per_epoch == 32 // batch_size
    assert hook.last_refresh == len(expected)  # counted in epochs


def test_unit_and_by_epoch_must_agree():
    with pytest.raises(ValueError, match='by_epoch=False contradicts'):
        SpatialGradScalingHook(unit='epoch', by_epoch=False)
    with pytest.raises(ValueError, match='unit must be one of'):
        SpatialGradScalingHook(unit='epochs')


# 5 -------------------------------------------------- resume, other method
def test_resume_with_other_method_starts_afresh(tmp_path):
    make_runner(tmp_path, max_epochs=2).train()
    hook = dict(type='SpatialGradScalingHook', method='fixed', alpha=2.0, beta=4.0)
    resumed = make_runner(tmp_path, hook=hook, max_epochs=3, resume=True,
                          load_from=str(tmp_path / 'epoch_2.pth'))
    said = Messages(resumed)
    resumed.train()
    scales = sgs_hook(resumed).scales()
    assert torch.allclose(scales['conv1'], fixed_scaling(2.0, 4.0).double())
    assert is_ones(scales['conv3'])  # 5x5: 'fixed' is 3x3 only
    assert any("computed with method='nmi' (now 'fixed')" in m for m in said.warning)
    assert not any(m.startswith('SGS: restored') for m in said.info)


def test_resume_says_what_it_restored(tmp_path):
    make_runner(tmp_path, max_epochs=2).train()
    resumed = make_runner(tmp_path, max_epochs=3, resume=True,
                          load_from=str(tmp_path / 'epoch_2.pth'))
    said = Messages(resumed)
    resumed.train()
    assert 'SGS: restored G of 3 layers from refresh #1 (nmi, k=5.0)' in said.info


# 6 ---------------------------------------------------- parametrized weights
@MODELS.register_module(force=True)
class SGSWeightNormNet(SGSToyNet):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        nn.utils.parametrizations.weight_norm(self.conv2)


def test_parametrized_conv_is_refused_by_name(tmp_path):
    runner = make_runner(tmp_path, max_epochs=2, model=dict(type='SGSWeightNormNet'))
    said = Messages(runner)
    runner.train()
    hook = sgs_hook(runner)
    assert list(hook.layers) == ['conv1', 'conv3']
    assert any("SGS cannot scale ['conv2']" in m for m in said.warning)
    assert 'conv2' not in records(tmp_path)[-1]['layers']


# 8 -------------------------------------------- a reused work_dir, not resumed
def test_new_run_in_reused_work_dir_starts_a_new_history(tmp_path):
    make_runner(tmp_path, max_epochs=3).train()
    assert [r['epoch'] for r in records(tmp_path)] == [1, 2]
    run_b = make_runner(tmp_path, hook=dict(HOOK, k=3, warmup=2), max_epochs=3)
    run_b.train()
    data = history(tmp_path)
    assert [r['epoch'] for r in data['records']] == [2]
    assert data['k'] == 3.0


def test_resumed_run_drops_records_after_its_resume_point(tmp_path):
    make_runner(tmp_path, max_epochs=3).train()  # refreshes at epochs 1 and 2
    resumed = make_runner(tmp_path, max_epochs=3, resume=True,
                          load_from=str(tmp_path / 'epoch_1.pth'))
    resumed.train()  # redoes epochs 1..2: the refresh at epoch 2 once
    assert [r['epoch'] for r in records(tmp_path)] == [1, 2]


# ------------------------------------------------------------------ self-check
def test_self_check_names_a_bypassed_and_a_replaced_weight(caplog):
    torch.manual_seed(0)
    net = SGSToyNet()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    sgs = SpatialGradScaler(net)
    sgs.attach(opt)
    x = torch.randn(4, 3, 16, 16)
    sgs.refresh([x])
    sgs.applier._handles[1].remove()  # conv2's gradient hook gone
    net.conv3.weight = nn.Parameter(net.conv3.weight.detach().clone())  # assign=True style
    opt.add_param_group(dict(params=[net.conv3.weight]))
    with caplog.at_level(logging.WARNING, logger='sgs_mm'):
        net(x).sum().backward()
        opt.step()
    text = caplog.text
    assert "['conv2'] received gradients that did not pass SGS's gradient hook" in text
    assert "weight Parameter of ['conv3'] was replaced" in text
    assert 'conv1' not in text
    # once per refresh: the next step says nothing
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger='sgs_mm'):
        net(x).sum().backward()
        opt.step()
    assert caplog.text == ''


def test_self_check_explains_a_conv_that_trains_but_never_ran_in_refresh(caplog):
    class Bypass(SGSToyNet):
        def forward(self, inputs, data_samples=None, mode='tensor'):
            x = F.relu(self.bn1(self.conv1(inputs)))
            # uses conv2's weight without calling conv2
            x = F.relu(F.conv2d(x, self.conv2.weight, self.conv2.bias, padding=2, dilation=2))
            return self.fc(self.proj(F.relu(self.conv3(x))).mean(dim=(2, 3)))

    net = Bypass()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    sgs = SpatialGradScaler(net)
    sgs.attach(opt)
    x = torch.randn(4, 3, 16, 16)
    with caplog.at_level(logging.WARNING, logger='sgs_mm'):
        report = sgs.refresh([x])
        assert report.idle == ['conv2']
        net(x).sum().backward()
        opt.step()
    assert "['conv2'] train, but their forward never ran during the last refresh" in caplog.text


def test_clean_training_has_no_self_check_warning(tmp_path):
    runner = make_runner(tmp_path, max_epochs=3)
    said = Messages(runner)
    runner.train()
    assert sgs_hook(runner).num_refreshes == 2
    assert not [m for m in said.warning if 'self-check' in m]


# 1 ---------------------------------------- mmseg, variable-size random crops
@pytest.mark.slow
def test_mmseg_variable_size_crops_refresh(shared_fixtures, tmp_path):
    from mm_configs import no_syncbn, shipped_config
    from test_hook_mm_models import common
    cfg = shipped_config('mmseg', 'pspnet/pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py')
    cfg = common(cfg, tmp_path, max_iters=1)
    cfg.custom_hooks = [dict(type='SpatialGradScalingHook', warmup=0, interval=5,
                             num_batches=2)]
    cfg.model = no_syncbn(cfg.model.to_dict())
    cfg.model['pretrained'] = None
    cfg.model['backbone']['init_cfg'] = None
    cfg.model['data_preprocessor']['size'] = (64, 96)  # pads in training mode only
    cfg.train_dataloader = dict(
        batch_size=2, num_workers=0, sampler=dict(type='InfiniteSampler', shuffle=True),
        dataset=dict(
            type='CityscapesDataset', data_root=str(shared_fixtures / 'cityscapes_tiny'),
            data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
            # ADE20K/VOC style: random scale, random crop, no Pad
            pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                      dict(type='RandomResize', scale=(96, 48), ratio_range=(0.5, 2.0),
                           keep_ratio=True),
                      dict(type='RandomCrop', crop_size=(64, 96)),
                      dict(type='PackSegInputs')]))
    runner = Runner.from_cfg(cfg)
    runner.train()
    hook = sgs_hook(runner)
    assert hook.num_refreshes == 1
    assert not [n for n, g in hook.scales().items() if is_ones(g)]
