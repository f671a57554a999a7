"""SpatialGradScaler: SGS for any PyTorch loop, with no mmengine in the process."""
import copy
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from sgs_mm.sgs import SpatialGradScaler

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / 'tools' / 'examples' / 'train_plain_pytorch.py'
DIST_SCRIPT = Path(__file__).parent / 'scripts' / 'dist_scaler_plain.py'
DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])

# Run before anything else in a subprocess: every OpenMMLab import fails.
BLOCK_MM = '''
import sys
class _NoOpenMMLab:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('mmengine', 'mmcv', 'mmseg', 'mmpose', 'mmpretrain', 'mmdet'):
            raise ImportError(f'{name} is blocked in this test')
sys.meta_path.insert(0, _NoOpenMMLab())
'''


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 5, padding=4, dilation=2, groups=2)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        return self.fc(F.relu(self.conv2(x)).mean((2, 3)))


def smooth_batch(n=4, size=16, seed=0, device='cpu'):
    g = torch.Generator().manual_seed(seed)
    x = F.avg_pool2d(torch.randn(n, 3, size, size, generator=g), 5, 1, 2) * 3
    return x.to(device)


def run_python(code, timeout=600, **env):
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT,
                          env={**os.environ, 'OMP_NUM_THREADS': '1', **env})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_readme_plain_loop_runs_without_mmengine(tmp_path):
    """The README's plain loop (tools/examples/train_plain_pytorch.py) on a
    torchvision ResNet-18, then one SGD step: each KxK weight moves by exactly
    G * (the step it makes without SGS); all with mmengine unimportable."""
    code = BLOCK_MM + f'''
import copy, runpy, sys, torch, torchvision
sys.argv = ['train_plain_pytorch.py', '--epochs', '3', '--warmup', '1', '--interval', '1',
            '--batch-size', '4', '--image-size', '32', '--fake-size', '16',
            '--num-classes', '4', '--work-dir', {str(tmp_path)!r}]
ns = runpy.run_path({str(EXAMPLE)!r})
model, sgs = ns['main'](sys.argv[1:])
assert sgs.num_refreshes == 2, sgs.num_refreshes
assert not any(m.split('.')[0] in ('mmengine', 'mmcv') for m in sys.modules)
ckpt = torch.load({str(tmp_path / 'latest.pth')!r}, weights_only=True)
assert ckpt['sgs']['num_refreshes'] == 2 and len(ckpt['sgs']['scales']) == len(sgs.layers)

from sgs_mm.sgs import SpatialGradScaler
torch.manual_seed(0)
net = torchvision.models.resnet18(num_classes=4)
x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
plain = copy.deepcopy(net)
sgs = SpatialGradScaler(net)
sgs.refresh([x])
opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
sgs.attach(opt)
ref_opt = torch.optim.SGD(plain.parameters(), lr=0.1, momentum=0.9)
for m, o in ((net, opt), (plain, ref_opt)):
    torch.nn.functional.cross_entropy(m(x), y).backward()
    o.step()
torch.manual_seed(0)  # the initial weights again
start = dict(torchvision.models.resnet18(num_classes=4).named_parameters())
scales = sgs.scales()
assert len(scales) == 17, list(scales)
for name, g in scales.items():
    w0 = start[name + '.weight'].detach()
    step_sgs = dict(net.named_parameters())[name + '.weight'].detach() - w0
    step_plain = dict(plain.named_parameters())[name + '.weight'].detach() - w0
    assert not torch.allclose(g, torch.ones_like(g)), name
    torch.testing.assert_close(step_sgs, step_plain * g.float(), rtol=1e-4, atol=1e-7)
print('OK')
'''
    assert run_python(code).strip().endswith('OK')


def test_engine_imports_without_mmengine():
    out = run_python(BLOCK_MM + '''
import sgs_mm, sgs_mm.sgs, sys
assert not hasattr(sgs_mm, 'SpatialGradScalingHook')
assert not any(m.split('.')[0] == 'mmengine' for m in sys.modules)
print(sgs_mm.sgs.SpatialGradScaler.__name__)
''', timeout=120)
    assert out.strip() == 'SpatialGradScaler'


