"""SpatialGradScalingHook never trains on with G = 1 unannounced, and survives
faults of a long run (issue 15, cases 3 and 7)."""
import builtins
import functools
import os

import numpy as np
import pytest
import torch

import sgs_mm  # noqa: F401  registers the hook
from sgs_mm.analysis import history as history_mod
from sgs_mm.analysis.history import load_g_history
from sgs_mm.compat.versions import OutOfMemoryError
from sgs_mm.sgs import NMIStats
from full_disk import full_disk_open
from toy_runner import Messages, build_runner, is_ones, records, sgs_hook

# 32 samples, batch 4: 8 iterations per epoch
HOOK = dict(type='SpatialGradScalingHook', k=5, interval=5, warmup=1, num_batches=1)
make_runner = functools.partial(build_runner, hook=HOOK)


# ------------------------------------------------------- case 3: resume
def test_resume_from_a_checkpoint_without_sgs_refreshes_at_once(tmp_path):
    make_runner(tmp_path, hook=None, max_epochs=2).train()  # no SGS at all
    resumed = make_runner(tmp_path, max_epochs=4, resume=True,
                          load_from=str(tmp_path / 'epoch_2.pth'))
    said = Messages(resumed)
    resumed.train()
    hook = sgs_hook(resumed)
    # epoch 2 is past the warm-up (1); the next scheduled refresh would be epoch 5
    assert [(r['epoch'], r['iter']) for r in records(tmp_path)] == [(2, 16)]
    assert hook.num_refreshes == 1
    assert not any(is_ones(g) for g in hook.scales().values())
    assert said.warned('resumed at epoch 2 (iteration 16), past the warm-up, but the '
                       'checkpoint has no SGS state')


def test_resume_with_other_g_arguments_refreshes_at_once(tmp_path):
    make_runner(tmp_path, max_epochs=2).train()  # refresh at epoch 1 with k=5
    resumed = make_runner(tmp_path, hook=dict(HOOK, k=3), max_epochs=3, resume=True,
                          load_from=str(tmp_path / 'epoch_2.pth'))
    said = Messages(resumed)
    resumed.train()
    assert sgs_hook(resumed).num_refreshes == 1
    assert [r['epoch'] for r in records(tmp_path)] == [1, 2]
    assert said.warned("computed with k=5.0 (now 3.0)")
    assert said.warned('SGS state is not usable here')


def test_resume_with_usable_state_waits_for_the_schedule(tmp_path):
    make_runner(tmp_path, max_epochs=2).train()
    resumed = make_runner(tmp_path, max_epochs=3, resume=True,
                          load_from=str(tmp_path / 'epoch_2.pth'))
    said = Messages(resumed)
    resumed.train()
    assert sgs_hook(resumed).num_refreshes == 1  # restored, not refreshed again
    assert not said.warned('resumed at')


def test_resume_before_the_warmup_does_not_refresh_early(tmp_path):
    make_runner(tmp_path, hook=None, max_epochs=1).train()
    resumed = make_runner(tmp_path, hook=dict(HOOK, warmup=2), max_epochs=3, resume=True,
                          load_from=str(tmp_path / 'epoch_1.pth'))
    resumed.train()
    assert [r['epoch'] for r in records(tmp_path)] == [2]  # the warm-up refresh, on time


def test_iteration_schedule_resume_without_state(tmp_path):
    make_runner(tmp_path, hook=None, by_epoch=False, max_iters=8).train()
    hook = dict(HOOK, unit='iter', warmup=2, interval=100)
    resumed = make_runner(tmp_path, hook=hook, by_epoch=False, max_iters=12, resume=True,
                          load_from=str(tmp_path / 'iter_8.pth'))
    resumed.train()
    assert [r['iter'] for r in records(tmp_path)] == [8]


# ------------------------------------------- case 3: warmup, num_batches
def test_warmup_beyond_the_run_warns_at_start(tmp_path):
    runner = make_runner(tmp_path, hook=dict(HOOK, warmup=3), max_epochs=3)
    said = Messages(runner)
    runner.train()
    assert sgs_hook(runner).num_refreshes == 0
    warned = said.warned('SGS will never refresh in this run')
    assert warned and 'epoch 3 (warmup=3), the run has 3 epochs' in warned[0]


def test_warmup_beyond_an_iteration_run_in_epochs(tmp_path):
    # 19 iterations = 2.4 epochs: epoch 3 (iteration 24) never comes
    runner = make_runner(tmp_path, hook=dict(HOOK, warmup=3), by_epoch=False, max_iters=19)
    said = Messages(runner)
    runner.train()
    assert said.warned('SGS will never refresh in this run')


def test_num_batches_beyond_the_train_set(tmp_path):
    runner = make_runner(tmp_path, hook=dict(HOOK, num_batches=50, interval=1), max_epochs=2)
    said = Messages(runner)
    runner.train()
    warned = said.warned('num_batches=50, but the train set gives only 8 batch(es) per rank')
    assert len(warned) == 1 and 'each refresh uses 8' in warned[0]
    assert any('with 8 batch(es) per rank' in m for m in said.info)
    refresh = [m for m in said.info if m.startswith('SGS refresh #1')]
    assert refresh and '8 batch(es)' in refresh[0]


