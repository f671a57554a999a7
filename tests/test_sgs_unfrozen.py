"""Convs frozen when SGS starts and unfrozen later (issue 23, item 5).

Fine-tuning often freezes the backbone for a few epochs and then unfreezes
it. Such a conv trains with G = 1 until the next refresh, with one warning the
first time its weight gets a gradient; that refresh takes it in (named in the
log) and estimates its G, applied from then on. Tested on the engine and
through the hook in a Runner that unfreezes a layer in the middle of the run.
"""
import logging

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

import sgs_mm  # noqa: F401  registers the hook
from sgs_mm.sgs import SpatialGradScaler
from toy_runner import Messages, build_runner, is_ones, records, sgs_hook


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.stage = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x):
        return self.head(F.relu(self.stage(F.relu(self.stem(x)))))


def smooth(n=4, size=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.avg_pool2d(torch.randn(n, 3, size + 4, size + 4, generator=g), 5, 1, 0) * 3


def step(net, opt, seed=0):
    opt.zero_grad()
    net(smooth(seed=seed)).square().mean().backward()
    opt.step()


def test_unfrozen_conv_warned_once_then_taken_in_at_the_refresh(caplog):
    torch.manual_seed(0)
    net = Net()
    for p in net.stem.parameters():  # frozen_stages=1
        p.requires_grad_(False)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    sgs = SpatialGradScaler(net)
    sgs.attach(opt)
    assert list(sgs.layers) == ['stage', 'head']
    sgs.refresh([smooth()])
    step(net, opt)
    for p in net.stem.parameters():  # unfrozen
        p.requires_grad_(True)
    with caplog.at_level(logging.INFO, 'sgs_mm'):
        step(net, opt, 1)
        step(net, opt, 2)
        warned = [r.getMessage() for r in caplog.records
                  if r.levelno == logging.WARNING and 'stem' in r.getMessage()]
        assert len(warned) == 1 and 'G = 1' in warned[0], warned
        assert sgs.applier.fired.get('stem') is None  # not scaled yet
        caplog.clear()
        report = sgs.refresh([smooth(seed=3)])
    assert report.adopted == ['stem']
    assert [r for r in caplog.records if 'stem' in r.getMessage()
            and 'from this refresh on' in r.getMessage()]
    assert list(sgs.layers) == ['stem', 'stage', 'head']
    g = sgs.scales()['stem']
    assert not is_ones(g) and 'stem' in report.updated
    # applied from now on: the gradient is G times the unscaled one
    sgs.detach()
    raw = torch.autograd.grad(net(smooth(seed=4)).square().mean(), net.stem.weight)[0]
    sgs.attach(opt)
    net.zero_grad()
    net(smooth(seed=4)).square().mean().backward()
    torch.testing.assert_close(net.stem.weight.grad, raw * g.to(raw), rtol=1e-6, atol=0)
    assert sgs.state_dict()['scales'].keys() == {'stem', 'stage', 'head'}


def test_static_method_gives_an_unfrozen_conv_its_g_at_the_next_refresh():
    net = Net()
    net.stem.weight.requires_grad_(False)
    sgs = SpatialGradScaler(net, method='fixed', alpha=2.0, beta=4.0)
    net.stem.weight.requires_grad_(True)
    report = sgs.refresh([smooth()])
    assert report.adopted == ['stem']
    torch.testing.assert_close(sgs.scales()['stem'], sgs.scales()['stage'])


# ------------------------------------------------------------------ the hook
@HOOKS.register_module(force=True)
class FreezeStemUntil(Hook):
    """Freezes ``conv1`` before training (before SGS starts), unfreezes it at
    iteration ``unfreeze_iter``."""
    priority = 'VERY_HIGH'

    def __init__(self, unfreeze_iter):
        self.unfreeze_iter = unfreeze_iter

    def before_train(self, runner):
        runner.model.conv1.weight.requires_grad_(False)

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter == self.unfreeze_iter:
            runner.model.conv1.weight.requires_grad_(True)


HOOK = dict(type='SpatialGradScalingHook', k=5, interval=1, warmup=1, num_batches=1)


def test_hook_takes_in_a_stage_unfrozen_mid_run(tmp_path):
    # 8 iterations per epoch: refreshes at epochs 1, 2, 3; unfrozen at iteration 12
    runner = build_runner(tmp_path, hook=HOOK, max_epochs=4,
                          custom_hooks=[HOOK, dict(type='FreezeStemUntil', unfreeze_iter=12)])
    said = Messages(runner)
    runner.train()
    hook = sgs_hook(runner)
    warned = said.warned('conv1')
    assert len(warned) == 1 and 'G = 1' in warned[0], warned
    assert [m for m in said.info if 'conv1' in m and 'from this refresh on' in m]
    layers = [sorted(r['layers']) for r in records(tmp_path)]
    assert layers == [['conv2', 'conv3'], ['conv1', 'conv2', 'conv3'],
                      ['conv1', 'conv2', 'conv3']]
    assert not is_ones(hook.scales()['conv1'])
    assert 'conv1' in torch.load(tmp_path / 'epoch_4.pth', weights_only=False)['sgs']['scales']
