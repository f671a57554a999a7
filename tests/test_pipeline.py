"""tools/pipeline.py: spec checks, launch commands, the evaluation protocol
(final checkpoint tested and passed downstream, best-on-val only as a
labelled column), --seeds N (one chain per seed, mean ± std and paired
differences), and a short real run (pretrain -> PSPNet on the demo data)
that writes the results table and is restartable."""
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import load_script

REPO = Path(__file__).resolve().parents[1]


def _spec(tmp_path, text):
    p = tmp_path / 'spec.py'
    p.write_text(text)
    return str(p)


def test_load_spec_rejects_unknown_or_later_init_from(tmp_path):
    from sgs_mm.launch.pipeline import load_spec
    with pytest.raises(ValueError, match='is not a stage'):
        load_spec(_spec(tmp_path, "stages=[dict(name='a', config='x.py', "
                        "init_from='zz')]\n"))
    with pytest.raises(ValueError, match='comes before'):
        load_spec(_spec(tmp_path, "stages=[dict(name='b', config='x.py', "
                        "init_from='a'), dict(name='a', config='y.py')]\n"))


def test_cfg_options_address_spec_stages_by_name(tmp_path, capsys):
    """``--cfg-options stages.<name>.<field>=...`` changes that stage's spec
    entry (an optional stage is enabled so); other keys stay config options
    of every stage; unknown stages and stages starting from a disabled one
    are named."""
    from sgs_mm.launch.pipeline import load_spec, split_stage_options
    path = _spec(tmp_path, (
        "work_root='wd'\n"
        "stages=[dict(name='a', config='x.py'),\n"
        "        dict(name='b', config='y.py', init_from='a', enabled=False,\n"
        "             cfg_options={'k': 1})]\n"))
    assert [s['name'] for s in load_spec(path)['stages']] == ['a']
    stage_opts, rest = split_stage_options({
        'stages.b.enabled': True, 'stages.b.cfg_options.m': 2, 'x.y': 3})
    assert rest == {'x.y': 3}
    b = load_spec(path, stage_opts)['stages'][1]
    assert b['name'] == 'b' and b['cfg_options'] == {'k': 1, 'm': 2}
    with pytest.raises(ValueError, match="has no stage 'zz'; its stages: a, b"):
        load_spec(path, {'zz': {'enabled': True}})
    with pytest.raises(ValueError, match='initialises from a, which is not enabled'):
        load_spec(path, {'a': {'enabled': False}, 'b': {'enabled': True}})
    with pytest.raises(ValueError, match='stages.<stage name>.<field>'):
        split_stage_options({'stages.b': 1})
    # through the command line: the enabled stage runs, the option reaches
    # every stage's config, the stage option does not
    tool = load_script('tools/pipeline.py')
    cli = tmp_path / 'cli'
    cli.mkdir()
    path = _spec(cli, (
        f"stages=[dict(name='a', config='{REPO}/configs/demo/resnet18_demo.py'),\n"
        f"        dict(name='b', config='{REPO}/configs/demo/pspnet_r18-d8_demo.py',\n"
        "             init_from='a', enabled=False)]\n"))
    tool.main([path, '--dry-run', '--work-root', str(tmp_path / 'wd'),
               '--cfg-options', 'stages.b.enabled=True', 'foo.bar=7'])
    out = capsys.readouterr().out
    assert 'pspnet_r18-d8_demo.py' in out and out.count('foo.bar=7') == 4
    assert 'stages.b' not in out


def test_stage_commands_launchers():
    from sgs_mm.launch.pipeline import stage_commands
    st = dict(name='s', config='c.py', cfg_options={'a.b': 1})
    train, test = stage_commands(st, 'wd/s', 'p.pth', launcher='pytorch',
                                 nproc=4, resume=True)
    assert train[1:4] == ['-m', 'torch.distributed.run', '--nproc_per_node=4']
    assert 'model.backbone.init_cfg.checkpoint=p.pth' in train
    assert '--resume' in train and train[train.index('--launcher') + 1] == \
        'pytorch'
    assert 'model.backbone.init_cfg.checkpoint=p.pth' not in test
    assert '{ckpt}' in test and 'a.b=1' in test
    train, _ = stage_commands(dict(st, nproc=2), 'wd', None, launcher='none')
    assert train[1].endswith('train.py') and '--resume' not in train


def _result(name, task, metrics, variant, model, seed=None, best_val=None):
    return dict(name=name, task=task, metrics=metrics, init_from=None,
                train_seconds=1.0, test_seconds=2.0, seed=seed,
                best_val=best_val, table=dict(model=model, variant=variant))


