"""Sharding SGS cannot scale under is refused when the scaler is built.

FSDP (``FullyShardedDataParallel``, mmengine's ``FSDPStrategy``) flattens the
conv weights into sharded buffers; SGS refuses it with an error that points
to FSDP2, instead of training unscaled. (FSDP2: tests/test_fsdp2.py.)
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CODE = '''
import socket, sys, torch, torch.distributed as dist
sys.path.insert(0, 'tests')
from torch.distributed.fsdp import FullyShardedDataParallel
from test_scaler import Net
from sgs_mm.sgs import SpatialGradScaler
with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=0, world_size=1)
model = FullyShardedDataParallel(Net(), device_id=torch.device('cpu'))
try:
    SpatialGradScaler(model)
except ValueError as e:
    print('REFUSED', e)
SpatialGradScaler(torch.nn.parallel.DistributedDataParallel(Net()))  # DDP: accepted
print('DDP OK')
dist.destroy_process_group()
'''


@pytest.mark.slow
def test_fsdp1_is_refused_at_build_and_ddp_is_not():
    proc = subprocess.run([sys.executable, '-c', CODE], capture_output=True, text=True,
                          timeout=300, cwd=ROOT,
                          env={**os.environ, 'CUDA_VISIBLE_DEVICES': '', 'OMP_NUM_THREADS': '1'})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert 'REFUSED SpatialGradScaler: the model is wrapped by FSDP (FullyShardedDataParallel' \
        in out, out
    assert 'fully_shard' in out and 'DDP OK' in out, out