# ---------------------------------------------------- case 7: out of memory
def test_out_of_memory_in_a_refresh_keeps_training(tmp_path, monkeypatch):
    def oom(self, pass_idx, x, padding=None):
        raise OutOfMemoryError('CUDA out of memory. Tried to allocate 8.00 GiB')
    monkeypatch.setattr(NMIStats, 'update', oom)
    runner = make_runner(tmp_path, hook=dict(HOOK, interval=1), max_epochs=3)
    said = Messages(runner)
    runner.train()  # does not raise
    hook = sgs_hook(runner)
    assert runner.epoch == 3 and hook.num_refreshes == 0
    assert all(is_ones(g) for g in hook.scales().values())
    assert len(said.warned('set max_chunk_elems')) == 2  # epochs 1 and 2
    assert len(said.warned('failed (CUDA out of memory')) == 0  # the type is named
    assert len(said.warned('failed (OutOfMemoryError: CUDA out of memory')) == 2
    assert records(tmp_path) == []


# ------------------------------------------------ case 7: history writes
def full_disk_after(n_ok):
    """An ``open`` for the history module whose appends fail with ENOSPC after
    ``n_ok`` successful ones (half of the failing line reaches the file; the
    disk stays full)."""
    return full_disk_open(n_ok, torn=True, path_part='sgs_g_history')


def test_history_write_failure_keeps_training(tmp_path, monkeypatch):
    monkeypatch.setattr(history_mod, 'open', full_disk_after(1), raising=False)
    runner = make_runner(tmp_path, hook=dict(HOOK, interval=1), max_epochs=4)
    said = Messages(runner)
    runner.train()  # does not raise
    assert sgs_hook(runner).num_refreshes == 3
    warned = said.warned('SGS history: writing')
    assert len(warned) == 1 and 'No space left on device' in warned[0]
    assert 'marked incomplete' in warned[0]
    monkeypatch.undo()
    # the torn line was cut off: the first refresh reads back
    assert [r['epoch'] for r in records(tmp_path)] == [1]


def test_history_marked_incomplete_when_the_marker_fits(tmp_path, monkeypatch):
    calls = [0]
    real_open = builtins.open

    def fail_second_append(path, mode='r', *args, **kwargs):
        if 'sgs_g_history' in str(path) and mode == 'a':
            calls[0] += 1
            if calls[0] == 2:
                raise OSError(5, 'Input/output error')
        return real_open(path, mode, *args, **kwargs)
    monkeypatch.setattr(history_mod, 'open', fail_second_append, raising=False)
    runner = make_runner(tmp_path, hook=dict(HOOK, interval=1), max_epochs=4)
    runner.train()
    monkeypatch.undo()
    hist = load_g_history(str(tmp_path))
    assert [r.epoch for r in hist.records] == [1]
    assert any('incomplete' in n and 'after refresh 1' in n for n in hist.notes)


def test_heatmap_write_failure_keeps_training(tmp_path, monkeypatch):
    runner = make_runner(tmp_path, hook=dict(HOOK, interval=1), max_epochs=3)

    def full(*args, **kwargs):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(runner.visualizer, 'add_image', full)
    said = Messages(runner)
    runner.train()
    assert sgs_hook(runner).num_refreshes == 2
    assert len(said.warned('G heatmap could not be written')) == 1


def test_history_that_cannot_be_started(tmp_path, monkeypatch):
    real_replace = history_mod.os.replace

    def no_replace(src, dst):
        if 'sgs_g_history' in str(dst):
            raise OSError(30, 'Read-only file system')
        return real_replace(src, dst)
    monkeypatch.setattr(history_mod.os, 'replace', no_replace)
    runner = make_runner(tmp_path, hook=dict(HOOK, interval=1), max_epochs=2)
    said = Messages(runner)
    runner.train()
    assert sgs_hook(runner).num_refreshes == 1
    assert said.warned('SGS history: cannot write')


def test_resume_with_a_state_that_never_refreshed(tmp_path):
    # saved while the warm-up was still ahead (G = 1), resumed with an earlier warm-up
    make_runner(tmp_path, hook=dict(HOOK, warmup=10), max_epochs=2).train()
    resumed = make_runner(tmp_path, max_epochs=3, resume=True,
                          load_from=str(tmp_path / 'epoch_2.pth'))
    said = Messages(resumed)
    resumed.train()
    assert [r['epoch'] for r in records(tmp_path)] == [2]
    assert said.warned('holds no estimated G yet')


def test_heatmap_png_that_cannot_be_written_turns_heatmaps_off(tmp_path):
    """mmengine's LocalVisBackend ignores cv2.imwrite's False (a file-size
    limit, a full disk): a real failed write, a folder where the PNG goes,
    must still give one warning and turn heatmaps off (issue 23, item 6)."""
    runner = make_runner(tmp_path, hook=dict(HOOK, interval=1), max_epochs=3)
    backend = runner.visualizer._vis_backends['LocalVisBackend']
    img_dir = os.path.join(backend._save_dir, 'vis_image')
    for step in (8, 16):  # the refreshes at epochs 1 and 2
        os.makedirs(os.path.join(img_dir, f'sgs_G_{step}.png'))
    said = Messages(runner)
    runner.train()
    hook = sgs_hook(runner)
    assert hook.num_refreshes == 2 and not hook.log_heatmaps
    warned = said.warned('G heatmap could not be written')
    assert len(warned) == 1 and 'sgs_G_8.png' in warned[0]


def test_image_writes_raise_when_cv2_fails(tmp_path):
    from sgs_mm.visualization import write_image
    (tmp_path / 'taken.png').mkdir()
    with pytest.raises(OSError, match='taken.png'):
        write_image(str(tmp_path / 'taken.png'), np.zeros((4, 4, 3), np.uint8))
    write_image(str(tmp_path / 'ok.png'), np.zeros((4, 4, 3), np.uint8))
    assert (tmp_path / 'ok.png').stat().st_size > 0
