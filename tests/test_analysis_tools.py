"""Analysis tools (issue 5) on tiny work_dirs produced here by real Runners.

Two real trainings of the toy model (tests/toy_runner.py) with a validation
loop: one with SpatialGradScalingHook, one without. Each CLI of
tools/analysis/ runs on them and must write a valid PNG whose pixels depend
on the input.
"""
import importlib.util
import json
import os.path as osp
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.evaluator import BaseMetric
from mmengine.registry import METRICS
from mmengine.runner import Runner

import sgs_mm  # noqa: F401  registers the hook
from sgs_mm.analysis import (AnalysisInputError, first_middle_last, kernel_magnitude,
                             load_g_history, load_scalars, select_layers)
from toy_runner import toy_cfg

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / 'tools' / 'analysis'
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
EPOCHS = 3


@METRICS.register_module(force=True)
class SGSToyAccuracy(BaseMetric):
    """Top-1 accuracy of SGSToyNet's predictions, logged as ``accuracy/top1``."""
    default_prefix = 'accuracy'

    def process(self, data_batch, data_samples):
        labels = data_batch['data_samples']
        preds = torch.stack(list(data_samples))
        self.results.append(((preds == labels).sum().item(), len(labels)))

    def compute_metrics(self, results):
        return {'top1': 100.0 * sum(r[0] for r in results) / sum(r[1] for r in results)}


def train(work_dir, hook):
    cfg = toy_cfg(work_dir, hook=hook, max_epochs=EPOCHS)
    cfg['default_hooks']['logger'] = dict(type='LoggerHook', interval=2)
    cfg.update(
        val_dataloader=dict(dataset=dict(type='SGSToyDataset', length=12),
                            sampler=dict(type='DefaultSampler', shuffle=False),
                            collate_fn=dict(type='sgs_toy_collate'), batch_size=4,
                            num_workers=0),
        val_cfg=dict(), val_evaluator=dict(type='SGSToyAccuracy'))
    Runner.from_cfg(Config(cfg)).train()
    return str(work_dir)


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp('analysis')
    sgs = train(root / 'sgs', dict(type='SpatialGradScalingHook', k=5, interval=1, warmup=1,
                                   num_batches=2))
    base = train(root / 'base', None)
    return dict(sgs=sgs, base=base, root=root)


