"""tools/demo.py: device plan (CPU / one GPU / torchrun on N GPUs), the
README block of results.md, and (slow) a whole demo run whose table must be
the one the README carries between the demo-results markers: number for
number on a machine like the one that made it (the block's "Made on" line:
CPU, torch's CPU kernels, torch and numpy) in the pinned environment;
elsewhere within DEMO_TOLERANCE points, since another instruction set (AVX2
vs AVX-512) or another package version gives other float results."""
import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from conftest import load_script

REPO = Path(__file__).resolve().parents[1]


# the packages whose versions change the demo's numbers (e.g. numpy 2's
# scalar promotion moved the pose PCKh by up to 1.3 points)
NUMERIC_DISTS = ('torch', 'torchvision', 'numpy', 'opencv-python', 'mmengine',
                 'mmcv', 'mmsegmentation', 'mmpose', 'mmpretrain')
# how far a demo number may be from the README's on another machine or in
# another environment: an AVX2 CPU moved them by up to 1.9 points, numpy 2 the
# pose PCKh by up to 1.3; a broken stage is far below (chance is 6-25 %)
DEMO_TOLERANCE = 5.0


def _demo():
    return load_script('tools/demo.py')


def pinned_versions() -> dict:
    """{distribution: version} of requirements/constraints.txt: the
    environment `make env` makes, in which the README's table was made."""
    return dict(line.split('==') for line in
                (REPO / 'requirements' / 'constraints.txt').read_text().split('\n')
                if '==' in line and not line.startswith('#'))


def environment_differences():
    """The NUMERIC_DISTS whose installed version is not the pinned one
    (pinned_versions); opencv counts by its cv2 version."""
    pins = pinned_versions()
    diffs = []
    for dist in NUMERIC_DISTS:
        want = pins[dist]
        if dist == 'opencv-python':  # also -headless / -contrib: cv2 4.11.0
            import cv2
            have, want = cv2.__version__, '.'.join(want.split('.')[:3])
        else:
            try:
                have = metadata.version(dist).split('+')[0]
            except metadata.PackageNotFoundError:
                have = 'absent'
        if have != want:
            diffs.append(f'{dist} {have} (table: {want})')
    return diffs


def table_numbers(block):
    """{(model, column): [numbers]} of a demo-results block."""
    lines = [ln for ln in block.splitlines() if ln.startswith('|')]
    head = [c.strip() for c in lines[0].strip('|').split('|')]
    out = {}
    for ln in lines[2:]:
        cells = [c.strip() for c in ln.strip('|').split('|')]
        for col, cell in zip(head[2:], cells[2:]):
            if col != 'Device':
                out[cells[0], col] = [float(x) for x in cell.split(' / ')]
    return out


def test_table_numbers_and_environment_differences():
    block = ('<!-- demo-results:start -->\n'
             '| Model | Task | Chance | Baseline | SGS | Device |\n|---|---|---|---|---|---|\n'
             '| PSPNet-18 | seg | 6.0 / 16.7 | 71.9 / 82.2 | 72.7 / 82.7 | cpu |\n'
             '<!-- demo-results:end -->\n')
    assert table_numbers(block) == {('PSPNet-18', 'Chance'): [6.0, 16.7],
                                    ('PSPNet-18', 'Baseline'): [71.9, 82.2],
                                    ('PSPNet-18', 'SGS'): [72.7, 82.7]}
    # numpy is named exactly when its version is not the pinned one
    import numpy
    numpy_named = any(d.startswith('numpy ') for d in environment_differences())
    assert numpy_named == (numpy.__version__ != pinned_versions()['numpy'])


def test_device_plan_cpu_gpu_torchrun():
    demo = _demo()
    cpu = demo.device_plan(None, 0, 2)
    assert cpu['device'] == 'cpu' and cpu['launcher'] == 'none'
    assert cpu['jobs'] == 2 and cpu['env']['OMP_NUM_THREADS'] == '1'
    assert 'CUDA_VISIBLE_DEVICES' not in cpu['env']
    forced = demo.device_plan(0, 8, 16)  # --gpus 0 on a GPU machine
    assert forced['env']['CUDA_VISIBLE_DEVICES'] == '' and forced['jobs'] == 4
    one = demo.device_plan(None, 8, 16)  # a GPU: every stage on it
    assert (one['launcher'], one['nproc'], one['jobs'], one['device']) == \
        ('none', 1, 1, 'cuda x1')
    many = demo.device_plan(4, 8, 16)  # GPUS=4: torchrun, 4 processes
    assert (many['launcher'], many['nproc'], many['jobs'], many['device']) == \
        ('pytorch', 4, 1, 'cuda x4')
    with pytest.raises(ValueError, match='only 1 CUDA device'):
        demo.device_plan(2, 1, 16)


