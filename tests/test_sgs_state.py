"""SpatialGradScaler: honest state, notebook re-runs, out of memory (issue 15, cases 2, 5, 7).

- A state saved under other layer names (``module.``, ``_orig_mod.``,
  ``backbone.``) maps onto the model's layers, unambiguously; otherwise the
  return value and the log say exactly how many layers got their G, and a
  load restoring none returns 0 (falsy) with the refresh count left alone.
- A new scaler on weights another scaler still hooks takes over, with a
  warning naming the layers; G is applied exactly once.
- An out-of-memory error in a refresh is retried with smaller chunks; if it
  still fails, the previous G is kept with a warning naming max_chunk_elems.
"""
import copy
import logging

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from sgs_mm.compat.versions import OutOfMemoryError
from sgs_mm.sgs import NMIStats, SpatialGradScaler


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 5, padding=2)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        return self.fc(F.relu(self.conv2(x)).mean((2, 3)))


class Holder(nn.Module):
    """``net`` under another attribute name (``module``, ``_orig_mod``, ``backbone``)."""

    def __init__(self, net, attr, head=False):
        super().__init__()
        setattr(self, attr, net)
        self.attr = attr
        if head:  # a head with a KxK conv of its own
            self.head = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return getattr(self, self.attr)(x)


def batch(n=4, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.avg_pool2d(torch.randn(n, 3, size + 4, size + 4, generator=g), 5, 1, 0) * 3


def refreshed_state():
    torch.manual_seed(0)
    net = Net()
    sgs = SpatialGradScaler(net)
    sgs.refresh([batch()])
    return net, sgs.state_dict()


# ------------------------------------------------------------------ case 2
@pytest.mark.parametrize('attr', ['module', '_orig_mod', 'backbone'])
@pytest.mark.parametrize('direction', ['saved_plain', 'saved_wrapped'])
def test_state_under_wrapper_prefix_maps_onto_layers(attr, direction, caplog):
    net, state = refreshed_state()
    if direction == 'saved_wrapped':  # saved on the wrapped model, loaded into the plain one
        wrapped = Holder(copy.deepcopy(net), attr)
        sgs = SpatialGradScaler(wrapped)
        sgs.refresh([batch()])
        state, target = sgs.state_dict(), Net()
        assert set(state['scales']) == {f'{attr}.conv1', f'{attr}.conv2'}
        names = {f'{attr}.{n}': n for n in ('conv1', 'conv2')}
    else:
        target = Holder(Net(), attr)
        names = {n: f'{attr}.{n}' for n in ('conv1', 'conv2')}
    fresh = SpatialGradScaler(target)
    with caplog.at_level(logging.INFO, logger='sgs_mm'):
        restored = fresh.load_state_dict(state)
    assert restored == 2
    assert fresh.num_refreshes == 1
    for saved, mine in names.items():
        torch.testing.assert_close(fresh.scales()[mine], state['scales'][saved].double())
    assert 'restored G of 2 layers from refresh #1' in caplog.text
    assert 'mapped' in caplog.text


def test_state_that_fits_no_layer_restores_nothing(caplog):
    _, state = refreshed_state()
    state['scales'] = {f'other.{n}': g for n, g in state['scales'].items()}
    state['scales']['stem.conv'] = torch.ones(7, 7)  # fits no kernel either
    target = Net()
    sgs = SpatialGradScaler(target)
    with caplog.at_level(logging.INFO, logger='sgs_mm'):
        restored = sgs.load_state_dict({**state, 'scales': {'x.y': torch.ones(7, 7)}})
    assert restored == 0 and not restored
    assert sgs.num_refreshes == 0  # so a hook refreshes as scheduled
    assert 'restored G of' not in caplog.text
    assert 'none of this model' in caplog.text
    assert all(torch.equal(g, torch.ones_like(g)) for g in sgs.scales().values())


def test_partial_state_says_how_many_layers(caplog):
    _, state = refreshed_state()
    del state['scales']['conv2']
    sgs = SpatialGradScaler(Net())
    with caplog.at_level(logging.INFO, logger='sgs_mm'):
        assert sgs.load_state_dict(state) == 1
    assert 'restored G of 1 of 2 layers from refresh #1' in caplog.text
    assert "no saved G for ['conv2']" in caplog.text


def test_ambiguous_names_are_not_guessed():
    from sgs_mm.sgs.scaler import map_layer_names
    kernels = {'backbone.conv1': (3, 3), 'neck.conv1': (3, 3), 'backbone.layer.conv2': (5, 5)}
    mapping, ambiguous = map_layer_names(['conv1'], kernels, {'conv1': (3, 3)})
    assert mapping == {} and ambiguous == ['conv1']
    # one prefix for all wins over a deeper one that fits a single layer
    kernels = {'backbone.conv1': (3, 3), 'backbone.layer1.conv1': (3, 3)}
    saved = {'conv1': (3, 3), 'layer1.conv1': (3, 3)}
    mapping, ambiguous = map_layer_names(list(saved), kernels, saved)
    assert mapping == {'conv1': 'backbone.conv1', 'layer1.conv1': 'backbone.layer1.conv1'}
    # DDP around torch.compile
    mapping, _ = map_layer_names(['module._orig_mod.conv1'], {'conv1': (3, 3)},
                                 {'module._orig_mod.conv1': (3, 3)})
    assert mapping == {'module._orig_mod.conv1': 'conv1'}


# ------------------------------------------------------------------ case 5
def grads(net, x):
    net.zero_grad()
    net(x).sum().backward()
    return {n: p.grad.detach().clone() for n, p in net.named_parameters()}


@pytest.mark.parametrize('keep_old', [False, True])
def test_new_scaler_takes_over_from_a_forgotten_one(keep_old, caplog):
    torch.manual_seed(0)
    net = Net()
    plain = copy.deepcopy(net)
    x = batch()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    old = SpatialGradScaler(net)  # a notebook cell ...
    old.attach(opt)
    old.refresh([x])
    if not keep_old:
        del old
    sgs = SpatialGradScaler(net)  # ... run again
    with caplog.at_level(logging.WARNING, logger='sgs_mm'):
        sgs.attach(opt)
    assert "another SpatialGradScaler was still attached to ['conv1', 'conv2']" in caplog.text
    sgs.refresh([batch(seed=1)])
    g = sgs.scales()
    got, want = grads(net, x), grads(plain, x)
    for name in ('conv1', 'conv2'):
        torch.testing.assert_close(got[f'{name}.weight'],
                                   want[f'{name}.weight'] * g[name].float(), rtol=1e-5,
                                   atol=1e-7)  # once, with the new scaler's G
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger='sgs_mm'):
        opt.step()  # the old scaler's self-check is gone with it: no false alarm
    assert caplog.text == ''
    if keep_old:
        assert not old.applier.attached and not old._step_handles