def test_markdown_tables_layout():
    from sgs_mm.launch.pipeline import markdown_tables
    md = markdown_tables(dict(title='t', stages=[
        _result('p', 'seg', dict(mIoU=70.0, mAcc=80.0, aAcc=90.0),
                'Baseline', 'PSPNet-18',
                best_val=dict(metric='mIoU', value=70.4, step=8)),
        _result('q', 'seg', dict(mIoU=71.0, mAcc=81.0, aAcc=91.0), 'SGS',
                'PSPNet-18'),
        _result('r', 'pose', dict(PCK=84.4), 'SGS', 'MSRA ResNet-18')]))
    assert '| PSPNet-18 | 70.0 / 80.0 / 90.0 | 71.0 / 81.0 / 91.0 | ' \
        '+1.0 / +1.0 / +1.0 |' in md
    assert '| MSRA ResNet-18 | 84.4 |' in md
    assert 'Table 7' in md and 'Table 8' in md
    assert '**final checkpoint**' in md
    assert 'best val during training (selected on the reported split)' in md
    assert '| mIoU 70.4 @8 |' in md  # the labelled extra column
    assert 'no spread estimate' in md  # one run: no ± and no marking
    # both PCKh means, where the metric reports them (the paper's Table 8
    # mean of joints, the MPII benchmark's count-weighted one)
    md = markdown_tables(dict(title='t', stages=[
        _result('r', 'pose', dict(PCK=84.4, PCKh_weighted=84.4, PCKh_mean=82.1),
                'Baseline', 'MSRA ResNet-18')]))
    assert '| Model | Baseline (PCKh@0.5/PCKh@0.5 mean) |' in md
    assert '| MSRA ResNet-18 | 84.4 / 82.1 |' in md


def test_seeds_table_mean_std_and_paired_difference():
    from sgs_mm.launch.pipeline import markdown_tables
    stages = []
    # SGS - baseline per seed: +1.0, +1.2, +0.8 (clear) for mIoU; PCK:
    # +1.0, -1.0, +0.3 (within the spread)
    for seed, (b, s, pb, ps) in enumerate([(70.0, 71.0, 80.0, 81.0),
                                          (72.0, 73.2, 82.0, 81.0),
                                          (71.0, 71.8, 81.0, 81.3)]):
        stages += [
            _result('seg', 'seg', dict(mIoU=b, mAcc=1.0, aAcc=2.0),
                    'Baseline', 'PSPNet-18', seed),
            _result('seg_sgs', 'seg', dict(mIoU=s, mAcc=1.0, aAcc=2.0),
                    'SGS', 'PSPNet-18', seed),
            _result('pose', 'pose', dict(PCK=pb), 'Baseline', 'R18', seed),
            _result('pose_sgs', 'pose', dict(PCK=ps), 'SGS', 'R18', seed)]
    md = markdown_tables(dict(title='t', seeds=[0, 1, 2], stages=stages))
    assert 'mean ± std over 3 seeds' in md
    assert '| seg | 1 | seg |' in md  # the stage table has a seed column
    # mIoU baseline 71.0 ± 1.0, SGS 72.0 ± 1.1; difference 1.0 ± 0.2
    assert '| PSPNet-18 | 71.0 ± 1.0 / 1.0 ± 0.0 / 2.0 ± 0.0 | ' \
        '72.0 ± 1.1 / 1.0 ± 0.0 / 2.0 ± 0.0 | +1.0 ± 0.2 / +0.0 ± 0.0 ~ / ' \
        '+0.0 ± 0.0 ~ |' in md
    assert '| R18 | 81.0 ± 1.0 | 81.1 ± 0.2 | +0.1 ± 1.0 ~ |' in md
    assert 'paired by seed' in md


def _fake_run(calls):
    """Stands in for the train/test subprocesses: training writes two epoch
    checkpoints, a best one and the validation log; testing writes metrics
    that name the checkpoint it was given."""
    def run(cmd, log_path, quiet, env=None, on_line=None, procs=None):
        calls.append(cmd)
        wd = Path(cmd[cmd.index('--work-dir') + 1])
        if any(c.endswith('train.py') for c in cmd):
            for e in (1, 2):
                (wd / f'epoch_{e}.pth').write_text('x')
            (wd / 'best_accuracy_top1_epoch_1.pth').write_text('x')
            (wd / 'last_checkpoint').write_text(str(wd / 'epoch_2.pth'))
            vis = wd / '20240101_000000' / 'vis_data'
            vis.mkdir(parents=True)
            vis.joinpath('scalars.json').write_text(
                '{"loss": 1.0, "step": 1}\n'
                '{"accuracy/top1": 60.0, "mIoU": 60.0, "step": 1}\n'
                '{"accuracy/top1": 55.0, "mIoU": 55.0, "step": 2}\n')
        else:
            ckpt = next(c for c in cmd if c.endswith('.pth'))
            seed = [c for c in cmd if c.startswith('randomness.seed=')]
            base = 50.0 + (int(seed[0].split('=')[1]) if seed else 0)
            bonus = 1.0 if 'sgs' in str(wd.name) else 0.0
            (wd / 'test_metrics.json').write_text(json.dumps(
                {'accuracy/top1': base + bonus, 'mIoU': base + bonus,
                 'mAcc': 1.0, 'aAcc': 2.0, 'ckpt': ckpt}))
    return run


def _demo_spec(tmp_path):
    return _spec(tmp_path, f"""
work_root = '{tmp_path / "wd"}'
stages = [
    dict(name='pre', config='{REPO}/configs/demo/resnet18_demo.py',
         table=dict(model='ResNet-18', variant='Baseline')),
    dict(name='pre_sgs', config='{REPO}/configs/demo/resnet18_demo_sgs.py',
         table=dict(model='ResNet-18', variant='SGS')),
    dict(name='seg', config='{REPO}/configs/demo/pspnet_r18-d8_demo.py',
         init_from='pre', table=dict(model='PSPNet-18', variant='Baseline')),
    dict(name='seg_sgs',
         config='{REPO}/configs/demo/pspnet_r18-d8_demo_sgs.py',
         init_from='pre_sgs', table=dict(model='PSPNet-18', variant='SGS')),
]
""")


