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
    def run(cmd, log_path, quiet):
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
    res = pipeline.run_pipeline(spec, seeds=2, quiet=True)
    wd = tmp_path / 'wd'
    assert res['seeds'] == [0, 1] and len(res['stages']) == 8
    by = {(r['name'], r['seed']): r for r in res['stages']}
    for (name, seed), r in by.items():
        own = wd / f'seed{seed}' / name
        assert r['tested_checkpoint'] == str(own / 'epoch_2.pth')
        assert r['metrics']['ckpt'] == r['tested_checkpoint']
        assert r['best_checkpoint'].endswith('best_accuracy_top1_epoch_1.pth')
        assert r['best_val']['value'] == 60.0  # reported apart, labelled
        assert r['protocol'] == 'final-checkpoint'
    assert by[('seg', 1)]['init_checkpoint'] == \
        str(wd / 'seed1' / 'pre' / 'epoch_2.pth')
    assert by[('seg_sgs', 0)]['init_checkpoint'] == \
        str(wd / 'seed0' / 'pre_sgs' / 'epoch_2.pth')
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
    res = pipeline.run_pipeline(spec, seeds=2, quiet=True)
    assert len(calls) == 1 and calls[0][1].endswith('test.py')
    assert str(wd / 'seed0' / 'seg' / 'epoch_2.pth') in calls[0]


def test_dry_run_with_seeds_prints_one_chain_per_seed(tmp_path, capsys):
    proc_args = [_demo_spec(tmp_path), '--dry-run', '--seeds', '2']
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        '_tool_pipeline', REPO / 'tools' / 'pipeline.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
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
    assert pre['sgs_history'] and Path(pre['sgs_history']).is_file()
    md = (wd / 'results.md').read_text()
    assert '| pre | cls |' in md and '| seg | seg | pre |' in md
    assert 'Table 7 style' in md
    assert 'StrictPretrained: loaded 120 tensors' in \
        (wd / 'seg' / 'pipeline.log').read_text()
    # restartable: finished stages are skipped, the table is rewritten
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0
    assert proc.stdout.count('finished before, skipped') == 2
    assert time.time() - t0 < 60
