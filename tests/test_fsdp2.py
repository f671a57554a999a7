"""SGS under FSDP2 (``fully_shard``): the sharded step equals the unsharded SGS step.

torchrun, 2 gloo ranks on the CPU (tests/scripts/dist_scaler_fsdp2.py): each
conv and the root are ``fully_shard``-ed, G is refreshed on the ranks' own
batches, then 3 SGD steps with momentum and weight decay. The gathered weights
must equal those of an unsharded copy trained on both ranks' batches with the
same G, and differ from the unscaled run (so G really was applied).
"""
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / 'tests' / 'scripts' / 'dist_scaler_fsdp2.py'


def _has_fully_shard() -> bool:
    try:
        from torch.distributed.fsdp import fully_shard  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not _has_fully_shard(),
                    reason=f'torch {torch.__version__} has no torch.distributed.fsdp.fully_shard')
@pytest.mark.parametrize('mode', ['grad', 'update'])
def test_fsdp2_step_equals_unsharded_sgs_step(tmp_path, mode):
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
           '--master_addr=127.0.0.1', f'--master_port={port}', str(SCRIPT), str(tmp_path), mode]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env={**os.environ, 'OMP_NUM_THREADS': '1', 'CUDA_VISIBLE_DEVICES': ''})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'NOT scaled' not in proc.stdout + proc.stderr
    ranks = [torch.load(tmp_path / f'rank{r}.pt', weights_only=False) for r in (0, 1)]
    for name, g in ranks[0]['scales'].items():
        assert torch.equal(g, ranks[1]['scales'][name]), name
        assert (g - 1).abs().max() > 0.1, name  # a G that changes the step
    if mode == 'grad':
        assert all(n == 3 for n in ranks[0]['fired'].values()), ranks[0]['fired']
    for r in ranks:
        for name, plain in r['plain'].items():
            # the same arithmetic up to the order of the reduce-scatter's sum
            torch.testing.assert_close(r['sharded'][name], plain, rtol=1e-5, atol=1e-6,
                                       msg=name)
        for name in ('conv1.weight', 'conv2.weight'):
            assert (r['unscaled'][name] - r['plain'][name]).abs().max() > 1e-3, name
