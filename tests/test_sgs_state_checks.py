"""A damaged G in a checkpoint is refused, never trained with (issue 23, item 2).

``SpatialGradScaler.load_state_dict`` refuses a state whose G is non-finite,
negative or all zero, with an error naming the layer and the value found, and
changes nothing. Single zero taps are what ``method='reparam'`` (masks outside
every branch) and ``nmi`` (a tap with no dependence) can give: accepted. The
hook treats a refused G like a missing one: one warning naming the layers,
then a refresh at the resume point.
"""
import functools
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import sgs_mm  # noqa: F401  registers the hook
from sgs_mm.sgs import InvalidSGSState, SpatialGradScaler
from test_sgs_state import batch
from toy_runner import Messages, build_runner, is_ones, records, sgs_hook


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 5, padding=2)

    def forward(self, x):
        return self.conv2(F.relu(self.conv1(x)))


def refreshed():
    torch.manual_seed(0)
    net = Net()
    sgs = SpatialGradScaler(net)
    sgs.refresh([batch()])
    return sgs


DAMAGE = {
    'nan': (lambda g: g.index_fill(0, torch.tensor([0]), math.nan), 'nan'),
    'inf': (lambda g: g.index_fill(1, torch.tensor([2]), math.inf), 'inf'),
    'negative': (lambda g: -g, 'negative'),
    'zero': (lambda g: torch.zeros_like(g), 'all zero'),
}


@pytest.mark.parametrize('damage', sorted(DAMAGE))
def test_damaged_g_is_refused_naming_layer_and_value(damage):
    sgs = refreshed()
    state = sgs.state_dict()
    make, what = DAMAGE[damage]
    state['scales']['conv2'] = make(state['scales']['conv2'])
    fresh = SpatialGradScaler(Net())
    with pytest.raises(InvalidSGSState, match=rf"'conv2'.*{what}") as info:
        fresh.load_state_dict(state)
    assert isinstance(info.value, ValueError)
    assert info.value.layers == ['conv2']
    # nothing changed: G = 1 everywhere, no refresh counted
    assert fresh.num_refreshes == 0
    assert all(is_ones(g) for g in fresh.scales().values())


def test_a_damaged_g_never_reaches_the_weights():
    """Before the fix, NaN G was loaded, returned 'restored' and one SGD step
    made the weights NaN."""
    sgs = refreshed()
    state = sgs.state_dict()
    state['scales']['conv1'] = torch.full((3, 3), math.nan, dtype=torch.float64)
    torch.manual_seed(1)
    net = Net()
    fresh = SpatialGradScaler(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    fresh.attach(opt)
    with pytest.raises(InvalidSGSState):
        fresh.load_state_dict(state)
    net(batch()).square().mean().backward()
    opt.step()
    assert all(torch.isfinite(p).all() for p in net.parameters())


def test_single_zero_taps_are_accepted():
    """``reparam`` with branches that leave the corners out gives G = 0 there
    (Lemma 1: no branch trains them); such a state loads."""
    branches = [(1, 3), (3, 1)]
    src = SpatialGradScaler(Net(), method='reparam', branches=branches, normalize=False)
    state = src.state_dict()
    assert float(state['scales']['conv1'][0, 0]) == 0.0
    dst = SpatialGradScaler(Net(), method='reparam', branches=branches, normalize=False)
    assert dst.load_state_dict(state) == 2
    # and an nmi state with one zero tap (a displacement without dependence)
    state = refreshed().state_dict()
    state['scales']['conv1'][0, 0] = 0.0
    assert SpatialGradScaler(Net()).load_state_dict(state) == 2


# ------------------------------------------------------------------ the hook
HOOK = dict(type='SpatialGradScalingHook', k=5, interval=5, warmup=1, num_batches=1)
make_runner = functools.partial(build_runner, hook=HOOK)


@pytest.mark.slow  # two Runner trainings: about 8-14 s on a 2-core machine
def test_resume_with_nan_g_refreshes_at_once(tmp_path):
    make_runner(tmp_path, max_epochs=2).train()  # refresh at epoch 1
    ckpt = torch.load(tmp_path / 'epoch_2.pth', weights_only=False)
    ckpt['sgs']['scales']['conv2'] = torch.full((3, 3), math.nan, dtype=torch.float64)
    torch.save(ckpt, tmp_path / 'damaged.pth')
    resumed = make_runner(tmp_path, max_epochs=3, resume=True,
                          load_from=str(tmp_path / 'damaged.pth'))
    said = Messages(resumed)
    resumed.train()
    hook = sgs_hook(resumed)
    refused = said.warned('refused')
    assert len(refused) == 1 and "'conv2'" in refused[0] and 'nan' in refused[0]
    assert said.warned('refreshing G now')
    # a refresh at the resume point (epoch 2), then training with finite G and weights
    assert [r['epoch'] for r in records(tmp_path)] == [1, 2]
    assert all(torch.isfinite(g).all() and not is_ones(g) for g in hook.scales().values())
    model = resumed.model
    assert all(torch.isfinite(p).all() for p in model.parameters())