def test_takeover_in_update_mode_scales_the_step_once():
    torch.manual_seed(0)
    net = Net()
    x = batch()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    SpatialGradScaler(net, mode='update').attach(opt)
    sgs = SpatialGradScaler(net, mode='update')
    sgs.attach(opt)
    sgs.refresh([x])
    before = net.conv2.weight.detach().clone()
    net.zero_grad()
    net(x).sum().backward()
    step = -0.1 * net.conv2.weight.grad
    opt.step()
    torch.testing.assert_close(net.conv2.weight - before,
                               step * sgs.scales()['conv2'].float(), rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------ case 7
def fail_above(monkeypatch, limit, calls):
    """NMIStats.update raises the OutOfMemoryError for chunks above ``limit``."""
    update = NMIStats.update

    def update_or_oom(self, pass_idx, x, padding=None):
        calls.append(self.max_elems)
        if self.max_elems > limit:
            raise OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB')
        return update(self, pass_idx, x, padding)
    monkeypatch.setattr(NMIStats, 'update', update_or_oom)


def test_refresh_out_of_memory_retries_with_smaller_chunks(monkeypatch, caplog):
    torch.manual_seed(0)
    net = Net()
    x = batch()
    want = SpatialGradScaler(copy.deepcopy(net))
    want.refresh([x])
    calls = []
    fail_above(monkeypatch, 1 << 18, calls)
    emptied = []
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'is_initialized', lambda: True)
    monkeypatch.setattr(torch.cuda, 'empty_cache', lambda: emptied.append(1))
    sgs = SpatialGradScaler(net)
    with caplog.at_level(logging.WARNING, logger='sgs_mm'):
        report = sgs.refresh([x])
    assert report.failed is None and report.refresh == 1
    assert calls[0] == 1 << 20 and min(calls) == 1 << 17
    assert emptied  # the CUDA cache was freed before the retry
    assert 'ran out of memory (OutOfMemoryError: CUDA out of memory' in caplog.text
    assert 'retrying with chunks 8x smaller' in caplog.text
    for name, g in want.scales().items():  # NMI does not depend on the chunk size
        assert torch.equal(sgs.scales()[name], g)


