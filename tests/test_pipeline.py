"""tools/pipeline.py: spec checks, launch commands, tables, and a short real
run (pretrain -> PSPNet on the demo data) that writes the results table and
is restartable."""
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


def test_markdown_tables_layout():
    from sgs_mm.launch.pipeline import markdown_tables
    st = lambda n, task, m, v, model: dict(  # noqa: E731
        name=n, task=task, metrics=m, init_from=None, train_seconds=1.0,
        test_seconds=2.0, table=dict(model=model, variant=v))
    md = markdown_tables(dict(title='t', stages=[
        st('p', 'seg', dict(mIoU=70.0, mAcc=80.0, aAcc=90.0), 'Baseline',
           'PSPNet-18'),
        st('q', 'seg', dict(mIoU=71.0, mAcc=81.0, aAcc=91.0), 'SGS',
           'PSPNet-18'),
        st('r', 'pose', dict(PCK=84.4), 'SGS', 'MSRA ResNet-18')]))
    assert '| PSPNet-18 | 70.0/80.0/90.0 | 71.0/81.0/91.0 |' in md
    assert '| MSRA ResNet-18 | 84.4 |' in md
    assert 'Table 7' in md and 'Table 8' in md


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
    assert seg['init_checkpoint'] == pre['last_checkpoint']
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