def test_final_checkpoint_is_tested_and_passed_downstream_per_seed(
        tmp_path, monkeypatch):
    """The demo chain with --seeds 2 (train/test subprocesses faked): each
    stage is tested on its final checkpoint although a best one exists,
    downstream stages start from their own seed's final upstream checkpoint,
    the best validation is only the labelled extra column, and the tables
    show mean ± std and the paired difference."""
    from sgs_mm.launch import pipeline
    calls = []
    monkeypatch.setattr(pipeline, '_run', _fake_run(calls))
    spec = pipeline.load_spec(_demo_spec(tmp_path))
    res = pipeline.run_pipeline(spec, seeds=2, quiet=True, check_data=False)
    wd = tmp_path / 'wd'
    assert res['seeds'] == [0, 1] and len(res['stages']) == 8
    by = {(r['name'], r['seed']): r for r in res['stages']}
    for (name, seed), r in by.items():
        # paths relative to the work root (a moved work root keeps working)
        assert r['tested_checkpoint'] == f'seed{seed}/{name}/epoch_2.pth'
        assert r['metrics']['ckpt'] == str(wd / r['tested_checkpoint'])
        assert r['best_checkpoint'].endswith('best_accuracy_top1_epoch_1.pth')
        assert r['best_val']['value'] == 60.0  # reported apart, labelled
        assert r['protocol'] == 'final-checkpoint'
    assert by[('seg', 1)]['init_checkpoint'] == 'seed1/pre/epoch_2.pth'
    assert by[('seg_sgs', 0)]['init_checkpoint'] == 'seed0/pre_sgs/epoch_2.pth'
    trains = [c for c in calls if c[1].endswith('train.py')]
    assert sum('randomness.seed=1' in c for c in trains) == 4
    md = (wd / 'results.md').read_text()
    assert '| ResNet-18 | 50.5 ± 0.7 | 51.5 ± 0.7 | +1.0 ± 0.0 |' in md
    assert 'mean ± std over 2 seeds' in md
    # a rerun skips everything; an older best-checkpoint result is re-tested
    old = json.loads((wd / 'seed0' / 'seg' / 'stage_result.json').read_text())
    old.pop('protocol')
    old['tested_checkpoint'] = old['best_checkpoint']
    (wd / 'seed0' / 'seg' / 'stage_result.json').write_text(json.dumps(old))
    calls.clear()
    res = pipeline.run_pipeline(spec, seeds=2, quiet=True, check_data=False)
    assert len(calls) == 1 and calls[0][1].endswith('test.py')
    assert str(wd / 'seed0' / 'seg' / 'epoch_2.pth') in calls[0]


def test_dry_run_with_seeds_prints_one_chain_per_seed(tmp_path, capsys):
    proc_args = [_demo_spec(tmp_path), '--dry-run', '--seeds', '2']
    tool = load_script('tools/pipeline.py')
    tool.main(proc_args)
    out = capsys.readouterr().out
    assert out.count('randomness.seed=0') == 8  # 4 stages x (train, test)
    assert out.count('randomness.seed=1') == 8
    assert f'{tmp_path / "wd" / "seed1" / "seg"}' in out
    assert '<pre final checkpoint>' in out
    assert not (tmp_path / 'wd').exists()  # a dry run writes nothing
    with pytest.raises(SystemExit):
        tool.parse_args([proc_args[0], '--seeds', '0'])


