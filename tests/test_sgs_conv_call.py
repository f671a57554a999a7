"""G comes from the conv call that uses the layer's own weight (issue 23, items 3
and 4).

- A Conv2d subclass with its own ``forward`` gets G from the ``F.conv2d`` call
  that convolves with its weight or with a tensor computed from it (mmcv's
  SAConv2d / ConvAWS2d / ConvWS2d standardise the weight first), not from the
  first call of its forward (a gate conv on a pooled map, SAConv2d's 1x1
  pre-context conv on a 1x1 map).
- A layer whose own call cannot be identified is named once, with that
  reason, and keeps G = 1.
- An interrupt (``KeyboardInterrupt``, any ``BaseException``) inside a refresh
  leaves no torch-function mode, hook or wrapper behind.

The G of a subclass is compared with the G of a plain ``nn.Conv2d`` on the
tensor its kernel slides over. Both come from the same code on the same
input in the same process, so they agree to rounding (atol 1e-9: the
standardised weights only change which call is picked, not the statistics).
"""
import logging

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from sgs_mm.sgs import NMIStats, SpatialGradScaler
from sgs_mm.sgs.collect import capture_inputs
from test_sgs_padding import DEVICES
from test_sgs_padding import smooth as smooth_c3


def smooth(seed=0):
    """4-channel smooth batches with ramps (test_sgs_padding's)."""
    return smooth_c3(c=4, seed=seed)


def g_of(module, x, name, device='cpu', logger=None):
    module, x = module.to(device), x.to(device)
    sgs = SpatialGradScaler(module, logger=logger)
    sgs.refresh([x])
    return sgs.scales()[name], sgs


def plain_g(x, device='cpu', **conv):
    net = nn.Sequential(nn.Conv2d(x.shape[1], 4, 3, **conv))
    return g_of(net, x, '0', device)[0]


class GatedConv(nn.Conv2d):
    """Runs a 3x3 gate conv on a 2x pooled map before its own conv."""

    def __init__(self, c_in, c_out):
        super().__init__(c_in, c_out, 3, padding=1)
        self.gate = nn.Conv2d(c_in, c_out, 3, padding=1)

    def forward(self, x):
        gate = torch.sigmoid(self.gate(F.avg_pool2d(x, 2)))
        gate = F.interpolate(gate, size=x.shape[-2:])
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding) * gate


@pytest.mark.parametrize('device', DEVICES)
def test_gated_subclass_gets_the_g_of_its_own_call(device):
    x = smooth()
    g, _ = g_of(nn.Sequential(GatedConv(4, 4)), x, '0', device)
    torch.testing.assert_close(g, plain_g(x, device, padding=1), rtol=0, atol=1e-9)
    # the gate conv, a layer of its own, still gets the G of its pooled input
    gate, _ = g_of(nn.Sequential(GatedConv(4, 4)), x, '0.gate', device)
    torch.testing.assert_close(gate, plain_g(F.avg_pool2d(x, 2), device, padding=1),
                               rtol=0, atol=1e-9)


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('cls', ['SAConv2d', 'ConvAWS2d', 'ConvWS2d'])
def test_mmcv_weight_standardising_convs(cls, device, caplog):
    """SAConv2d (DetectoRS) runs 1x1 convs before its own; all three convolve
    with a standardised copy of their weight. Each gets the G of a plain conv
    on its input (SAConv2d's pre-context is zero at init: the input is x)."""
    import mmcv.cnn
    import mmcv.ops
    module = getattr(mmcv.ops, cls, None) or getattr(mmcv.cnn, cls)
    torch.manual_seed(0)
    x = smooth()
    with caplog.at_level(logging.WARNING, 'sgs_mm'):
        g, sgs = g_of(nn.Sequential(module(4, 4, 3, padding=1)), x, '0', device)
    assert not [r for r in caplog.records if 'NaN' in r.getMessage()]
    assert not sgs.applier.scales['0'].eq(1).all()
    torch.testing.assert_close(g, plain_g(x, device, padding=1), rtol=0, atol=1e-9)


class UnfoldConv(nn.Conv2d):
    """Convolves by unfold + matmul: no F.conv2d call with its weight."""

    def forward(self, x):
        cols = F.unfold(x, self.kernel_size, padding=self.padding)
        out = self.weight.flatten(1) @ cols
        return out.view(x.shape[0], self.out_channels, *x.shape[-2:])


def test_layer_without_an_own_call_is_named_once_and_keeps_g_one(caplog):
    net = nn.Sequential(UnfoldConv(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1))
    sgs = SpatialGradScaler(net)
    with caplog.at_level(logging.WARNING, 'sgs_mm'):
        report = sgs.refresh([smooth()])
        sgs.refresh([smooth(seed=1)])
    said = [r.getMessage() for r in caplog.records if "'0'" in r.getMessage()]
    assert len(said) == 1, said
    assert 'own weight' in said[0] and 'did not run' not in said[0]
    assert report.no_own_call == ['0'] and report.idle == []
    assert torch.equal(sgs.scales()['0'], torch.ones(3, 3, dtype=torch.float64))
    assert not torch.equal(sgs.scales()['1'], torch.ones(3, 3, dtype=torch.float64))


# ----------------------------------------------------------- item 4: interrupts
class SelfPadding(nn.Conv2d):
    """Pads in its own forward; ``interrupt`` raises there (Ctrl-C)."""
    interrupt = None

    def forward(self, x):
        x = F.pad(x, [1, 1, 1, 1], mode='replicate')
        if self.interrupt is not None:
            raise self.interrupt
        return F.conv2d(x, self.weight, self.bias)


def leftovers(net):
    return dict(
        modes=torch._C._len_torch_function_stack(),
        hooks=sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in net.modules()),
        wrappers=[n for n, m in net.named_modules() if '_conv_forward' in m.__dict__],
        training=[m.training for m in net.modules()])


@pytest.mark.parametrize('where', ['forward', 'estimator'])
@pytest.mark.parametrize('error', [KeyboardInterrupt, SystemExit, RuntimeError])
def test_an_interrupt_inside_a_refresh_leaves_nothing_behind(where, error, monkeypatch):
    net = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), SelfPadding(4, 4, 3),
                        nn.Conv2d(4, 4, 3, padding=1))
    net.train()
    before = leftovers(net)
    sgs = SpatialGradScaler(net)
    if where == 'forward':
        net[1].interrupt = error
    else:
        real = NMIStats.update

        def update(self, *args):
            if self.geometry.kernel_size == (3, 3) and update.calls == 1:
                raise error
            update.calls += 1
            return real(self, *args)
        update.calls = 0
        monkeypatch.setattr(NMIStats, 'update', update)
    with pytest.raises(error):
        sgs.refresh([smooth()])
    assert leftovers(net) == before
    net[1].interrupt = None
    monkeypatch.undo()
    assert sgs.refresh([smooth()]).refresh == 1  # the scaler still works
    assert leftovers(net) == before


def test_capture_context_exits_a_mode_left_by_an_interrupted_forward():
    conv = SelfPadding(4, 4, 3)
    conv.interrupt = KeyboardInterrupt
    depth = torch._C._len_torch_function_stack()
    with pytest.raises(KeyboardInterrupt):
        with capture_inputs(conv, lambda x, zeros: None):
            conv(smooth())
    assert torch._C._len_torch_function_stack() == depth