def test_refresh_out_of_memory_keeps_previous_g(monkeypatch, caplog):
    torch.manual_seed(0)
    net = Net()
    sgs = SpatialGradScaler(net)
    sgs.refresh([batch()])
    before = sgs.scales()
    fail_above(monkeypatch, 0, [])
    with caplog.at_level(logging.WARNING, logger='sgs_mm'):
        report = sgs.refresh([batch(seed=3)])
    assert report.failed and 'out of memory' in report.failed
    assert sgs.num_refreshes == 1 and not report.updated
    for name, g in before.items():
        assert torch.equal(sgs.scales()[name], g)
    assert 'the previous G is kept and training goes on' in caplog.text
    assert 'max_chunk_elems=262144' in caplog.text
    assert net.training  # modes restored


def test_out_of_memory_in_the_model_forward_is_handled_too(monkeypatch):
    net = Net()
    sgs = SpatialGradScaler(net)

    def forward(model, x):
        raise RuntimeError('[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: '
                           "can't allocate memory: you tried to allocate 1099511627776 bytes")
    report = sgs.refresh([batch()], forward=forward)
    assert report.failed and sgs.num_refreshes == 0


def test_other_errors_still_raise():
    sgs = SpatialGradScaler(Net())

    def forward(model, x):
        raise KeyError('inputs')
    with pytest.raises(KeyError):
        sgs.refresh([batch()], forward=forward)


@pytest.mark.slow
@pytest.mark.parametrize('mode', ['retry', 'always'])
def test_out_of_memory_on_one_rank_all_ranks_retry_or_give_up_together(tmp_path, mode):
    """2 gloo ranks, rank 1 runs out of memory: both retry (same G, equal to
    one process on the union), or both keep their G; no rank hangs."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
           '--master_addr=127.0.0.1', f'--master_port={port}',
           str(root / 'tests' / 'scripts' / 'dist_scaler_oom.py'), str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=root,
                          env={**os.environ, 'OMP_NUM_THREADS': '1', 'CUDA_VISIBLE_DEVICES': '',
                               'MODE': mode})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f'rank{r}.pt', weights_only=False) for r in (0, 1))
    for name in r0['scales']:
        assert torch.equal(r0['scales'][name], r1['scales'][name]), name
    if mode == 'always':
        assert r0['failed'] and r1['failed'] and r0['refreshes'] == r1['refreshes'] == 0
        assert all(torch.equal(g, torch.ones_like(g)) for g in r0['scales'].values())
        return
    assert r0['failed'] is None and r1['failed'] is None
    from test_scaler import Net
    net = Net()
    net.load_state_dict(r0['model'])
    single = SpatialGradScaler(net)
    single.refresh([torch.cat([r0['batch'], r1['batch']])])
    for name, g in single.scales().items():
        torch.testing.assert_close(r0['scales'][name], g, rtol=0, atol=1e-12)
