"""Analysis tools (issue 5) on tiny work_dirs produced here by real Runners.

Two real trainings of the toy model (tests/toy_runner.py) with a validation
loop: one with SpatialGradScalingHook, one without. Each CLI of
tools/analysis/ runs on them and must write a valid PNG whose pixels depend
on the input.
"""
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
from sgs_mm.analysis import (HISTORY_FILE, AnalysisInputError, GHistoryWriter, find_history_file,
                             first_middle_last, kernel_magnitude, load_g_history, load_scalars,
                             read_history_raw, select_layers)
from sgs_mm.analysis import plots
from sgs_mm.compat.versions import load_weights_only
from conftest import load_script
from toy_runner import toy_cfg

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / 'tools' / 'analysis'
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
EPOCHS = 3
ITERS = 16


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


def train(work_dir, hook, by_epoch=True):
    cfg = toy_cfg(work_dir, hook=hook, max_epochs=EPOCHS, by_epoch=by_epoch, max_iters=ITERS)
    cfg['default_hooks']['logger'] = dict(type='LoggerHook', interval=2)
    if not by_epoch:  # as mmseg's schedules: logs and validation counted in iterations
        cfg['train_cfg']['val_interval'] = ITERS // 2  # validated at iterations 8 and 16
        cfg['default_hooks']['logger']['log_metric_by_epoch'] = False
        cfg['log_processor'] = dict(by_epoch=False)
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
    # iteration-based (mmseg style): refreshes at iterations 4, 8, 12, checkpoints every 4
    iters = train(root / 'iter', dict(type='SpatialGradScalingHook', k=5, interval=4, warmup=4,
                                      num_batches=1, unit='iter'), by_epoch=False)
    return dict(sgs=sgs, base=base, iter=iters, root=root)


def load_tool(name):
    return load_script(f'tools/analysis/{name}.py')


def read_png(path) -> np.ndarray:
    path = str(path)
    assert osp.getsize(path) > 1000, path
    with open(path, 'rb') as f:
        assert f.read(8) == PNG_SIGNATURE, path
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    assert image is not None and image.ndim == 3 and min(image.shape[:2]) > 100, path
    assert image.std() > 10, f'{path} is (nearly) blank'
    return image


def write_history(folder, records, **header):
    writer = GHistoryWriter(str(Path(folder) / HISTORY_FILE),
                            dict(dict(method='nmi', k=5.0, mode='grad'), **header))
    writer.start()
    for rec in records:
        writer.append(rec)


class CapturedFigures(list):
    """The matplotlib figures the tools save (``plots._save`` still writes the PNG)."""

    def texts(self, index=-1):
        fig = self[index]
        found = [t.get_text() for ax in fig.axes
                 for t in (ax.title, ax.xaxis.label, ax.yaxis.label, *ax.texts,
                           *ax.get_xticklabels())]
        return [t for t in found if t] + ([fig._suptitle.get_text()] if fig._suptitle else [])


@pytest.fixture
def figures(monkeypatch):
    captured = CapturedFigures()
    save = plots._save

    def capture(fig, out, *args, **kwargs):
        captured.append(fig)
        return save(fig, out, *args, **kwargs)

    monkeypatch.setattr(plots, '_save', capture)
    return captured