def load_tool(name):
    spec = importlib.util.spec_from_file_location(f'analysis_{name}', TOOLS / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_png(path) -> np.ndarray:
    path = str(path)
    assert osp.getsize(path) > 1000, path
    with open(path, 'rb') as f:
        assert f.read(8) == PNG_SIGNATURE, path
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    assert image is not None and image.ndim == 3 and min(image.shape[:2]) > 100, path
    assert image.std() > 10, f'{path} is (nearly) blank'
    return image


def cli(name, *args):
    return subprocess.run([sys.executable, str(TOOLS / f'{name}.py'), *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


# ----------------------------------------------------------------- readers
def test_history_from_work_dir_and_checkpoint(runs):
    hist = load_g_history(runs['sgs'])
    assert hist.method == 'nmi' and hist.k == 5.0
    assert [r.refresh for r in hist.records] == [1, 2]  # refreshes before epochs 2 and 3
    assert hist.layer_names == ['conv1', 'conv2', 'conv3']
    assert hist.records[-1].layers['conv3'].shape == (5, 5)
    from_ckpt = load_g_history(osp.join(runs['sgs'], f'epoch_{EPOCHS}.pth'))
    (record,) = from_ckpt.records
    assert record.epoch == EPOCHS and record.refresh == 2
    for name, g in record.layers.items():  # the checkpoint's G is the last refresh's
        np.testing.assert_allclose(g, hist.records[-1].layers[name])
    # a checkpoint saved before the first refresh holds G = 1
    early = load_g_history(osp.join(runs['sgs'], 'epoch_1.pth')).records[0]
    assert 'no refresh yet' in early.label
    assert all(np.allclose(g, 1) for g in early.layers.values())


def test_kernel_magnitude_matches_definition(runs):
    ckpt = torch.load(osp.join(runs['base'], f'epoch_{EPOCHS}.pth'), weights_only=True)
    w = ckpt['state_dict']['conv3.weight']  # (8, 4, 5, 5), grouped
    m = kernel_magnitude(w)
    expected = w.abs().double().mean(dim=(0, 1))
    np.testing.assert_allclose(m, (expected / expected.mean()).numpy())
    assert m.shape == (5, 5) and m.mean() == pytest.approx(1.0)


def test_layer_selection():
    names = [f'backbone.layer{i}.conv' for i in range(13)]
    assert first_middle_last(names) == [names[0], names[6], names[12]]
    assert select_layers(names, ['*layer1*']) == [names[1], names[10], names[11], names[12]]
    with pytest.raises(AnalysisInputError, match='backbone.layer0.conv, backbone.layer1.conv'):
        select_layers(names, ['neck.*'])


def test_scalars_merge_launches(runs, tmp_path):
    run = load_scalars(runs['sgs'])
    assert len(run.files) == 1 and run.by_epoch
    assert [r['step'] for r in run.val] == [1, 2, 3]
    assert 'accuracy/top1' in run.val_keys()
    assert run.series('loss')[1] and all(r['step'] >= 1 for r in run.train)
    # a resumed run: a second launch folder re-logging from step 8 on
    lines = Path(run.files[0]).read_text().splitlines()
    for stamp, part in (('20250101_000000', lines), ('20250101_010000', [
            ln for ln in lines if json.loads(ln)['step'] >= 8 or 'iter' not in json.loads(ln)
            and json.loads(ln)['step'] >= 2])):
        folder = tmp_path / stamp / 'vis_data'
        folder.mkdir(parents=True)
        (folder / 'scalars.json').write_text('\n'.join(part) + '\n')
    merged = load_scalars(tmp_path)
    assert len(merged.files) == 2
    assert merged.train == run.train and merged.val == run.val


# --------------------------------------------------------------- plot_sgs
def test_plot_sgs_cli_work_dir(runs, tmp_path):
    out = tmp_path / 'g.png'
    proc = cli('plot_sgs', runs['sgs'], '--out', out)
    assert proc.returncode == 0, proc.stderr
    assert '3 layer(s) x 2 refresh(es)' in proc.stdout and str(out) in proc.stdout
    full = read_png(out)
    tool = load_tool('plot_sgs')
    paper = tmp_path / 'paper.png'
    assert tool.main([runs['sgs'], '--paper', '--out', str(paper)]) == 0
    one = tmp_path / 'one.png'
    assert tool.main([runs['sgs'], '--layers', 'conv1', '--out', str(one)]) == 0
    assert read_png(one).shape[0] < full.shape[0]  # one row instead of three


def test_plot_sgs_image_depends_on_g(runs, tmp_path):
    tool = load_tool('plot_sgs')
    # G of refresh 1 (epoch_2.pth) vs refresh 2 (epoch_3.pth)
    outs = []
    for epoch in (2, 3):
        outs.append(tmp_path / f'ckpt{epoch}.png')
        assert tool.main([osp.join(runs['sgs'], f'epoch_{epoch}.pth'),
                          '--out', str(outs[-1])]) == 0
    a, b = read_png(outs[0]), read_png(outs[1])
    assert a.shape != b.shape or not np.array_equal(a, b)
    # the same history with conv3's G transposed (same values, same colour range):
    # only the conv3 row (bottom third) changes, besides the title's path
    hist = json.loads(Path(runs['sgs'], 'sgs_g_history.json').read_text())
    images = []
    for name, transpose in (('a', False), ('b', True)):
        if transpose:
            for rec in hist['records']:
                rec['layers']['conv3'] = np.asarray(rec['layers']['conv3']).T.tolist()
        folder = tmp_path / name
        folder.mkdir()
        (folder / 'sgs_g_history.json').write_text(json.dumps(hist))
        assert tool.main([str(folder), '--out', str(tmp_path / f'{name}.png')]) == 0
        images.append(read_png(tmp_path / f'{name}.png'))
    a, b = images
    assert a.shape == b.shape
    rows = np.nonzero((a != b).any(axis=(1, 2)))[0]
    h = a.shape[0]
    assert (rows > 2 * h // 3).any(), 'conv3 panels did not change'
    assert not ((rows > h // 3 + 20) & (rows < 2 * h // 3 - 20)).any(), 'conv2 row changed'


def test_plot_sgs_bad_input(runs, tmp_path):
    # a work_dir trained without SGS: no history, no G in its checkpoints
    proc = cli('plot_sgs', runs['base'])
    assert proc.returncode == 2
    assert runs['base'] in proc.stderr and 'sgs_g_history.json' in proc.stderr
    assert 'Traceback' not in proc.stderr
    tool = load_tool('plot_sgs')
    base_ckpt = osp.join(runs['base'], f'epoch_{EPOCHS}.pth')
    with pytest.raises(AnalysisInputError, match=r"epoch_3.pth: the checkpoint has no 'sgs'"):
        tool.run(tool.parse_args([base_ckpt]))
    with pytest.raises(AnalysisInputError, match='no such file or directory'):
        tool.run(tool.parse_args([str(tmp_path / 'missing')]))
    not_json = tmp_path / 'scores.json'
    not_json.write_text('{"a": 1}')
    with pytest.raises(AnalysisInputError, match='not a G history'):
        tool.run(tool.parse_args([str(not_json)]))
    with pytest.raises(AnalysisInputError,
                       match=r"'backbone\.\*' matches none .*: conv1, conv2, conv3"):
        tool.run(tool.parse_args([runs['sgs'], '--layers', 'backbone.*']))
    assert not list(tmp_path.glob('*.png'))


# -------------------------------------------------------- kernel_magnitude
def test_kernel_magnitude_cli_baseline_vs_sgs(runs, tmp_path):
    base = osp.join(runs['base'], f'epoch_{EPOCHS}.pth')
    sgs = osp.join(runs['sgs'], f'epoch_{EPOCHS}.pth')
    out = tmp_path / 'km.png'
    proc = cli('kernel_magnitude', base, sgs, '--labels', 'baseline', 'SGS', '--out', out)
    assert proc.returncode == 0, proc.stderr
    # 3 layers x (|W| baseline, |W| SGS, G of SGS)
    table = [ln for ln in proc.stdout.splitlines() if ln.startswith('| conv')]
    assert len(table) == 9 and sum('SGS G' in ln for ln in table) == 3
    both = read_png(out)
    tool = load_tool('kernel_magnitude')
    outs = {}
    for name, paths in (('base', [base]), ('sgs', [sgs])):
        outs[name] = tmp_path / f'{name}.png'
        assert tool.main([*paths, '--out', str(outs[name])]) == 0
    a, b = read_png(outs['base']), read_png(outs['sgs'])
    assert a.shape[1] < b.shape[1] < both.shape[1]  # the SGS checkpoint adds its G column
    one = tmp_path / 'one.png'
    assert tool.main([base, '--layers', 'conv2', '--out', str(one)]) == 0
    assert read_png(one).shape[0] < a.shape[0]
    with pytest.raises(AnalysisInputError, match="'fc' matches none .*conv1, conv2, conv3"):
        tool.run(tool.parse_args([base, sgs, '--layers', 'fc']))
    with pytest.raises(AnalysisInputError, match='no such checkpoint file'):
        tool.run(tool.parse_args([str(tmp_path / 'nope.pth')]))


def test_kernel_magnitude_image_depends_on_weights(runs, tmp_path):
    tool = load_tool('kernel_magnitude')
    images = []
    for epoch in (1, EPOCHS):
        out = tmp_path / f'e{epoch}.png'
        assert tool.main([osp.join(runs['base'], f'epoch_{epoch}.pth'), '--out', str(out)]) == 0
        images.append(read_png(out))
    assert images[0].shape != images[1].shape or not np.array_equal(*images)


# ------------------------------------------------------------ compare_runs
def test_compare_runs_cli(runs, tmp_path):
    out = tmp_path / 'cmp.png'
    proc = cli('compare_runs', runs['base'], runs['sgs'], '--labels', 'baseline', 'SGS',
               '--out', out)
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / 'cmp.md').read_text()
    assert md in proc.stdout
    rows = [ln for ln in md.splitlines() if ln.startswith('| baseline') or ln.startswith('| SGS')]
    assert len(rows) == 2 and 'accuracy/top1' in md
    final = load_scalars(runs['sgs']).val[-1]['accuracy/top1']
    assert f'| {final:.4g} |' in rows[1]
    diff = read_png(out)
    same = tmp_path / 'same.png'
    tool = load_tool('compare_runs')
    assert tool.main([runs['base'], runs['base'], '--labels', 'baseline', 'SGS',
                      '--out', str(same)]) == 0
    same = read_png(same)
    assert diff.shape != same.shape or not np.array_equal(diff, same)


def test_compare_runs_bad_input(runs, tmp_path):
    tool = load_tool('compare_runs')
    with pytest.raises(AnalysisInputError, match="'mIoU' not logged; available: accuracy/top1"):
        tool.run(tool.parse_args([runs['base'], runs['sgs'], '--metric', 'mIoU']))
    empty = tmp_path / 'empty_run'
    empty.mkdir()
    with pytest.raises(AnalysisInputError, match=f'{empty}: no <timestamp>/vis_data/scalars'):
        tool.run(tool.parse_args([runs['base'], str(empty)]))
    # a work_dir copy without its validation records: loss only, table says n/a
    copy = tmp_path / 'noval'
    shutil.copytree(runs['base'], copy)
    (scalars,) = copy.glob('*/vis_data/scalars.json')
    scalars.write_text(''.join(ln + '\n' for ln in scalars.read_text().splitlines()
                               if '"iter"' in ln))
    out = tmp_path / 'noval.png'
    assert tool.main([str(copy), str(copy), '--out', str(out)]) == 0
    read_png(out)
    assert 'n/a' in (tmp_path / 'noval.md').read_text()
