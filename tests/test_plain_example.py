"""tools/examples/train_plain_pytorch.py (issue 17 §4): resuming with another --epochs,
resuming a finished run, --num-classes from the ImageFolder, its flags in the docs."""
import math
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from interrupted_save import interrupting_save
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / 'tools' / 'examples' / 'train_plain_pytorch.py'
DOC = ROOT / 'docs' / 'without_openmmlab.md'
LR = 0.1


@pytest.fixture(scope='module')
def example():
    torch.set_num_threads(1)
    return runpy.run_path(str(EXAMPLE))


def small_args(work_dir, *extra):
    return ['--arch', 'resnet18', '--image-size', '32', '--fake-size', '8', '--batch-size', '4',
            '--num-classes', '3', '--warmup', '1', '--interval', '1', '--workers', '0',
            '--lr', str(LR), '--work-dir', str(work_dir), *map(str, extra)]


def epoch_lrs(out):
    """``{epoch: lr}`` from the example's ``epoch N: lr X loss Y`` lines."""
    return {int(m[1]): float(m[2]) for m in re.finditer(r'^epoch (\d+): lr (\S+) loss',
                                                          out, re.M)}


def cosine(epoch, epochs):
    return LR * (1 + math.cos(math.pi * epoch / epochs)) / 2


def test_resume_with_more_epochs_follows_the_new_cosine(example, tmp_path, capsys):
    example['main'](small_args(tmp_path, '--epochs', 2))
    first = capsys.readouterr().out
    assert epoch_lrs(first) == pytest.approx({0: cosine(0, 2), 1: cosine(1, 2)}, rel=1e-5)
    ckpt = tmp_path / 'latest.pth'
    example['main'](small_args(tmp_path, '--epochs', 4, '--resume', ckpt))
    out = capsys.readouterr().out
    assert 'resumed' in out and '2 of 2 epochs done' in out
    assert ('--epochs 4 differs from the checkpoint\'s 2: cosine lr schedule rebuilt over 4 '
            'epochs at epoch 2') in out
    # the lr of the resumed epochs is the 4-epoch schedule's, not the old one climbing back
    assert epoch_lrs(out) == pytest.approx({2: cosine(2, 4), 3: cosine(3, 4)}, rel=1e-5)
    state = torch.load(ckpt, weights_only=True)
    assert state['epoch'] == state['epochs'] == 4 and state['scheduler']['T_max'] == 4
    assert state['optimizer']['param_groups'][0]['lr'] == pytest.approx(0, abs=1e-12)
    assert state['sgs']['num_refreshes'] == 3  # epochs 1, 2, 3


def test_resume_same_epochs_keeps_the_saved_schedule(example, tmp_path, capsys):
    example['main'](small_args(tmp_path, '--epochs', 3))
    full = epoch_lrs(capsys.readouterr().out)
    work = tmp_path / 'part'
    example['main'](small_args(work, '--epochs', 3))
    state = torch.load(work / 'latest.pth', weights_only=True)
    state.update(epoch=1)  # as if stopped after epoch 1 (the weights do not matter here)
    state['scheduler']['last_epoch'] = 1
    state['scheduler']['_last_lr'] = [cosine(1, 3)]
    state['optimizer']['param_groups'][0]['lr'] = cosine(1, 3)
    torch.save(state, work / 'cut.pth')
    capsys.readouterr()
    example['main'](small_args(work, '--epochs', 3, '--resume', work / 'cut.pth'))
    out = capsys.readouterr().out
    assert 'rebuilt' not in out
    assert epoch_lrs(out) == pytest.approx({1: full[1], 2: full[2]}, rel=1e-5)


def test_resume_says_the_lr_flag_is_ignored(example, tmp_path, capsys):
    example['main'](small_args(tmp_path, '--epochs', 1))
    capsys.readouterr()
    args = small_args(tmp_path, '--epochs', 2, '--resume', tmp_path / 'latest.pth')
    args[args.index('--lr') + 1] = '0.2'
    example['main'](args)
    out = capsys.readouterr().out
    assert "--lr 0.2 ignored: the schedule continues from the checkpoint's initial lr 0.1" in out
    assert epoch_lrs(out) == pytest.approx({1: cosine(1, 2)}, rel=1e-5)