@pytest.mark.slow
def test_short_pipeline_run_on_demo_data(tmp_path):
    from sgs_mm.data.synthetic import make_all
    data = tmp_path / 'data'
    make_all(str(data), seed=0, which=['imagenet', 'cityscapes'],
             imagenet_num_train_per_class=8, imagenet_num_val_per_class=4,
             cityscapes_num_train=4, cityscapes_num_val=2)
    cls_root, seg_root = data / 'imagenet', data / 'cityscapes'
    spec = _spec(tmp_path, f"""
work_root = '{tmp_path / "wd"}'
stages = [
    dict(name='pre', config='{REPO}/configs/demo/resnet18_demo_sgs.py',
         cfg_options={{'train_dataloader.dataset.data_root': '{cls_root}',
                       'val_dataloader.dataset.data_root': '{cls_root}',
                       'test_dataloader.dataset.data_root': '{cls_root}',
                       'train_cfg.max_epochs': 2,
                       'train_cfg.val_begin': 1,
                       'train_cfg.val_interval': 1,
                       'default_hooks.checkpoint.interval': 1,
                       'default_hooks.checkpoint.save_best': 'auto',
                       'train_dataloader.batch_size': 8,
                       'custom_hooks.0.interval': 1}},
         table=dict(model='ResNet-18', variant='SGS')),
    dict(name='seg', config='{REPO}/configs/demo/pspnet_r18-d8_demo.py',
         init_from='pre',
         cfg_options={{'train_dataloader.dataset.data_root': '{seg_root}',
                       'val_dataloader.dataset.data_root': '{seg_root}',
                       'test_dataloader.dataset.data_root': '{seg_root}',
                       'train_cfg.max_iters': 4,
                       'train_cfg.val_begin': 1,
                       'train_dataloader.batch_size': 2,
                       'default_hooks.checkpoint.interval': 4}},
         table=dict(model='PSPNet-18', variant='Baseline')),
]
""")
    cmd = [sys.executable, str(REPO / 'tools' / 'pipeline.py'), spec,
           '--quiet']
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    wd = tmp_path / 'wd'
    res = json.loads((wd / 'results.json').read_text())
    pre, seg = res['stages']
    assert 0 <= pre['metrics']['accuracy/top1'] <= 100
    assert {'mIoU', 'mAcc', 'aAcc'} <= set(seg['metrics'])
    # the final checkpoint is tested and passed on, though a best one exists
    assert pre['best_checkpoint'] and pre['last_checkpoint'].endswith(
        'epoch_2.pth')
    assert pre['tested_checkpoint'] == pre['last_checkpoint']
    assert seg['init_checkpoint'] == pre['last_checkpoint']
    assert pre['best_val']['metric'] == 'accuracy/top1'
    assert pre['best_val']['validations'] == 2
    # mmengine's loops also validate after the last iteration/epoch
    assert seg['best_val']['metric'] == 'mIoU'
    assert seg['best_val']['step'] == 4
    # paths relative to the work root
    assert pre['sgs_history'] == 'pre/sgs_g_history.jsonl'
    assert (wd / pre['sgs_history']).is_file()
    assert seg['init_checkpoint'] == 'pre/epoch_2.pth'
    md = (wd / 'results.md').read_text()
    assert '| pre | cls | cpu |' in md and '| seg | seg | cpu | pre |' in md
    assert 'Table 7 style' in md
    assert 'StrictPretrained: loaded 120 tensors' in \
        (wd / 'seg' / 'pipeline.log').read_text()
    # restartable: finished stages are skipped, the table is rewritten
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0
    assert proc.stdout.count('finished before, skipped') == 2
    assert time.time() - t0 < 60


# ------------------------------------------------- never lose finished work
def _two_stage_spec(tmp_path, root):
    return _spec(tmp_path, f"""
work_root = '{root}'
stages = [
    dict(name='pre', config='{REPO}/configs/demo/resnet18_demo.py',
         table=dict(model='ResNet-18', variant='Baseline')),
    dict(name='seg', config='{REPO}/configs/demo/pspnet_r18-d8_demo.py',
         init_from='pre', table=dict(model='PSPNet-18', variant='Baseline')),
]
""")


def _finished_chain(tmp_path, monkeypatch, root):
    """Run the two-stage chain with faked train/test processes."""
    from sgs_mm.launch import pipeline
    calls = []
    monkeypatch.setattr(pipeline, '_run', _fake_run(calls))
    spec = pipeline.load_spec(_two_stage_spec(tmp_path, root))
    pipeline.run_pipeline(spec, quiet=True, check_data=False, progress=0)
    return pipeline, spec, calls


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob('*')
                  if p.is_file())


def test_force_checks_every_input_before_removing_anything(
        tmp_path, monkeypatch):
    """--force on a stage whose init_from checkpoint is gone fails before the
    finished stage is touched (it used to delete it, then fail)."""
    root = tmp_path / 'wd'
    pipeline, spec, calls = _finished_chain(tmp_path, monkeypatch, root)
    before = _files(root / 'seg')
    assert 'stage_result.json' in before and 'epoch_2.pth' in before
    (root / 'pre' / 'epoch_2.pth').unlink()
    calls.clear()
    with pytest.raises(pipeline.StageInputError, match='does not exist'):
        pipeline.run_pipeline(spec, only=['seg'], force=True, quiet=True,
                              check_data=False, progress=0)
    assert calls == []
    assert _files(root / 'seg') == before
    # a missing config or missing data is refused the same way
    spec['stages'][1]['config'] = str(tmp_path / 'nope.py')
    with pytest.raises(pipeline.StageInputError, match='not found'):
        pipeline.run_pipeline(spec, only=['seg'], force=True, quiet=True,
                              check_data=False, progress=0)
    assert _files(root / 'seg') == before


def test_force_keeps_old_results_until_the_rerun_finished(tmp_path,
                                                          monkeypatch):
    root = tmp_path / 'wd'
    pipeline, spec, calls = _finished_chain(tmp_path, monkeypatch, root)
    before = {f: (root / 'seg' / f).read_bytes() for f in _files(root / 'seg')}
    seen = {}

    def failing(cmd, log_path, quiet, env=None, on_line=None, procs=None):
        # while the rerun runs, the old results wait next to it
        seen['aside'] = sorted(p.name for p in root.iterdir())
        Path(log_path).write_text('crashed\n')
        raise RuntimeError('command failed (exit 1)')

    monkeypatch.setattr(pipeline, '_run', failing)
    with pytest.raises(RuntimeError, match='exit 1'):
        pipeline.run_pipeline(spec, only=['seg'], force=True, quiet=True,
                              check_data=False, progress=0)
    assert 'seg.previous' in seen['aside']
    # restored byte for byte; the failed attempt kept for its log
    assert {f: (root / 'seg' / f).read_bytes()
            for f in _files(root / 'seg')} == before
    assert (root / 'seg.failed' / 'pipeline.log').read_text() == 'crashed\n'
    assert not (root / 'seg.previous').exists()
    # a rerun that finishes replaces them and leaves nothing aside
    monkeypatch.setattr(pipeline, '_run', _fake_run(calls))
    pipeline.run_pipeline(spec, only=['seg'], force=True, quiet=True,
                          check_data=False, progress=0)
    assert not (root / 'seg.previous').exists()
    assert json.loads((root / 'seg' / 'stage_result.json').read_text())[
        'protocol'] == 'final-checkpoint'


