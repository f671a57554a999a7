"""Crash-resume equivalence under torchrun (issue 10).

Two gloo processes train the toy config (tests/configs/toy_sgs_torchrun.py,
4 epochs of 4 iterations, SGS refresh at the start of epochs 1, 2 and 3)
through the user-facing entry point ``tools/dist_train.sh`` -> torchrun ->
``tools/train.py --launcher pytorch``:

- a straight run;
- the same run, in which rank 0 SIGKILLs itself before iteration 10 (epoch 2,
  its 3rd iteration: after the epoch-2 checkpoint and the epoch-2 refresh);
  torchrun must tear the other rank down and exit non-zero;
- ``--resume`` in the crashed run's work_dir (from epoch_2.pth), which
  repeats the epoch-2 refresh and does the epoch-3 one after the crash point.

The resumed run's final checkpoint must equal the straight run's bit for bit:
weights, buffers, optimizer state and ``checkpoint['sgs']`` (G of every layer,
refresh count, schedule).
"""
import json
import sys
from pathlib import Path

import pytest
import torch

import sgs_mm  # noqa: F401  (lets this process read the checkpoints)

sys.path.insert(0, str(Path(__file__).parent / 'scripts'))
from torchrun_procs import (REPO, TOY_CFG, Launch, free_port, kill_all, tail,  # noqa: E402
                            toy_env, wait_all)

CRASH_ITER = 10  # 4 iterations per epoch: epoch 2 (0-based), its 3rd iteration
LAUNCH_TIMEOUT = 240
LAYERS = ['conv1', 'conv2', 'conv3']


def _dist_train(work_dir, log, *args, **env):
    cmd = ['bash', str(REPO / 'tools' / 'dist_train.sh'), str(TOY_CFG), '2',
           '--work-dir', str(work_dir), *args]
    return Launch(cmd, toy_env(PYTHON=sys.executable, PORT=free_port(), **env), log)


def _load(path):
    return torch.load(path, map_location='cpu')


def _assert_same(a, b, what):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), what
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), what
        for k in a:
            _assert_same(a[k], b[k], f'{what}.{k}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), what
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f'{what}[{i}]')
    else:
        assert a == b, f'{what}: {a!r} != {b!r}'


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_mid_epoch_then_resume_equals_straight_run(tmp_path):
    straight, crashed = tmp_path / 'straight', tmp_path / 'crashed'
    launches = []
    try:
        # the straight and the crashing run at once (2 cores, 2 + 2 processes)
        launches.append(_dist_train(straight, tmp_path / 'straight.log'))
        launches.append(_dist_train(crashed, tmp_path / 'crashed.log',
                                    SGS_TEST_CRASH_AT_ITER=CRASH_ITER))
        codes = wait_all(launches, LAUNCH_TIMEOUT)
        assert codes[0] == 0, tail(launches[0])
        # torchrun saw rank 0 die of SIGKILL, stopped rank 1 and failed
        assert codes[1] != 0, tail(launches[1])
        out = launches[1].output()
        assert 'SIGKILL' in out, tail(launches[1])
        crash = json.loads((crashed / 'crashed_at.json').read_text())
        assert (crash['iter'], crash['epoch'], crash['rank']) == (CRASH_ITER, 2, 0)
        assert 'SGS refresh #2 at epoch 2' in out  # a refresh before the crash point
        assert (crashed / 'epoch_2.pth').is_file()
        assert not (crashed / 'epoch_3.pth').exists()

        resume = _dist_train(crashed, tmp_path / 'resumed.log', '--resume')
        launches.append(resume)
        assert wait_all([resume], LAUNCH_TIMEOUT) == [0], tail(resume)
        out = resume.output()
        assert 'Auto resumed from the latest checkpoint' in out and 'epoch_2.pth' in out
        assert 'resumed epoch: 2, iter: 8' in out
        assert 'SGS: restored G of 3 layers from refresh #1' in out
        assert 'SGS refresh #2 at epoch 2' in out  # repeated after the resume
        assert 'SGS refresh #3 at epoch 3' in out  # after the crash point
    finally:
        kill_all(launches)

    ref, res = _load(straight / 'epoch_4.pth'), _load(crashed / 'epoch_4.pth')
    before = _load(crashed / 'epoch_2.pth')
    assert (ref['meta']['epoch'], ref['meta']['iter']) == (4, 16)
    assert (res['meta']['epoch'], res['meta']['iter']) == (4, 16)
    assert list(ref['sgs']['scales']) == LAYERS
    assert ref['sgs']['num_refreshes'] == 3 and ref['sgs']['last_refresh'] == 3
    for name in LAYERS:  # G moved on after the checkpoint the run resumed from
        assert not torch.equal(ref['sgs']['scales'][name], before['sgs']['scales'][name])

    # conv1 sees the images, which no rank-local state touches
    assert torch.equal(res['sgs']['scales']['conv1'], ref['sgs']['scales']['conv1'])
    _assert_same(res['sgs'], ref['sgs'], "checkpoint['sgs']")
    _assert_same(res['state_dict'], ref['state_dict'], 'state_dict')
    _assert_same(res['optimizer'], ref['optimizer'], 'optimizer')
    _assert_same(res['param_schedulers'], ref['param_schedulers'], 'param_schedulers')


