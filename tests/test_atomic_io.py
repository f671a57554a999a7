"""Atomic writes (issue 23, item 1): at any moment of a kill the previous file
or the new one is complete on disk, for every writer of the project."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from interrupted_save import interrupting_save

from sgs_mm.atomic_io import (atomic_open, atomic_torch_save, atomic_write_json,
                              atomic_write_text)

WRITER = r'''
import sys, torch
from sgs_mm.atomic_io import atomic_torch_save
big = torch.arange(4_000_000, dtype=torch.float64)   # 32 MB: each write takes a while
i = 0
while True:
    i += 1
    atomic_torch_save({'i': i, 'x': big}, sys.argv[1])
    if i == 1:
        print('first', flush=True)
'''


@pytest.mark.parametrize('kill_after', [0.05, 0.3])
def test_sigkill_during_writes_leaves_a_complete_file(tmp_path, kill_after):
    """A process rewriting a 32 MB checkpoint in a loop is SIGKILLed at some
    moment: the file at the path always loads, whole."""
    path = tmp_path / 'latest.pth'
    proc = subprocess.Popen([sys.executable, '-c', WRITER, str(path)], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    try:
        assert proc.stdout.readline().strip() == 'first'
        time.sleep(kill_after)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    state = torch.load(path, weights_only=True)
    assert state['i'] >= 1 and state['x'].numel() == 4_000_000 and state['x'][-1] == 3_999_999


def failing_save(obj, f, **kwargs):
    f.write(b'half a checkpoint')
    raise KeyboardInterrupt


@pytest.mark.parametrize('error', [KeyboardInterrupt, OSError])
def test_an_interrupted_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch,
                                                                         error):
    path = tmp_path / 'state.json'
    atomic_write_json(path, {'v': 1})

    def boom(*args, **kwargs):
        raise error('interrupted')
    with pytest.raises(error):
        with atomic_open(path) as f:
            f.write('{"v": 2, "trunc')
            boom()
    assert json.loads(path.read_text()) == {'v': 1}
    assert [p.name for p in tmp_path.iterdir()] == ['state.json']
    monkeypatch.setattr(torch, 'save', failing_save)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({'a': 1}, tmp_path / 'ck.pth')
    assert not (tmp_path / 'ck.pth').exists()
    assert [p.name for p in tmp_path.iterdir()] == ['state.json']


def test_written_files_get_the_usual_permissions(tmp_path):
    atomic_write_text(tmp_path / 'a.txt', 'x')
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / 'a.txt').stat().st_mode & 0o777 == 0o666 & ~umask


def test_convert_backbone_keeps_the_old_file_on_a_kill(tmp_path, monkeypatch):
    """The backbone converter writes through the same helper."""
    from sgs_mm.checkpoint import convert_backbone
    src = tmp_path / 'src.pth'
    torch.save({'state_dict': {'backbone.conv1.weight': torch.ones(2, 3, 3, 3),
                               'backbone.bn1.weight': torch.ones(2)}}, src)
    dst = tmp_path / 'dst.pth'
    convert_backbone.main([str(src), str(dst), '--to', 'plain'])
    before = dst.read_bytes()
    interrupting_save(monkeypatch, on_call=1)
    with pytest.raises(KeyboardInterrupt):
        convert_backbone.main([str(src), str(dst), '--to', 'plain'])
    assert dst.read_bytes() == before