def test_state_paths_are_relative_and_a_copied_root_uses_its_own_files(
        tmp_path, monkeypatch):
    """train_done.json / stage_result.json hold paths relative to the work
    root: a copied work root initialises from its own checkpoints, also
    when an older version wrote absolute paths (named in the log)."""
    import shutil
    root = tmp_path / 'wd'
    pipeline, spec, calls = _finished_chain(tmp_path, monkeypatch, root)
    for stage in ('pre', 'seg'):
        for f in ('train_done.json', 'stage_result.json'):
            state = json.loads((root / stage / f).read_text())
            for key in ('last_checkpoint', 'tested_checkpoint',
                        'init_checkpoint'):
                if state.get(key):
                    assert not Path(state[key]).is_absolute(), (f, key)
    assert json.loads((root / 'seg' / 'stage_result.json').read_text())[
        'init_checkpoint'] == 'pre/epoch_2.pth'
    # an older version's absolute path in the copy's upstream result
    old = json.loads((root / 'pre' / 'stage_result.json').read_text())
    old['last_checkpoint'] = str(root / 'pre' / 'epoch_2.pth')
    (root / 'pre' / 'stage_result.json').write_text(json.dumps(old))
    copy = tmp_path / 'copy'
    shutil.copytree(root, copy)
    calls.clear()
    out = []
    monkeypatch.setattr('builtins.print', lambda *a, **k: out.append(
        ' '.join(map(str, a))))
    console = pipeline.Console(0, stream=type('S', (), {
        'write': lambda self, t: out.append(t), 'flush': lambda self: None})())
    pipeline.run_pipeline(spec, work_root=str(copy), only=['seg'],
                          force=True, quiet=True, check_data=False,
                          console=console)
    train = next(c for c in calls if c[1].endswith('train.py'))
    init = [c for c in train if c.startswith('model.backbone.init_cfg')]
    assert init == [f'model.backbone.init_cfg.checkpoint='
                    f'{copy / "pre" / "epoch_2.pth"}']
    assert any('outside the work root' in line and str(root) in line
               for line in out), out


def test_find_checkpoint_prefers_the_work_dirs_own_file(tmp_path):
    from sgs_mm.launch.runner import find_checkpoint
    other, here = tmp_path / 'other', tmp_path / 'here'
    for d in (other, here):
        d.mkdir()
        (d / 'iter_4.pth').write_text('x')
    (here / 'last_checkpoint').write_text(str(other / 'iter_4.pth'))
    assert find_checkpoint(str(here), 'last') == str(here / 'iter_4.pth')


# ------------------------------------------------ concurrency and progress
def test_jobs_run_independent_stages_side_by_side(tmp_path, monkeypatch):
    """jobs=2: the two chains overlap, a stage starts only after the stage it
    initialises from; results come in spec order."""
    import threading
    from sgs_mm.launch import pipeline
    log, lock = [], threading.Lock()
    fake = _fake_run([])
    both = threading.Event()

    def run(cmd, log_path, quiet, env=None, on_line=None, procs=None):
        name = Path(cmd[cmd.index('--work-dir') + 1]).name
        kind = 'train' if cmd[1].endswith('train.py') else 'test'
        with lock:
            log.append(('start', name, kind))
            if ('start', 'pre_sgs', 'train') in log:
                both.set()
        if (name, kind) == ('pre', 'train'):
            both.wait(60)  # the other chain starts meanwhile
        fake(cmd, log_path, quiet)
        with lock:
            log.append(('end', name, kind))

    monkeypatch.setattr(pipeline, '_run', run)
    spec = pipeline.load_spec(_demo_spec(tmp_path))
    res = pipeline.run_pipeline(spec, jobs=2, quiet=True, check_data=False,
                                progress=0)
    assert [r['name'] for r in res['stages']] == ['pre', 'pre_sgs', 'seg',
                                                  'seg_sgs']
    pos = {e: i for i, e in enumerate(log)}
    assert pos[('start', 'pre_sgs', 'train')] < pos[('end', 'pre', 'train')]
    assert pos[('start', 'seg', 'train')] > pos[('end', 'pre', 'test')]
    assert pos[('start', 'seg_sgs', 'train')] > pos[('end', 'pre_sgs', 'test')]


