"""The hook's schedule means epochs in every library (issue 17 §3), says both
units, warns when it refreshes very often; typos get the full argument list;
frozen convs are named once (issue 17 §5)."""
import functools

import pytest
import torch.nn as nn
from mmengine.registry import MODELS

import sgs_mm  # noqa: F401  registers the hook
from sgs_mm import SpatialGradScalingHook
from toy_runner import Messages, SGSToyNet, build_runner, history, sgs_hook

HOOK = dict(type='SpatialGradScalingHook', k=5, interval=1, warmup=1, num_batches=1)
make_runner = functools.partial(build_runner, hook=HOOK)


def refresh_iters(work_dir):
    return [r['iter'] for r in history(work_dir)['records']]


# ---------------------------------------------------------------- epochs
def test_default_unit_is_epochs_on_an_iteration_loop(tmp_path):
    # mmseg-style IterBasedTrainLoop, 32 samples at batch 4: 8 iterations per epoch
    runner = make_runner(tmp_path, by_epoch=False, max_iters=19)
    said = Messages(runner)
    runner.train()
    assert refresh_iters(tmp_path) == [8, 16]  # epochs 1 and 2, not iterations 1..18
    # the G history records the schedule's epochs (the loop's own stays 0)
    assert [r['epoch'] for r in history(tmp_path)['records']] == [1, 2]
    hook = sgs_hook(runner)
    assert hook.unit == 'epoch' and hook.by_epoch is True
    line = next(m for m in said.info if m.startswith('SGS (nmi'))
    assert 'refresh at epoch 1 (iteration 8), then every 1 epoch = 8 iterations' in line


@pytest.mark.parametrize('args', [dict(unit='iter'), dict(by_epoch=False)])
def test_iterations_only_when_asked(tmp_path, args):
    runner = make_runner(tmp_path, hook=dict(HOOK, warmup=2, interval=5, **args),
                         by_epoch=False, max_iters=12)
    said = Messages(runner)
    runner.train()
    assert refresh_iters(tmp_path) == [2, 5, 10]
    line = next(m for m in said.info if m.startswith('SGS (nmi'))
    assert 'refresh at iteration 2, then every 5 iterations (= 0.625 epochs)' in line


def test_start_line_gives_both_units_on_an_epoch_loop(tmp_path):
    runner = make_runner(tmp_path, hook=dict(HOOK, interval=5), max_epochs=1)
    said = Messages(runner)
    runner.train()
    line = next(m for m in said.info if m.startswith('SGS (nmi'))
    assert 'every 5 epochs = 40 iterations' in line
    assert '(1 epoch = 8 iterations of this run)' in line


def test_frequent_refreshes_warn(tmp_path):
    runner = make_runner(tmp_path, hook=dict(HOOK, unit='iter', interval=5, warmup=1),
                         by_epoch=False, max_iters=60)
    said = Messages(runner)
    runner.train()
    warned = [m for m in said.warning if 'more often than every 200 iterations' in m]
    assert len(warned) == 1
    assert 'SGS refreshes every 5 iterations (12 refreshes in this run)' in warned[0]
    assert "interval=5 with the default unit='epoch'" in warned[0]


def test_frequent_epochs_warn_in_both_units(tmp_path):
    # an iteration loop of 97 iterations = 12 epochs of 8: refreshes at epochs 1..12
    runner = make_runner(tmp_path, by_epoch=False, max_iters=97)
    said = Messages(runner)
    runner.train()
    assert any('SGS refreshes every 1 epoch = 8 iterations (12 refreshes in this run)' in m
               for m in said.warning)


def test_a_few_frequent_refreshes_in_a_short_run_do_not_warn(tmp_path):
    runner = make_runner(tmp_path, max_epochs=4)  # 3 refreshes, 8 iterations apart
    said = Messages(runner)
    runner.train()
    assert not [m for m in said.warning if 'more often' in m]


def test_rare_refreshes_do_not_warn(tmp_path):
    # 3200 samples at batch 4: an epoch is 800 iterations
    runner = make_runner(tmp_path, hook=dict(HOOK, warmup=0), by_epoch=False, max_iters=2,
                         train_dataloader=dict(
                             dataset=dict(type='SGSToyDataset', length=3200),
                             sampler=dict(type='DefaultSampler', shuffle=True),
                             collate_fn=dict(type='sgs_toy_collate'), batch_size=4,
                             num_workers=0))
    said = Messages(runner)
    runner.train()
    assert not [m for m in said.warning if 'more often' in m or 'never refresh' in m]


# ----------------------------------------------------------------- typos
def test_typo_lists_every_argument_and_suggests_one():
    with pytest.raises(ValueError) as e:
        SpatialGradScalingHook(intervall=5)
    text = str(e.value)
    assert "unknown argument(s) ['intervall']" in text
    assert "did you mean 'interval'?" in text
    for name in ('interval', 'warmup', 'num_batches', 'unit', 'by_epoch', 'forward_mode',
                 'history_file', 'log_heatmaps', 'enabled', 'method', 'k', 'diag_removal',
                 'respect_dilation', 'mode', 'include', 'exclude', 'max_chunk_elems'):
        assert f"'{name}'" in text, name
    with pytest.raises(ValueError, match="did you mean 'num_batches'"):
        SpatialGradScalingHook(num_batch=4)
    with pytest.raises(ValueError, match=r"unknown argument\(s\) \['zzz'\]\. It takes"):
        SpatialGradScalingHook(zzz=1)


# -------------------------------------------------------------- frozen convs
@MODELS.register_module(force=True)
class SGSFrozenStemNet(SGSToyNet):
    """conv1 frozen, as ``frozen_stages`` freezes a backbone's stem."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for p in self.conv1.parameters():
            p.requires_grad = False


def test_frozen_convs_are_named_once(tmp_path):
    runner = make_runner(tmp_path, max_epochs=3, model=dict(type='SGSFrozenStemNet'))
    said = Messages(runner)
    runner.train()
    assert list(sgs_hook(runner).layers) == ['conv2', 'conv3']
    named = [m for m in said.info if m.startswith('SGS') and 'frozen' in m]
    assert named == ['SGS skips 1 conv(s) whose weight is frozen (requires_grad=False, e.g. '
                     'frozen_stages): [conv1]; one unfrozen later is scaled from the next '
                     'refresh on']
    assert isinstance(runner.model.conv1, nn.Conv2d)