def test_gpus_n_runs_each_stage_under_torchrun(tmp_path, monkeypatch, capsys):
    """The stage commands of `make demo GPUS=4` (dry run, so no GPU needed):
    torchrun with 4 processes, --launcher pytorch, train then test."""
    demo = _demo()
    monkeypatch.chdir(tmp_path)
    demo.main(['--gpus', '4', '--dry-run', '--work-root',
               str(tmp_path / 'wd')])
    out = [line for line in capsys.readouterr().out.splitlines()
           if line.startswith('[pipeline] ') and '.py' in line]
    assert len(out) == 12  # 6 stages x (train, test)
    for line in out:
        argv = line.split()[1:]
        assert argv[1:5] == ['-m', 'torch.distributed.run',
                             '--nproc_per_node=4', '--master_port=29500']
        assert argv[argv.index('--launcher') + 1] == 'pytorch'
    assert sum('tools/train.py' in line for line in out) == 6
    assert not (tmp_path / 'wd').exists()


def _results(metrics_by_stage, device='cpu'):
    spec = [('pretrain_r18', 'cls', 'ResNet-18', 'Baseline'),
            ('pretrain_r18_sgs', 'cls', 'ResNet-18', 'SGS'),
            ('pspnet_r18', 'seg', 'PSPNet-18', 'Baseline'),
            ('pspnet_r18_sgs', 'seg', 'PSPNet-18', 'SGS')]
    return dict(work_root='wd', stages=[
        dict(name=n, task=t, device=device, metrics=metrics_by_stage[n],
             table=dict(model=m, variant=v)) for n, t, m, v in spec])


def test_readme_block_has_chance_and_device_and_no_times():
    demo = _demo()
    res = _results({
        'pretrain_r18': {'accuracy/top1': 90.5},
        'pretrain_r18_sgs': {'accuracy/top1': 91.5},
        'pspnet_r18': dict(mIoU=71.81, mAcc=82.0, aAcc=85.44),
        'pspnet_r18_sgs': dict(mIoU=72.7, mAcc=82.9, aAcc=86.0)})
    chance = dict(cls={'top-1': 25.0, 'num_classes': 4},
                  seg=dict(mIoU=6.02, mAcc=16.67, aAcc=36.13))
    block = demo.readme_table(res, chance)
    assert block.startswith(demo.MARK_START) and \
        block.rstrip().endswith(demo.MARK_END)
    assert '| ResNet-18 | classification (top-1) | 25.0 | 90.5 | 91.5 | cpu |' \
        in block
    assert '| PSPNet-18 | segmentation (mIoU / mAcc / aAcc) | 6.0 / 16.7 / ' \
        '36.1 | 71.8 / 82.0 / 85.4 | 72.7 / 82.9 / 86.0 | cpu |' in block
    # the block is found again in any text, e.g. the README
    assert demo.extract_block(f'# README\n\ntext\n{block}\nmore\n') == block
    assert demo.machine_of(block) == ''
    # with the machine line under the table (a blank line ends the table)
    here = demo.machine_line('cpu')
    from sgs_mm.compat import cpu_capability
    assert here.startswith('Made on CPU ') and f'torch kernels {cpu_capability()}' in here
    marked = demo.readme_table(res, chance, here)
    assert marked.endswith(f'| cpu |\n\n{here}\n{demo.MARK_END}\n')
    assert demo.machine_of(demo.extract_block(marked)) == here
    assert demo.above_chance(res, chance) == []
    res['stages'][0]['metrics']['accuracy/top1'] = 20.0
    assert demo.above_chance(res, chance) == [
        'pretrain_r18 top-1 20.0 <= chance 25.0']