@pytest.mark.parametrize('device', DEVICES)
def test_refresh_restores_modes_and_reports(device):
    torch.manual_seed(0)
    net = Net().to(device)
    net.train()
    net.conv1.eval()
    sgs = SpatialGradScaler(net)
    report = sgs.refresh([smooth_batch(device=device)])
    assert net.training and not net.conv1.training and net.conv2.training
    assert list(report.updated) == ['conv1', 'conv2'] and report.refresh == 1
    for g in report.updated.values():
        assert g.device.type == 'cpu' and g.mean().item() == pytest.approx(1.0)
    assert sgs.applier.scales['conv1'].device.type == device


@pytest.mark.parametrize('device', DEVICES)
def test_state_dict_round_trip_and_config_check(device, tmp_path, caplog):
    torch.manual_seed(0)
    net = Net().to(device)
    sgs = SpatialGradScaler(net, k=3, respect_dilation=False)
    sgs.refresh([smooth_batch(device=device)], forward=lambda m, b: m(b))
    path = tmp_path / 'sgs.pth'
    torch.save(sgs.state_dict(), path)
    state = torch.load(path, weights_only=True)
    other = SpatialGradScaler(copy.deepcopy(net), k=3, respect_dilation=False)
    assert other.load_state_dict(state)
    assert other.num_refreshes == 1
    for name, g in sgs.scales().items():
        assert torch.equal(other.scales()[name], g)
    # saved with other G-defining arguments: warn, start afresh
    with caplog.at_level(logging.WARNING, logger='sgs_mm'):
        fresh = SpatialGradScaler(copy.deepcopy(net), k=5)
        assert not fresh.load_state_dict(state)
    assert "k=3.0 (now 5.0)" in caplog.text and 'respect_dilation=False' in caplog.text
    assert all(torch.equal(g, torch.ones_like(g)) for g in fresh.scales().values())


def test_update_mode_needs_optimizer():
    sgs = SpatialGradScaler(Net(), mode='update')
    with pytest.raises(ValueError, match='pass the optimizer'):
        sgs.attach()


def test_fallback_forward_only_for_idle_convs():
    class TwoHeads(Net):
        def __init__(self):
            super().__init__()
            self.aux = nn.Conv2d(8, 8, 3, padding=1)

        def forward(self, x, with_aux=False):
            out = super().forward(x)
            if with_aux:
                return out, self.aux(F.relu(self.conv1(x)))
            return out

    net = TwoHeads()
    calls = []
    sgs = SpatialGradScaler(net)
    report = sgs.refresh([smooth_batch()], fallback_forward=lambda m, b: calls.append(1) or
                         m(b, with_aux=True))
    assert len(calls) == 2  # NMI's two passes (ranges, histograms), for the idle conv only
    assert set(report.updated) == {'conv1', 'conv2', 'aux'} and report.idle == []


@pytest.mark.slow
def test_plain_ddp_two_ranks_match_union(tmp_path):
    """torchrun, 2 gloo ranks, plain DDP, no mmengine: identical G on both
    ranks, equal to one process on the union of their batches."""
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
           '--master_addr=127.0.0.1', f'--master_port={port}', str(DIST_SCRIPT), str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env={**os.environ, 'OMP_NUM_THREADS': '1', 'CUDA_VISIBLE_DEVICES': ''})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0 = torch.load(tmp_path / 'rank0.pt', weights_only=False)
    r1 = torch.load(tmp_path / 'rank1.pt', weights_only=False)
    assert r0['mm_modules'] == [] and r1['mm_modules'] == []
    assert not torch.equal(r0['batch'], r1['batch'])
    net = Net()
    net.load_state_dict(r0['model'])
    single = SpatialGradScaler(net)
    single.refresh([torch.cat([r0['batch'], r1['batch']])])
    for name, g in single.scales().items():
        assert torch.equal(r0['scales'][name], r1['scales'][name]), name
        torch.testing.assert_close(r0['scales'][name], g, rtol=0, atol=1e-12)


def test_attached_model_still_pickles_and_copies(tmp_path):
    """Whole-model torch.save and deepcopy (mmengine's EMA) work while SGS is
    attached; the copy is a new set of weights another scaler may take."""
    net = Net()
    sgs = SpatialGradScaler(net)
    sgs.attach()
    torch.save(net, tmp_path / 'net.pth')
    twin = copy.deepcopy(net)
    twin_sgs = SpatialGradScaler(twin)
    twin_sgs.attach()  # the copy's weights are its own: no takeover
    assert twin_sgs.applier.attached and sgs.applier.attached
    SpatialGradScaler(net).attach()  # the original's: taken over (test_sgs_state.py)
    assert not sgs.applier.attached and twin_sgs.applier.attached