def test_stage_status_from_mmengine_log_lines():
    from sgs_mm.launch.pipeline import StageStatus
    st = StageStatus('3/6 pspnet_r18', total=150, unit='iter')
    st.feed('12/02 06:03:41 - mmengine - INFO - Iter(train) [ 25/150]  lr: '
            '8.5e-03  eta: 0:00:29  time: 0.1732  loss: 1.9')
    assert st.line() == '3/6 pspnet_r18: iter 25/150, ETA 0:00:29'
    st = StageStatus('2/6 pretrain_r18_sgs', total=4, unit='epoch')
    st.feed('12/02 06:02:26 - mmengine - INFO - Epoch(train) [2][10/25]  lr: '
            '4.2e-02  eta: 0:00:14  time: 0.1997')
    assert st.line() == '2/6 pretrain_r18_sgs: epoch 2/4, iter 10/25, ' \
        'ETA 0:00:14'
    event = st.feed('12/02 06:03:03 - mmengine - INFO - SGS refresh #1 at '
                    'epoch 1 (1.08s, 2 batch(es), 17 layers; centre '
                    '[min,max]): ...')
    assert event == '2/6 pretrain_r18_sgs: SGS refresh #1 at epoch 1 ' \
        '(17 layers, 1.08s)'
    st.set_phase('testing')
    st.feed('12/02 06:02:49 - mmengine - INFO - Epoch(test) [4/4]    '
            'accuracy/top1: 90.5000')
    assert st.line() == '2/6 pretrain_r18_sgs: testing 4/4'


def test_console_prints_a_status_line_every_interval():
    import io
    from sgs_mm.launch.pipeline import Console, StageStatus
    buf = io.StringIO()
    with Console(1.0, stream=buf, prefix='demo') as console:
        console.add('a', StageStatus('1/6 a', 4, 'epoch'))
        time.sleep(2.7)
        console.remove('a')
    lines = buf.getvalue().splitlines()
    assert len(lines) >= 2 and all(
        line.startswith('[demo 00:0') and line.endswith('1/6 a: starting')
        for line in lines), lines


def test_stage_env_filters_the_pkg_resources_warning_only():
    from sgs_mm.launch.pipeline import stage_env
    env = stage_env(threads=1, base={'PATH': '/usr/bin',
                                     'PYTHONWARNINGS': 'default'})
    assert env['OMP_NUM_THREADS'] == '1' and env['PYTHONUNBUFFERED'] == '1'
    code = ('import warnings; warnings.warn("pkg_resources is deprecated as '
            'an API. See https://x", UserWarning); warnings.warn("another '
            'warning", UserWarning)')
    proc = subprocess.run([sys.executable, '-c', code], env=env,
                          capture_output=True, text=True)
    assert 'pkg_resources' not in proc.stderr
    assert 'another warning' in proc.stderr  # not a blanket ignore


def test_device_label():
    from sgs_mm.launch.pipeline import device_label
    assert device_label('none', 1, False) == 'cpu'
    assert device_label('none', 4, True) == 'cuda x1'
    assert device_label('pytorch', 4, True) == 'cuda x4'
    assert device_label('pytorch', 2, False) == 'cpu x2 (gloo)'


# ------------------------------------------------------------ run options
def test_run_options_are_one_checked_object(tmp_path):
    from sgs_mm.launch.pipeline import RunOptions, load_spec, run_pipeline
    opts = RunOptions(seeds=3, jobs=2)
    assert opts.replace(seeds=1).seeds == 1 and opts.seeds == 3
    for bad, match in ((dict(seeds=0), 'seeds'), (dict(jobs=0), 'jobs'),
                       (dict(launcher='srun'), 'launcher')):
        with pytest.raises(ValueError, match=match):
            RunOptions(**bad)
    spec = load_spec(_demo_spec(tmp_path))
    with pytest.raises(TypeError, match='sedes'):
        run_pipeline(spec, RunOptions(dry_run=True), sedes=2)


# --------------------------------------------- comparison arms in the spec
def test_a_chain_follows_its_first_stage_and_bad_arms_are_named(tmp_path):
    """A stage without its own ``enabled`` is left out with the stage it
    initialises from; an explicit enabled=True under a disabled one is an
    error; a bad ``reparam`` is refused when the spec loads."""
    from sgs_mm.launch.pipeline import load_spec
    path = _spec(tmp_path, (
        "stages=[dict(name='a', config='x.py', reparam='dbb', enabled=False),\n"
        "        dict(name='b', config='y.py', init_from='a'),\n"
        "        dict(name='c', config='y.py', init_from='b')]\n"))
    assert load_spec(path)['stages'] == []
    assert [s['name'] for s in load_spec(path, {'a': {'enabled': True}})[
        'stages']] == ['a', 'b', 'c']
    with pytest.raises(ValueError, match='initialises from a, which is not'):
        load_spec(path, {'b': {'enabled': True}})
    with pytest.raises(ValueError, match="stage a: reparam: kind must be one "
                       "of .*got 'dbbb'"):
        load_spec(path, {'a': {'enabled': True, 'reparam': 'dbbb'}})


def test_an_arm_needs_an_image_classifier_config(tmp_path):
    from sgs_mm.launch.pipeline import StageInputError, load_spec, run_pipeline
    spec = load_spec(_spec(tmp_path, (
        f"stages=[dict(name='seg', reparam='acb', config="
        f"'{REPO}/configs/demo/pspnet_r18-d8_demo.py')]\n")))
    with pytest.raises(StageInputError, match="stage seg: reparam='acb' needs "
                       "a config whose model is an mmpretrain ImageClassifier"):
        run_pipeline(spec, dry_run=True, work_root=str(tmp_path / 'wd'))


