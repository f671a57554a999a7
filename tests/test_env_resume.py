"""Train, checkpoint and resume with mmengine's Runner on this torch.

mmengine 0.10.7 loads checkpoints with torch's weights-only default (torch >=
2.6); resuming works because the config's ``custom_imports`` imports sgs_mm,
whose allow-list admits mmengine's message hub. Each run is a fresh process
(tests/scripts/dist_train_toy.py), so nothing here pre-imports the fix.
"""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import sgs_mm  # noqa: F401  (lets this process read the checkpoints)

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / 'tests' / 'scripts' / 'dist_train_toy.py'


def _run(cmd, timeout=300, **env):
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **env})
    assert proc.returncode == 0, (
        f'{" ".join(map(str, cmd))} failed:\n{proc.stdout[-3000:]}\n'
        f'{proc.stderr[-6000:]}')
    return proc


def _train(work_dir, epochs, resume_from=None):
    cmd = [sys.executable, str(SCRIPT), '--work-dir', str(work_dir),
           '--max-epochs', str(epochs)]
    if resume_from:
        cmd += ['--resume-from', str(resume_from)]
    return _run(cmd)


def _state_dict(path):
    return torch.load(path, map_location='cpu')['state_dict']


def _result(work_dir, rank=0):
    return json.loads((Path(work_dir) / f'result_rank{rank}.json').read_text())


def test_train_save_resume_equals_straight_run(tmp_path):
    resumed, straight = tmp_path / 'resumed', tmp_path / 'straight'
    _train(resumed, 2)
    assert (resumed / 'epoch_2.pth').is_file()
    ckpt = torch.load(resumed / 'epoch_2.pth', map_location='cpu')
    assert ckpt['meta']['epoch'] == 2 and 'message_hub' in ckpt

    proc = _train(resumed, 4, resume_from=resumed / 'epoch_2.pth')
    assert 'resumed epoch: 2' in proc.stdout + proc.stderr
    _train(straight, 4)

    res, ref = _result(resumed), _result(straight)
    assert res['epoch'] == ref['epoch'] == 4
    assert res['iter'] == ref['iter'] == 32
    a = _state_dict(resumed / 'epoch_4.pth')
    b = _state_dict(straight / 'epoch_4.pth')
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6,
                                   msg=f'{key} differs after resume')
    # training moved the weights: epoch 2 and epoch 4 differ
    c = _state_dict(resumed / 'epoch_2.pth')
    assert any(not torch.equal(a[k], c[k]) for k in a)


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _torchrun(work_dir, epochs, resume_from=None, nproc=2, **env):
    cmd = [sys.executable, '-m', 'torch.distributed.run',
           f'--nproc_per_node={nproc}', '--nnodes=1', '--master_addr=127.0.0.1',
           f'--master_port={_free_port()}', str(SCRIPT),
           '--launcher', 'pytorch', '--work-dir', str(work_dir),
           '--max-epochs', str(epochs)]
    if resume_from:
        cmd += ['--resume-from', str(resume_from)]
    return _run(cmd, **env)


# the CPU (gloo) path of --launcher pytorch, also on a machine with a GPU
CPU_ONLY = dict(CUDA_VISIBLE_DEVICES='')


@pytest.mark.slow
def test_torchrun_two_processes_cpu_train_and_resume(tmp_path):
    work = tmp_path / 'dist'
    _torchrun(work, 2, **CPU_ONLY)
    assert (work / 'epoch_2.pth').is_file()
    first = [_result(work, r) for r in (0, 1)]
    for r, res in enumerate(first):
        assert res['rank'] == r and res['world_size'] == 2
        assert res['backend'] == 'gloo'
        assert res['wrapper'] == 'MMDistributedDataParallel'
        # 32 samples, batch 4, 2 ranks: 4 iterations per epoch
        assert res['epoch'] == 2 and res['iter'] == 8
    assert first[0]['weights'] == first[1]['weights']  # DDP kept them in sync

    proc = _torchrun(work, 4, resume_from=work / 'epoch_2.pth', **CPU_ONLY)
    assert 'resumed epoch: 2' in proc.stdout + proc.stderr
    final = [_result(work, r) for r in (0, 1)]
    assert all(res['epoch'] == 4 and res['iter'] == 16 for res in final)
    assert final[0]['weights'] == final[1]['weights']
    assert final[0]['weights'] != first[0]['weights']
    assert (work / 'epoch_4.pth').is_file()


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU (NCCL)')
def test_torchrun_one_gpu_nccl_train_and_resume(tmp_path):
    """The GPU counterpart: mmengine's own NCCL init, one rank, then --resume."""
    work = tmp_path / 'dist'
    _torchrun(work, 2, nproc=1, SGS_TOY_BACKEND='nccl')
    res = _result(work, 0)
    assert res['backend'] == 'nccl' and res['wrapper'] == 'MMDistributedDataParallel'
    assert res['epoch'] == 2 and res['iter'] == 16
    proc = _torchrun(work, 4, resume_from=work / 'epoch_2.pth', nproc=1,
                     SGS_TOY_BACKEND='nccl')
    assert 'resumed epoch: 2' in proc.stdout + proc.stderr
    final = _result(work, 0)
    assert final['epoch'] == 4 and final['iter'] == 32 and final['weights'] != res['weights']
