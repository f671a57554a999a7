"""Distributed SGS refresh (SGS_SPEC §3): 2 gloo processes on CPU.

Each rank histograms its own batches; only statistics are all-reduced. Both
ranks must end with the identical G, equal to one process's G on the union of
the same samples.
"""
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

SCRIPT = Path(__file__).parent / 'scripts' / 'dist_sgs_toy.py'


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_rank_g_is_identical_and_equals_union(tmp_path):
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
           '--master_addr=127.0.0.1', f'--master_port={free_port()}', str(SCRIPT),
           str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          # two ranks, CPU and gloo, also on a one-GPU machine
                          env={**__import__('os').environ, 'OMP_NUM_THREADS': '1',
                               'CUDA_VISIBLE_DEVICES': ''})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0 = torch.load(tmp_path / 'rank0.pt', weights_only=False)
    r1 = torch.load(tmp_path / 'rank1.pt', weights_only=False)
    for key in ('trained_g', 'refresh_g'):
        assert list(r0[key]) == ['conv1', 'conv2', 'conv3']
        for name in r0[key]:
            assert torch.equal(r0[key][name], r1[key][name]), (key, name)
            assert not torch.equal(r0[key][name], torch.ones_like(r0[key][name]))
    # the ranks drew different samples
    b0 = r0['union_batches'][:2]
    b1 = r0['union_batches'][2:]
    assert not torch.equal(torch.cat([b['inputs'] for b in b0]),
                           torch.cat([b['inputs'] for b in b1]))

    # one process, same weights, the union of both ranks' batches
    runner = Runner.from_cfg(Config(toy_cfg(tmp_path / 'single', hook=dict(
        type='SpatialGradScalingHook', interval=5, warmup=1, num_batches=2), max_epochs=0)))
    runner.train()  # sets the hook up (no epoch runs)
    runner.model.load_state_dict(r0['state_dict'])
    hook = next(h for h in runner.hooks if isinstance(h, sgs_mm.SpatialGradScalingHook))
    hook.refresh(runner, step=1000, batches=r0['union_batches'])
    for name, g in hook.scales().items():
        torch.testing.assert_close(g, r0['refresh_g'][name], rtol=0, atol=1e-12)