def cut_labels(fig):
    """Texts of ``fig`` that reach past the canvas edge (drawn with the Agg renderer)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    canvas = FigureCanvasAgg(fig)
    renderer = canvas.get_renderer()
    fig.draw(renderer)
    width, height = canvas.get_width_height()
    cut = []
    for ax in fig.axes:
        for text in (ax.yaxis.label, ax.xaxis.label, ax.title, *ax.texts):
            if not text.get_text():
                continue
            box = text.get_window_extent(renderer)
            if box.x0 < -0.5 or box.y0 < -0.5 or box.x1 > width + 0.5 or box.y1 > height + 0.5:
                cut.append(text.get_text())
    return cut


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
    ckpt = load_weights_only(osp.join(runs['base'], f'epoch_{EPOCHS}.pth'))
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
    hist = read_history_raw(find_history_file(runs['sgs']))
    images = []
    for name, transpose in (('a', False), ('b', True)):
        if transpose:
            for rec in hist['records']:
                rec['layers']['conv3'] = np.asarray(rec['layers']['conv3']).T.tolist()
        folder = tmp_path / name
        folder.mkdir()
        write_history(folder, hist['records'])
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


def column_titles(fig):
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


def test_plot_sgs_labels_iterations_of_iteration_runs(runs, figures, tmp_path):
    """An iteration-based run says "iter N" per column, not "epoch 0" (issue 9)."""
    tool = load_tool('plot_sgs')
    expected = ['refresh 1\niter 4', 'refresh 2\niter 8', 'refresh 3\niter 12']
    assert tool.main([runs['iter'], '--out', str(tmp_path / 'iter.png')]) == 0
    assert column_titles(figures[-1]) == expected
    # a version-1 history (no unit in its header): the unit is read off the records
    legacy = tmp_path / 'legacy'
    legacy.mkdir()
    raw = read_history_raw(find_history_file(runs['iter']))
    (legacy / 'sgs_g_history.json').write_text(json.dumps(dict(
        format='sgs_mm.g_history', version=1, method='nmi', k=5.0, mode='grad',
        records=raw['records'])))
    assert tool.main([str(legacy), '--out', str(tmp_path / 'legacy.png')]) == 0
    assert column_titles(figures[-1]) == expected
    # a checkpoint saved after iteration 12, before the refresh at iteration 12
    assert tool.main([osp.join(runs['iter'], 'iter_12.pth'),
                      '--out', str(tmp_path / 'ckpt.png')]) == 0
    (title,) = column_titles(figures[-1])
    assert title == 'refresh 2\niter 12\niter_12.pth (last refresh at iter 8)'
    # an epoch-based run keeps its epochs
    assert tool.main([runs['sgs'], '--out', str(tmp_path / 'epoch.png')]) == 0
    assert column_titles(figures[-1]) == ['refresh 1\nepoch 1', 'refresh 2\nepoch 2']


PSPNET_LAYERS = ['backbone.stem.0', 'backbone.stem.3', 'backbone.stem.6',
                 'backbone.layer1.0.conv2', 'backbone.layer2.0.conv2', 'backbone.layer3.0.conv2',
                 'backbone.layer4.2.conv2', 'decode_head.psp_modules.0.1.conv',
                 'decode_head.bottleneck.conv', 'auxiliary_head.convs.0.conv']


@pytest.mark.parametrize('names, refreshes', [
    (PSPNET_LAYERS, 3),
    (PSPNET_LAYERS[3:] + ['backbone.stages.3.blocks.2.attention_module.conv_offset.conv'], 2),
    (['backbone.layer1.0.conv2', 'decode_head.bottleneck.conv', 'auxiliary_head.convs.0.conv'],
     8),
], ids=['pspnet', 'very-long-name', 'three-rows'])
def test_plot_sgs_long_layer_names_fit(figures, tmp_path, names, refreshes):
    """Row labels such as mmseg's "auxiliary_head.convs.0.conv" are not cut at the left
    edge (issue 9)."""
    rng = np.random.default_rng(0)
    records = [dict(refresh=i + 1, epoch=0, iter=12 * (i + 1),
                    layers={n: rng.random((3, 3)).tolist() for n in names})
               for i in range(refreshes)]
    write_history(tmp_path / 'seg', records, unit='iter')
    tool = load_tool('plot_sgs')
    assert tool.main([str(tmp_path / 'seg'), '--out', str(tmp_path / 'seg.png')]) == 0
    fig = figures[-1]
    assert cut_labels(fig) == []
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()][:len(names)]
    # each label is the full name (long ones wrapped after dots), then the kernel shape
    assert [''.join(lb.split('\n')[:-1]) for lb in labels] == names
    read_png(tmp_path / 'seg.png')


# -------------------------------------------------------- kernel_magnitude
def test_kernel_magnitude_cli_baseline_vs_sgs(runs, tmp_path):
    base = osp.join(runs['base'], f'epoch_{EPOCHS}.pth')
    sgs = osp.join(runs['sgs'], f'epoch_{EPOCHS}.pth')
    out = tmp_path / 'km.png'
    proc = cli('kernel_magnitude', base, sgs, '--labels', 'baseline', 'SGS', '--out', out)
    assert proc.returncode == 0, proc.stderr
    # 3 layers x (|W| baseline, |W| SGS, G of SGS)
    table = [ln for ln in proc.stdout.splitlines() if ln.startswith('| conv')]
    assert len(table) == 9 and sum(f'| SGS | G at epoch {EPOCHS} |' in ln for ln in table) == 3
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


def test_kernel_magnitude_labels_iteration_checkpoint(runs, figures, tmp_path, capsys):
    """The G column of a checkpoint saved at iteration 12 reads "SGS / G at iter 12":
    the run label once, the right unit (issue 9); the Markdown table says the same."""
    tool = load_tool('kernel_magnitude')
    ckpt = osp.join(runs['iter'], 'iter_12.pth')
    assert tool.main([ckpt, '--labels', 'SGS', '--out', str(tmp_path / 'km.png')]) == 0
    assert column_titles(figures[-1]) == ['SGS\nmean |W| (normalized)', 'SGS\nG at iter 12']
    rows = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith('| conv')]
    assert len(rows) == 6
    assert sum('| SGS | G at iter 12 |' in ln for ln in rows) == 3
    assert not [ln for ln in rows if 'epoch' in ln or 'SGS G' in ln]


def test_kernel_magnitude_places_epoch_schedule_on_iteration_loop(tmp_path, figures):
    """An epoch schedule on an iteration loop (mmseg's case): mmengine saves at epoch 0,
    so the checkpoint is placed by its iteration and the refresh by the schedule's epoch
    ("G at iter 12, refreshed at epoch 1"), never "G at epoch 0"."""
    work = tmp_path / 'run'
    cfg = toy_cfg(work, by_epoch=False, max_iters=12, hook=dict(
        type='SpatialGradScalingHook', k=5, interval=1, warmup=1, num_batches=1, unit='epoch'))
    Runner.from_cfg(Config(cfg)).train()
    tool = load_tool('kernel_magnitude')
    assert tool.main([str(work / 'iter_12.pth'), '--labels', 'SGS',
                      '--out', str(tmp_path / 'km.png')]) == 0
    titles = column_titles(figures[-1])
    assert titles[-1] == 'SGS\nG at iter 12, refreshed at epoch 1', titles
    assert 'epoch 0' not in titles[-1]


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


def test_compare_runs_one_unit_per_axis(runs, figures, tmp_path):
    """Loss and validation of an iteration-based run share the x-axis name (issue 9)."""
    tool = load_tool('compare_runs')
    assert tool.main([runs['iter'], runs['iter'], '--labels', 'A', 'B',
                      '--out', str(tmp_path / 'it.png')]) == 0
    loss_ax, val_ax = figures[-1].axes[:2]
    assert loss_ax.get_xlabel() == val_ax.get_xlabel() == 'iteration'
    assert len(val_ax.lines) == 2  # validated twice: curves
    assert tool.main([runs['base'], runs['sgs'], '--out', str(tmp_path / 'ep.png')]) == 0
    loss_ax, val_ax = figures[-1].axes[:2]
    assert (loss_ax.get_xlabel(), val_ax.get_xlabel()) == ('iteration', 'epoch')


def test_compare_runs_title_names_the_runs(runs, figures, tmp_path):
    """The figure's title says what is compared: --title (e.g. model and task),
    else the labels with the runs' folder names, never a bare "baseline vs SGS"."""
    tool = load_tool('compare_runs')
    assert tool.main([runs['base'], runs['sgs'], '--labels', 'baseline', 'SGS',
                      '--out', str(tmp_path / 'a.png')]) == 0
    assert figures[-1]._suptitle.get_text() == 'baseline vs SGS (base vs sgs)'
    assert tool.main([runs['base'], runs['sgs'], '--labels', 'baseline', 'SGS',
                      '--title', 'ResNet-18 (classification): baseline vs SGS',
                      '--out', str(tmp_path / 'b.png')]) == 0
    assert figures[-1]._suptitle.get_text() == 'ResNet-18 (classification): baseline vs SGS'


def test_compare_runs_single_evaluation_as_bars(runs, figures, tmp_path):
    """Runs validated once (the demo's PSPNet stages) get one labelled bar each, not a
    lone dot per run on a meaningless step axis."""
    copy = tmp_path / 'once'
    shutil.copytree(runs['iter'], copy)
    (scalars,) = copy.glob('*/vis_data/scalars.json')
    lines = scalars.read_text().splitlines()
    kept = [ln for ln in lines if '"iter"' in ln or json.loads(ln)['step'] == ITERS]
    assert len(kept) == len(lines) - 1
    scalars.write_text('\n'.join(kept) + '\n')
    value = load_scalars(copy).val[-1]['accuracy/top1']
    tool = load_tool('compare_runs')
    out = tmp_path / 'once.png'
    assert tool.main([str(copy), str(copy), '--labels', 'baseline', 'SGS',
                      '--out', str(out)]) == 0
    val_ax = figures[-1].axes[1]
    assert len(val_ax.patches) == 2 and not val_ax.lines
    assert [t.get_text() for t in val_ax.get_xticklabels()] == ['baseline', 'SGS']
    assert f'{value:.4g}\n(iter {ITERS})' in figures.texts()
    read_png(out)


# ---------------------------------------------------------- Markdown tables (issue 17 §4)
def markdown_cells(line):
    """The cells of a Markdown table row, split at unescaped pipes (GFM), unescaped."""
    import re
    assert line.startswith('|') and line.endswith('|'), line
    return [c.strip().replace(r'\|', '|') for c in re.split(r'(?<!\\)\|', line[1:-1])]


def markdown_tables(text):
    """Every table in ``text`` as a list of rows of cells (separator lines left out)."""
    tables, current = [], None
    for line in text.splitlines():
        if line.startswith('|'):
            if current is None:
                current = []
                tables.append(current)
            if not set(line) <= set('|-: '):
                current.append(markdown_cells(line))
        else:
            current = None
    return tables


def test_kernel_magnitude_table_escapes_pipes(runs, tmp_path):
    """The cell "mean |W| (normalized)" is escaped: every row keeps the header's 6 cells."""
    proc = cli('kernel_magnitude', osp.join(runs['base'], f'epoch_{EPOCHS}.pth'),
               osp.join(runs['sgs'], f'epoch_{EPOCHS}.pth'), '--labels', 'base|line', 'SGS',
               '--out', tmp_path / 'km.png')
    assert proc.returncode == 0, proc.stderr
    (table,) = markdown_tables(proc.stdout)
    assert table[0] == ['layer', 'run', 'matrix', 'centre', 'edge', 'corner']
    assert len(table) == 10 and all(len(row) == 6 for row in table)
    assert [row[1:3] for row in table[1:4]] == [['base|line', 'mean |W| (normalized)'],
                                                ['SGS', 'mean |W| (normalized)'],
                                                ['SGS', f'G at epoch {EPOCHS}']]


def test_compare_runs_table_escapes_pipes(runs, tmp_path):
    proc = cli('compare_runs', runs['base'], runs['sgs'], '--labels', 'a|b', 'SGS',
               '--out', tmp_path / 'cmp.png')
    assert proc.returncode == 0, proc.stderr
    (table,) = markdown_tables((tmp_path / 'cmp.md').read_text())
    assert all(len(row) == 6 for row in table) and table[1][0] == 'a|b'


def test_compare_runs_reports_the_iterations_run(tmp_path):
    """A run of 10 iterations logged every 4 (last logged: 8) is reported as 10: the
    iteration count its last checkpoint holds; without a checkpoint the table says the
    count is the last logged step."""
    cfg = toy_cfg(tmp_path / 'ten', by_epoch=False, max_iters=10)
    cfg['default_hooks']['logger'] = dict(type='LoggerHook', interval=4,
                                          log_metric_by_epoch=False)
    cfg['log_processor'] = dict(by_epoch=False)
    Runner.from_cfg(Config(cfg)).train()
    run = load_scalars(tmp_path / 'ten')
    assert run.train[-1]['step'] == 8  # what the old table reported
    tool = load_tool('compare_runs')
    assert tool.main([str(tmp_path / 'ten'), str(tmp_path / 'ten'), '--labels', 'A', 'B',
                      '--out', str(tmp_path / 'ten.png')]) == 0
    (table,) = markdown_tables((tmp_path / 'ten.md').read_text())
    assert table[0][2] == 'iterations' and [row[2] for row in table[1:]] == ['10', '10']
    # the scalars alone (no checkpoint beside them): the last logged step, said as such
    (scalars,) = (tmp_path / 'ten').glob('*/vis_data/scalars.json')
    alone = tmp_path / 'alone'
    alone.mkdir()
    shutil.copy(scalars, alone / 'scalars.json')
    assert tool.main([str(alone / 'scalars.json'), str(tmp_path / 'ten'), '--labels', 'A', 'B',
                      '--out', str(tmp_path / 'alone.png')]) == 0
    (table,) = markdown_tables((tmp_path / 'alone.md').read_text())
    assert [row[2] for row in table[1:]] == ['8 (last logged)', '10']