def test_resume_a_finished_run_says_so(example, tmp_path):
    example['main'](small_args(tmp_path, '--epochs', 1))
    ckpt = tmp_path / 'latest.pth'
    before = ckpt.stat().st_mtime_ns
    proc = subprocess.run([sys.executable, str(EXAMPLE), *small_args(tmp_path, '--epochs', 1,
                                                                     '--resume', ckpt)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert proc.returncode == 0, proc.stderr
    assert ('nothing to train: the checkpoint has 1 epochs and --epochs is 1; pass a larger '
            '--epochs to train longer') in proc.stdout
    assert 'loss' not in proc.stdout and ckpt.stat().st_mtime_ns == before


def test_num_classes_defaults_to_the_image_folder(example, tmp_path, capsys):
    rng = np.random.default_rng(0)
    for cls in ('cat', 'dog'):
        (tmp_path / 'data' / cls).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(
                tmp_path / 'data' / cls / f'{i}.png')
    args = small_args(tmp_path / 'work', '--epochs', 1, '--data', tmp_path / 'data')
    i = args.index('--num-classes')
    del args[i:i + 2]
    model, _ = example['main'](args)
    assert model.fc.out_features == 2
    assert '8 images in 2 classes; 2 outputs' in capsys.readouterr().out
    with pytest.raises(SystemExit, match='--num-classes 1: .* has 2 classes'):
        example['main'](args + ['--num-classes', '1'])


def test_every_flag_is_documented(example):
    text = DOC.read_text()
    parser_flags = re.findall(r"add_argument\('(--[a-z-]+)'", EXAMPLE.read_text())
    assert len(parser_flags) >= 14
    missing = [f for f in parser_flags if f'`{f}' not in text]
    assert not missing, f'{DOC} does not list {missing}'


def test_resume_without_usable_sgs_state_refreshes_at_once(example, tmp_path, capsys):
    """A checkpoint whose SGS state fits no layer (here: saved under other layer
    names, or no SGS state at all) must not leave G = 1 until the next
    scheduled refresh."""
    args = ['--warmup', '1', '--interval', '10']
    example['main'](small_args(tmp_path, '--epochs', 2, *args))
    capsys.readouterr()
    ckpt = tmp_path / 'latest.pth'
    state = torch.load(ckpt, weights_only=True)
    renamed = dict(state, sgs=dict(state['sgs'], scales={
        n.replace('.', '_'): g for n, g in state['sgs']['scales'].items()}))
    without = {k: v for k, v in state.items() if k != 'sgs'}
    for i, bad in enumerate([renamed, without]):
        torch.save(bad, tmp_path / f'bad{i}.pth')
        example['main'](small_args(tmp_path, '--epochs', 3, '--resume', tmp_path / f'bad{i}.pth',
                                   *args))
        out = capsys.readouterr().out
        assert re.search(r'restored G of [01] of 17 layers: SGS refreshes at the resume point '
                         r'\(epoch 2\)', out), out
        assert re.search(r'^epoch 2: SGS refresh #\d+ ', out, re.M), out


# ------------------------------------------- issue 23, item 1: kills and resume
def test_a_kill_while_saving_leaves_the_previous_checkpoint(example, tmp_path, monkeypatch):
    """The checkpoint of epoch 1 is complete after a kill while epoch 2's is written."""
    interrupting_save(monkeypatch, on_call=2)
    with pytest.raises(KeyboardInterrupt):
        example['main'](small_args(tmp_path, '--epochs', 3))
    monkeypatch.undo()
    state = torch.load(tmp_path / 'latest.pth', weights_only=True)
    assert state['epoch'] == 1 and state['sgs']['num_refreshes'] == 0
    assert [p.name for p in tmp_path.iterdir()] == ['latest.pth']  # no temporary file left


def test_resume_after_a_kill_continues_bitwise(example, tmp_path, monkeypatch, capsys):
    """Killed while saving epoch 2, resumed from epoch 1's checkpoint: the same
    weights, BatchNorm statistics, optimizer state and G as the uninterrupted
    run, bitwise (both runs in this process: the same machine and kernels)."""
    example['main'](small_args(tmp_path / 'full', '--epochs', 3))
    interrupting_save(monkeypatch, on_call=2)
    with pytest.raises(KeyboardInterrupt):
        example['main'](small_args(tmp_path / 'cut', '--epochs', 3))
    monkeypatch.undo()
    torch.manual_seed(123)  # whatever the process drew meanwhile does not matter
    example['main'](small_args(tmp_path / 'cut', '--epochs', 3, '--resume',
                               tmp_path / 'cut' / 'latest.pth'))
    assert 'resumed' in capsys.readouterr().out
    full, cut = (torch.load(tmp_path / d / 'latest.pth', weights_only=True)
                 for d in ('full', 'cut'))
    assert cut['epoch'] == full['epoch'] == 3
    for k, v in full['model'].items():
        assert torch.equal(v, cut['model'][k]), k
    for k, g in full['sgs']['scales'].items():
        assert torch.equal(g, cut['sgs']['scales'][k]), k
    for i, st in full['optimizer']['state'].items():
        assert torch.equal(st['momentum_buffer'], cut['optimizer']['state'][i]['momentum_buffer'])
