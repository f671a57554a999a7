"""Lemma 1: a multi-branch block trains exactly like one conv with G = Σ M_n.

SGD with momentum and weight decay is linear in weights and gradients, so the
merged weights of the branched block and the SGS-scaled single conv must agree
at every step (float64, ≥20 steps).
"""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from sgs_mm.sgs import ScalingApplier, reparam_scaling

ACB = [(3, 3), (1, 3), (3, 1)]
REPVGG = [(3, 3), (1, 1)]


class Branched(nn.Module):
    """Parallel convs with kernel shapes ``branches``, centred, outputs summed."""

    def __init__(self, branches, cin=4, cout=6):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(cin, cout, b, padding=(b[0] // 2, b[1] // 2), bias=False) for b in branches)

    def forward(self, x):
        return sum(conv(x) for conv in self.convs)

    def merged(self, kernel=(3, 3)):
        kh, kw = kernel
        w = 0
        for conv in self.convs:
            bh, bw = conv.kernel_size
            top, left = (kh - bh) // 2, (kw - bw) // 2
            w = w + F.pad(conv.weight, (left, kw - bw - left, top, kh - bh - top))
        return w


def sgd(params):
    return torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-3)


@pytest.mark.parametrize('branches,mode', [(ACB, 'grad'), (REPVGG, 'grad')])
def test_branched_block_equals_scaled_conv(branches, mode):
    torch.manual_seed(0)
    block = Branched(branches).double()
    single = nn.Conv2d(4, 6, 3, padding=1, bias=False).double()
    with torch.no_grad():
        single.weight.copy_(block.merged())
    g = reparam_scaling(branches, (3, 3), normalize=False)
    applier = ScalingApplier({'single': single.weight}, mode)
    applier.set('single', g)
    opt_block, opt_single = sgd(block.parameters()), sgd(single.parameters())
    applier.attach([opt_single])
    target_net = nn.Conv2d(4, 6, 3, padding=1).double()  # a fixed non-trivial target
    for step in range(25):
        x = torch.randn(8, 4, 10, 10, dtype=torch.float64)
        y = target_net(x).detach()
        for model, opt in ((block, opt_block), (single, opt_single)):
            opt.zero_grad()
            F.mse_loss(model(x), y).backward()
            opt.step()
        merged, w = block.merged().detach(), single.weight.detach()
        rel = (merged - w).norm() / merged.norm()
        assert rel <= 1e-5, f'step {step}: relative error {rel:.2e}'


def test_unscaled_conv_diverges_from_branched_block():
    torch.manual_seed(0)
    block = Branched(ACB).double()
    single = nn.Conv2d(4, 6, 3, padding=1, bias=False).double()
    with torch.no_grad():
        single.weight.copy_(block.merged())
    opt_block, opt_single = sgd(block.parameters()), sgd(single.parameters())
    for _ in range(5):
        x = torch.randn(8, 4, 10, 10, dtype=torch.float64)
        for model, opt in ((block, opt_block), (single, opt_single)):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
    rel = (block.merged() - single.weight).norm() / block.merged().norm()
    assert rel > 1e-3


def test_update_mode_scales_the_step():
    """mode='update': W <- W_old + G * (W_step - W_old) around optimizer.step()."""
    torch.manual_seed(1)
    conv = nn.Conv2d(2, 2, 3, bias=False).double()
    ref = nn.Conv2d(2, 2, 3, bias=False).double()
    ref.load_state_dict(conv.state_dict())
    g = reparam_scaling(ACB, (3, 3))
    applier = ScalingApplier({'c': conv.weight}, 'update')
    applier.set('c', g)
    opt = torch.optim.Adagrad(conv.parameters(), lr=0.1)
    opt_ref = torch.optim.Adagrad(ref.parameters(), lr=0.1)
    applier.attach([opt])
    x = torch.randn(3, 2, 6, 6, dtype=torch.float64)
    for model, o in ((conv, opt), (ref, opt_ref)):
        o.zero_grad()
        model(x).pow(2).mean().backward()
    old = ref.weight.detach().clone()
    opt_ref.step()
    opt.step()
    expected = old + g * (ref.weight.detach() - old)
    torch.testing.assert_close(conv.weight.detach(), expected, rtol=1e-12, atol=1e-12)
