"""The README's code blocks run exactly as written (extracted from README.md)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
# the torch-only engine: the snippet must not need any OpenMMLab package
from test_scaler import BLOCK_MM

ROOT = Path(__file__).resolve().parents[1]


def readme_block(heading: str, lang: str = 'python') -> str:
    """The first ``lang`` code block under the README's ``## heading``."""
    text = (ROOT / 'README.md').read_text()
    section = re.search(rf'^## {re.escape(heading)}\n(.*?)(?=^## |\Z)', text, re.S | re.M)
    assert section, f'README.md has no "## {heading}" section'
    block = re.search(rf'```{lang}\n(.*?)```', section.group(1), re.S)
    assert block, f'no ```{lang} block under "## {heading}"'
    return block.group(1)


@pytest.mark.slow
def test_without_openmmlab_snippet_runs_as_written(tmp_path):
    """The "Without OpenMMLab" snippet, unchanged, in a process where OpenMMLab
    cannot be imported: it trains 3 epochs (on CUDA where available), refreshes
    G once at epoch 1 and saves a checkpoint with G."""
    code = readme_block('Without OpenMMLab')
    assert 'import itertools' in code and '.cuda()' not in code
    proc = subprocess.run([sys.executable, '-c', BLOCK_MM + code], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, 'OMP_NUM_THREADS': '2',
                               'PYTHONPATH': str(ROOT)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ckpt = torch.load(tmp_path / 'latest.pth', map_location='cpu', weights_only=True)
    assert ckpt['sgs']['num_refreshes'] == 1
    scales = ckpt['sgs']['scales']
    assert len(scales) == 17 and all(torch.isfinite(g).all() for g in scales.values())
    assert any((g - 1).abs().max() > 0.01 for g in scales.values())  # G was estimated
