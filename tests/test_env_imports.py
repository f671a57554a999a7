"""The OpenMMLab stack imports, including mmcv's compiled ops."""
import importlib

import pytest


@pytest.mark.parametrize(
    'module', ['mmcv.ops', 'mmseg.models', 'mmpose.models', 'mmpretrain.models'])
def test_import(module):
    importlib.import_module(module)


def test_mmcv_has_compiled_ops():
    # mmcv-lite has no _ext; mmseg and mmpose import mmcv.ops at import time.
    ext = importlib.import_module('mmcv._ext')
    assert hasattr(ext, 'nms')


def test_sgs_mm_import_registers_safe_globals():
    import torch
    from mmengine.logging.history_buffer import HistoryBuffer

    import sgs_mm  # noqa: F401
    if not hasattr(torch.serialization, 'get_safe_globals'):
        pytest.skip('torch has no weights-only allow-list (< 2.4)')
    assert HistoryBuffer in torch.serialization.get_safe_globals()
