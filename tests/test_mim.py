"""`mim train mmseg <SGS config>` trains with the SGS hook (README claim).

openmim is installed by tools/setup_env.sh with --no-deps (its opendatalab ->
openxlab dependency downgrades setuptools and requests) plus what `mim train`
really imports (requirements/tests.txt). The demo PSPNet-R18-D8 SGS config
runs for 2 iterations on a few generated Cityscapes-format images; mim runs
mmseg's own tools/train.py (`mmseg/.mim/tools/train.py`) on it.
"""
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG = 'configs/demo/pspnet_r18-d8_demo_sgs.py'


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_mim_train_mmseg_sgs_config(tmp_path):
    mim = Path(sys.executable).with_name('mim')
    if not mim.exists():
        pytest.fail(f'{mim} does not exist: openmim is not installed in this '
                    'environment (make env / tools/setup_env.sh installs it)')
    from sgs_mm.data.synthetic import make_cityscapes
    data = tmp_path / 'cityscapes'
    make_cityscapes(str(data), num_train=8, num_val=2)
    work_dir = tmp_path / 'work'
    options = [
        'model.backbone.init_cfg=None',  # no pretrain checkpoint here
        'train_cfg.max_iters=2',
        'custom_hooks.0.warmup=0',  # refresh G before the first step
        'default_hooks.logger.interval=1',
    ]
    for split in ('train', 'val', 'test'):
        options += [f'{split}_dataloader.dataset.data_root={data}',
                    f'{split}_dataloader.num_workers=0',
                    f'{split}_dataloader.persistent_workers=False']
    res = subprocess.run(
        [str(mim), 'train', 'mmseg', CONFIG, '--work-dir', str(work_dir),
         '--cfg-options', *options],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=840)
    out = res.stdout
    assert res.returncode == 0, out[-6000:]
    assert 'Training finished successfully' in out, out[-3000:]
    # mim ran mmseg's packaged train.py with this environment's python
    assert re.search(r'mmseg/\.mim/tools/train\.py', out) or \
        (work_dir / Path(CONFIG).name).exists()
    logs = sorted(work_dir.glob('*/*.log'))
    assert logs, f'no log in {work_dir}: {sorted(work_dir.rglob("*"))}'
    log = logs[-1].read_text()
    assert 'SpatialGradScalingHook' in log
    assert re.search(r'SGS refresh #1 at \w+ 0 ', log), log[-3000:]
    assert re.search(r'Iter\(train\) \[2/2\]', log), log[-3000:]
    assert (work_dir / 'iter_2.pth').exists()