@pytest.mark.parametrize('depth', [18, 34, 50])
def test_comparison_spec_arms_are_data(depth):
    """compare_rD.py: paper_rD.py's stages (same work root: reused) plus one
    chain per arm -- the plain paper-recipe pretrain config with
    ``reparam=<kind>``, then the plain PSPNet and SimpleBaseline recipes from
    its final checkpoint; RepVGG is one option away."""
    from sgs_mm.launch.pipeline import load_spec, split_stage_options
    path = str(REPO / 'configs' / 'pipeline' / f'compare_r{depth}.py')
    base = load_spec(str(REPO / 'configs' / 'pipeline' / f'paper_r{depth}.py'))
    spec = load_spec(path)
    assert spec['work_root'] == base['work_root']
    assert spec['stages'][:len(base['stages'])] == base['stages']
    arms = spec['stages'][len(base['stages']):]
    by = {s['name']: s for s in base['stages']}
    want = []
    for kind, variant in (('acb', 'ACB'), ('dbb', 'DBB')):
        for task in ('pretrain', 'pspnet', 'simplebaseline'):
            want.append((f'{task}_r{depth}_{kind}', variant, task))
    assert [s['name'] for s in arms] == [n for n, _, _ in want]
    for st, (name, variant, task) in zip(arms, want):
        plain = by[f'{task}_r{depth}']
        assert st['config'] == plain['config'] and st['nproc'] == plain['nproc']
        assert st['table'] == dict(plain['table'], variant=variant)
        if task == 'pretrain':
            assert st['reparam'] == name.rsplit('_', 1)[1]
            assert 'init_from' not in st
        else:
            assert st['init_from'] == name.replace(task, 'pretrain', 1)
            assert 'reparam' not in st
    stage_opts, _ = split_stage_options(
        {f'stages.pretrain_r{depth}_repvgg.enabled': True})
    more = load_spec(path, stage_opts)['stages'][len(spec['stages']):]
    assert [s['name'] for s in more] == [
        f'{t}_r{depth}_repvgg' for t in ('pretrain', 'pspnet',
                                          'simplebaseline')]
    assert more[0]['reparam'] == 'repvgg'


@pytest.mark.slow
def test_comparison_dry_run_lists_every_stage_of_every_seed(tmp_path,
                                                            capsys):
    tool = load_script('tools/pipeline.py')
    tool.main([str(REPO / 'configs' / 'pipeline' / 'compare_r18.py'),
               '--dry-run', '--seeds', '2', '--launcher', 'pytorch',
               '--work-root', str(tmp_path / 'wd'), '--cfg-options',
               'stages.pretrain_r18_repvgg.enabled=True'])
    out = capsys.readouterr().out.splitlines()
    labels = [line.split('] ', 1)[1] for line in out
              if line.startswith('[pipeline 0')]
    cmds = [line for line in out if line.startswith('[pipeline] ')]
    assert len(cmds) == 2 * 2 * 15  # (train, test) x 2 seeds x 15 stages
    stages = [label.split(':')[0].split(' ', 1)[1] for label in labels
              if '/30 ' in label]
    assert len(stages) == 30
    for kind, variant in (('acb', 'ACB'), ('dbb', 'DBB'),
                          ('repvgg', 'RepVGG')):
        for seed in (0, 1):
            assert f'pretrain_r18_{kind} (seed {seed}): ResNet-18 {variant}, '\
                f'reparam {kind}, from scratch' in '\n'.join(labels)
            assert f'pspnet_r18_{kind} (seed {seed}): PSPNet-18 {variant}, '\
                f'from pretrain_r18_{kind}\'s final checkpoint' in \
                '\n'.join(labels)
        train = [c for c in cmds if f'seed1/pretrain_r18_{kind} ' in c
                 and 'train.py' in c]
        assert len(train) == 1 and 'model.type=ReparamImageClassifier' in \
            train[0] and f'model.reparam.kind={kind}' in train[0] and \
            'default_hooks.fused_checkpoint.type=FusedCheckpointHook' in \
            train[0] and 'randomness.seed=1' in train[0]
        down = [c for c in cmds if f'seed1/pspnet_r18_{kind} ' in c
                and 'train.py' in c]
        assert f'<pretrain_r18_{kind} final checkpoint>' in down[0]
        assert 'ReparamImageClassifier' not in down[0]
    assert not (tmp_path / 'wd').exists()