def _readme_block():
    """The demo-results block of the README (or of docs/, where the README's
    demo section may live)."""
    demo = _demo()
    for path in [REPO / 'README.md'] + sorted((REPO / 'docs').glob('*.md')):
        if path.is_file() and demo.MARK_START in path.read_text():
            return path, demo.extract_block(path.read_text())
    pytest.fail(f'no {demo.MARK_START} ... {demo.MARK_END} block in README.md'
                ' or docs/*.md: paste `python tools/demo.py '
                '--print-readme-table` there')


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_demo_run_matches_the_readme_table(tmp_path):
    """A fresh `make demo` (on the CPU, as the README's table was made) into a
    temporary work root: it talks (progress lines, log paths, no repeated
    library warning), every stage learns above chance, SGS changes G, the
    figures exist, and results.md's block is the README's, number for
    number."""
    demo = _demo()
    work, data = tmp_path / 'wd', tmp_path / 'data'
    cmd = [sys.executable, str(REPO / 'tools' / 'demo.py'), '--gpus', '0',
           '--work-root', str(work), '--data-root', str(data),
           '--progress', '15']
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert 'pkg_resources' not in out
    for k in range(1, 7):
        assert re.search(rf'\] {k}/6 \w+: training on cpu, log \S+pipeline'
                         r'\.log', out), out
    stamps = [int(m[0]) * 60 + int(m[1])
              for m in re.findall(r'^\[demo (\d\d):(\d\d)\]', out, re.M)]
    assert stamps and max(b - a for a, b in zip(stamps, stamps[1:])) <= 30
    assert re.search(r'ETA \d', out) and 'SGS refresh #1' in out
    assert 'WARNING: not above chance' not in out
    md = (work / 'results.md').read_text()
    assert 'synthetic and tiny' in md and 'Chance' in md
    res = json.loads((work / 'results.json').read_text())
    chance = json.loads((data / 'demo_chance.json').read_text())['chance']
    assert demo.above_chance(res, chance) == []
    assert len(demo.g_summary(res)) == 3  # every SGS stage refreshed G
    for name in ('pretrain_r18_sgs', 'pspnet_r18_sgs',
                 'simplebaseline_r18_sgs'):
        assert (work / name / 'sgs_g.png').is_file()
    for name in ('pretrain_r18', 'pspnet_r18', 'simplebaseline_r18'):
        assert (work / f'compare_{name}.png').is_file()
        assert (work / f'kernels_{name}.png').is_file()
    block = demo.extract_block(md)
    here = demo.machine_line('cpu')
    assert demo.machine_of(block) == here, block
    readme, expected = _readme_block()
    diffs = environment_differences()
    if demo.machine_of(expected) != here:
        diffs.append(f'another machine: {readme} says "{demo.machine_of(expected)}", '
                     f'this one "{here}"')
    if not diffs:
        assert block == expected, (
            f'{readme} carries another demo table than a fresh run on this machine gives; '
            f'paste the new one:\n{block}')
        return
    # another machine or environment (e.g. make env TORCH=keep): the same
    # table, each number within DEMO_TOLERANCE points of the README's
    got, want = table_numbers(block), table_numbers(expected)
    assert got.keys() == want.keys(), block
    far = [f'{row} {col}: {got[row, col]} vs {w}' for (row, col), w in want.items()
           if any(abs(a - b) > DEMO_TOLERANCE for a, b in zip(got[row, col], w))]
    assert not far, (
        f'in this environment ({", ".join(diffs)}) the demo gives numbers more '
        f'than {DEMO_TOLERANCE} points from {readme}\'s:\n' + '\n'.join(far)
        + f'\n{block}')


def test_g_figure_says_which_layers_it_leaves_out(tmp_path, monkeypatch):
    """sgs_g.png of a 17-layer run shows 12 layers and says so."""
    import sgs_mm.analysis.plots as plots
    lines = [json.dumps(dict(format='sgs_mm.g_history', version=2,
                             method='nmi', k=5.0, mode='grad', unit='epoch'))]
    for r in (1, 2):
        lines.append(json.dumps(dict(refresh=r, epoch=r, iter=10 * r, layers={
            f'backbone.layer{i}.conv': [[1.0] * 3] * 3 for i in range(17)})))
    (tmp_path / 'sgs_g_history.jsonl').write_text('\n'.join(lines) + '\n')
    seen = {}
    monkeypatch.setattr(plots, 'plot_g_grid', lambda h, layers, recs, out,
                        **kw: seen.update(kw, layers=layers))
    tool = load_script('tools/analysis/plot_sgs.py')
    tool.run(tool.parse_args([str(tmp_path)]))
    assert len(seen['layers']) == 12
    assert seen['note'].startswith('showing 12 of 17 layers')
    # everything shown: no note
    tool.run(tool.parse_args([str(tmp_path), '--max-layers', '0']))
    assert seen['note'] == ''


def test_g_figure_of_an_iteration_loop_labels_iterations(tmp_path,
                                                         monkeypatch):
    """A history whose refreshes all say epoch 0 (an epoch schedule on mmseg's
    iteration loop, as the hook recorded it before it wrote the schedule's
    epoch): the columns say 'iter 15', 'iter 60', not 'epoch 0' twice."""
    import sgs_mm.analysis.plots as plots
    lines = [json.dumps(dict(format='sgs_mm.g_history', version=2,
                             method='nmi', k=5.0, mode='grad', unit='epoch'))]
    for r, it in ((1, 15), (2, 60)):
        lines.append(json.dumps(dict(refresh=r, epoch=0, iter=it, layers={
            'conv': [[1.0] * 3] * 3})))
    (tmp_path / 'sgs_g_history.jsonl').write_text('\n'.join(lines) + '\n')
    seen = {}
    monkeypatch.setattr(plots, 'plot_g_grid', lambda h, layers, recs, out,
                        **kw: seen.update(labels=[r.label for r in recs]))
    tool = load_script('tools/analysis/plot_sgs.py')
    tool.run(tool.parse_args([str(tmp_path)]))
    assert seen['labels'] == ['refresh 1\niter 15', 'refresh 2\niter 60']
