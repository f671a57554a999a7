"""Two ranks sharing one device with gloo (issue 14): on 'cuda' both ranks use
the same GPU and gloo carries CUDA tensors, so the multi-rank SGS path runs
on CUDA even on a one-GPU machine; 'cpu' is the same check on the CPU (and
what runs where no GPU is). Both ranks must end with identical G, equal to
one process's G on the union of their batches, on the same device."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

import sgs_mm
from toy_runner import toy_cfg

SCRIPT = Path(__file__).parent / 'scripts' / 'dist_sgs_device.py'
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize('device', [pytest.param('cpu'), pytest.param('cuda', marks=CUDA)])
def test_two_ranks_on_one_device_match_one_process(device, tmp_path, monkeypatch):
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    if device == 'cpu':
        env['CUDA_VISIBLE_DEVICES'] = ''
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
           '--master_addr=127.0.0.1', f'--master_port={free_port()}', str(SCRIPT),
           str(tmp_path), device]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0 = torch.load(tmp_path / 'rank0.pt', weights_only=False)
    r1 = torch.load(tmp_path / 'rank1.pt', weights_only=False)
    for r in (r0, r1):
        assert r['backend'] == 'gloo'
        want = 'cuda:0' if device == 'cuda' else 'cpu'
        assert r['model_device'] == want and r['g_device'] == want, r['model_device']
    for key in ('trained_g', 'refresh_g'):
        assert list(r0[key]) == ['conv1', 'conv2', 'conv3']
        for name in r0[key]:
            assert torch.equal(r0[key][name], r1[key][name]), (key, name)
            assert not torch.equal(r0[key][name], torch.ones_like(r0[key][name]))
    b0, b1 = r0['union_batches'][:2], r0['union_batches'][2:]
    assert not torch.equal(torch.cat([b['inputs'] for b in b0]),
                           torch.cat([b['inputs'] for b in b1]))

    # one process on the same device, same weights, the union of both ranks' batches
    import mmengine.runner.runner as runner_module
    monkeypatch.setattr(runner_module, 'get_device', lambda: device)
    runner = Runner.from_cfg(Config(toy_cfg(tmp_path / 'single', hook=dict(
        type='SpatialGradScalingHook', unit='epoch', interval=5, warmup=1, num_batches=2),
        max_epochs=0)))
    runner.train()  # sets the hook up (no epoch runs)
    runner.model.load_state_dict(r0['state_dict'])
    hook = next(h for h in runner.hooks if isinstance(h, sgs_mm.SpatialGradScalingHook))
    assert next(runner.model.parameters()).device.type == device
    hook.refresh(runner, step=1000, batches=r0['union_batches'])
    # identical features on either device (same batches, same shapes); float64
    # NMI from all-reduced integer histograms
    atol = 1e-12 if device == 'cpu' else 1e-9
    for name, g in hook.scales().items():
        torch.testing.assert_close(g, r0['refresh_g'][name], rtol=0, atol=atol)