@pytest.mark.slow
def test_reparam_arms_chain_on_demo_data(tmp_path):
    """ACB and DBB pretraining -> the fused plain ResNet -> a PSPNet and a
    SimpleBaseline fine-tune, through tools/pipeline.py on the tiny generated
    data: the handed-on checkpoints load strictly (StrictPretrained)."""
    from sgs_mm.data.synthetic import make_all
    demo = load_script('tools/demo.py')
    data = tmp_path / 'data'
    make_all(str(data), seed=0, which=['imagenet', 'cityscapes', 'mpii'],
             imagenet_num_train_per_class=4, imagenet_num_val_per_class=2,
             cityscapes_num_train=2, cityscapes_num_val=1,
             mpii_num_train=4, mpii_num_val=2)

    def opts(rel, **extra):
        o = demo.data_root_options(str(REPO / 'configs' / 'demo' / rel),
                                   str(data))
        o.update(extra)
        return o

    pre = dict(**{'train_cfg.max_epochs': 1, 'train_dataloader.batch_size': 8,
                  'default_hooks.checkpoint.interval': 1})
    spec = _spec(tmp_path, f"""
work_root = '{tmp_path / "wd"}'
stages = [
    dict(name='pre_acb', config='{REPO}/configs/demo/resnet18_demo.py',
         reparam='acb', cfg_options={opts('resnet18_demo.py', **pre)!r},
         table=dict(model='ResNet-18', variant='ACB')),
    dict(name='pre_dbb', config='{REPO}/configs/demo/resnet18_demo.py',
         reparam=dict(kind='dbb'),
         cfg_options={opts('resnet18_demo.py', **pre)!r},
         table=dict(model='ResNet-18', variant='DBB')),
    dict(name='seg_acb', config='{REPO}/configs/demo/pspnet_r18-d8_demo.py',
         init_from='pre_acb', cfg_options={opts(
             'pspnet_r18-d8_demo.py', **{'train_cfg.max_iters': 2,
                                         'train_cfg.val_begin': 3,
                                         'train_dataloader.batch_size': 2,
                                         'default_hooks.checkpoint.interval':
                                         2})!r},
         table=dict(model='PSPNet-18', variant='ACB')),
    dict(name='pose_dbb', config='{REPO}/configs/demo/td-hm_res18_demo.py',
         init_from='pre_dbb', cfg_options={opts(
             'td-hm_res18_demo.py', **{'train_cfg.max_epochs': 1,
                                       'train_dataloader.batch_size': 4,
                                       'default_hooks.checkpoint.interval':
                                       1})!r},
         table=dict(model='MSRA ResNet-18', variant='DBB')),
]
""")
    cmd = [sys.executable, str(REPO / 'tools' / 'pipeline.py'), spec,
           '--quiet', '--threads', '1']
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    wd = tmp_path / 'wd'
    res = {r['name']: r for r in json.loads(
        (wd / 'results.json').read_text())['stages']}
    import torch
    for name, kind in (('pre_acb', 'acb'), ('pre_dbb', 'dbb')):
        ckpt = torch.load(wd / res[name]['last_checkpoint'],
                          map_location='cpu', weights_only=False)
        assert ckpt['reparam']['kind'] == kind
        assert res[name]['reparam'] in (kind, dict(kind=kind))
        assert not any('.branches.' in k for k in ckpt['state_dict'])
        assert 0 <= res[name]['metrics']['accuracy/top1'] <= 100
    assert res['seg_acb']['init_checkpoint'] == res['pre_acb'][
        'last_checkpoint']
    assert res['pose_dbb']['init_checkpoint'] == res['pre_dbb'][
        'last_checkpoint']
    assert {'mIoU', 'mAcc', 'aAcc'} <= set(res['seg_acb']['metrics'])
    assert 'PCK' in res['pose_dbb']['metrics']
    for name in ('seg_acb', 'pose_dbb'):
        assert 'StrictPretrained: loaded 120 tensors' in \
            (wd / name / 'pipeline.log').read_text(), name
    md = (wd / 'results.md').read_text()
    assert '| ResNet-18 | 'in md and 'ACB (top-1)' in md and 'DBB (top-1)' \
        in md


def test_comparison_table_has_a_row_per_arm_with_its_training_time():
    """More than two variants (the comparison specs): one row per variant
    with the paired difference and the train-time ratio to Baseline; the
    Baseline-vs-SGS layout alone gets no such table."""
    from sgs_mm.launch.pipeline import markdown_tables
    stages = []
    for seed in (0, 1):
        for variant, top1, secs in (('Baseline', 70.0, 100.0),
                                    ('SGS', 71.0, 103.0),
                                    ('ACB', 70.5, 150.0),
                                    ('DBB', 70.2, 200.0)):
            r = _result(f'p_{variant}', 'cls',
                        {'accuracy/top1': top1 + seed}, variant,
                        'ResNet-18', seed)
            r['train_seconds'] = secs * (1 + seed)
            stages.append(r)
    md = markdown_tables(dict(title='t', seeds=[0, 1], stages=stages))
    assert '## Comparison: pretraining (top-1) and training time' in md
    assert '| ResNet-18 | Baseline | 70.5 ± 0.7 | - | 2.5 min | - |' in md
    assert '| ResNet-18 | SGS | 71.5 ± 0.7 | +1.0 ± 0.0 | 2.6 min | ' \
        '1.03x ± 0.00 |' in md
    assert '| ResNet-18 | DBB | 70.7 ± 0.7 | +0.2 ± 0.0 | 5.0 min | ' \
        '2.00x ± 0.00 |' in md
    two = [r for r in stages if r['table']['variant'] in ('Baseline', 'SGS')]
    assert '## Comparison' not in markdown_tables(dict(title='t',
                                                       stages=two))
