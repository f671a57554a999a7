"""The checkpoint allow-list must not open weights-only ``torch.load`` to code (issue 10).

``import sgs_mm`` registers what mmengine checkpoints need. The only ``getattr``
such a checkpoint holds is ``getattr(HistoryBuffer, 'min'|'max'|'mean'|'current')``;
the checkpoint's ``builtins.getattr`` therefore resolves to a restricted callable
that allows exactly those and refuses everything else. A real mmengine
checkpoint with SGS state still loads with ``weights_only=True`` (resume is
covered end to end by tests/test_env_resume.py).
"""
import builtins
import pickle
import subprocess
import sys
import textwrap

import pytest
import torch
from mmengine.logging.history_buffer import HistoryBuffer

import sgs_mm  # noqa: F401  (registers the allow-list)
from sgs_mm.compat.torch_load import (HISTORY_BUFFER_METHODS, RestrictedGetattrError,
                                      restricted_getattr, unrestricted_getattr_entries)

pytestmark = pytest.mark.skipif(
    tuple(int(x) for x in torch.__version__.split('.')[:2]) < (2, 6),
    reason='torch < 2.6: no weights-only default, no named allow-list entries')


class _Payload:
    """Pickles as ``getattr(obj, name)`` (REDUCE of the checkpoint's builtins.getattr)."""

    def __init__(self, obj, name, *default):
        self.args = (obj, name, *default)

    def __reduce__(self):
        return builtins.getattr, self.args


class _CallablePayload(_Payload):
    """A :class:`_Payload` the pickler accepts as the function of another REDUCE."""

    def __call__(self, *args):
        raise AssertionError('never called while pickling')


class _Call:
    """Pickles as ``func(*args)``: calling what a getattr payload returned."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _save(tmp_path, obj, name='evil.pth'):
    path = tmp_path / name
    torch.save(dict(meta=dict(epoch=1), state_dict={'w': torch.ones(2)}, message_hub=obj),
               path)
    return path


def test_no_unrestricted_getattr_in_allow_list():
    assert unrestricted_getattr_entries() == []
    registered = torch.serialization.get_safe_globals()
    assert builtins.getattr not in registered
    assert (restricted_getattr, 'builtins.getattr') in registered


def test_restricted_getattr_allows_only_history_buffer_statistics():
    for name in sorted(HISTORY_BUFFER_METHODS):
        assert restricted_getattr(HistoryBuffer, name) is builtins.getattr(HistoryBuffer, name)
    for obj, name in ((HistoryBuffer, '__init__'), (HistoryBuffer, 'update'),
                      (HistoryBuffer, '__class__'), (HistoryBuffer.min, '__globals__'),
                      (torch, 'load'), (builtins, 'eval'), (HistoryBuffer, object())):
        with pytest.raises(RestrictedGetattrError, match='refused getattr'):
            restricted_getattr(obj, name)
    with pytest.raises(RestrictedGetattrError, match='<default>'):
        restricted_getattr(HistoryBuffer, 'min', None)


@pytest.mark.parametrize('payload', [
    pytest.param(lambda: _Payload(HistoryBuffer, '__init__'), id='HistoryBuffer.__init__'),
    pytest.param(lambda: _Payload(HistoryBuffer, 'update'), id='HistoryBuffer.update'),
    pytest.param(lambda: _Payload(_Payload(HistoryBuffer, 'min'), '__globals__'),
                 id='HistoryBuffer.min.__globals__'),
    pytest.param(lambda: _Payload(torch.Tensor, 'tolist'), id='Tensor.tolist'),
    pytest.param(lambda: _Payload(HistoryBuffer, 'mean', None), id='getattr-with-default'),
    pytest.param(lambda: _Call(_CallablePayload(HistoryBuffer, '__init__'), None),
                 id='call-HistoryBuffer.__init__'),
])
def test_crafted_checkpoint_is_refused(tmp_path, payload):
    path = _save(tmp_path, payload())
    with pytest.raises(pickle.UnpicklingError) as info:
        torch.load(path, map_location='cpu', weights_only=True)
    message = str(info.value)
    assert 'sgs_mm refused getattr(' in message, message
    assert 'HistoryBuffer.{current, max, mean, min}' in message


def test_crafted_checkpoint_would_run_code_with_plain_getattr(tmp_path):
    """Control: the same kind of payload is dangerous when the real getattr is allowed
    (a fresh process without sgs_mm): it reaches a module's globals, and through
    ``__builtins__`` eval/exec/__import__."""
    path = _save(tmp_path, _Payload(_Payload(HistoryBuffer, 'min'), '__globals__'))
    script = textwrap.dedent(f'''
        import builtins, torch
        from mmengine.logging.history_buffer import HistoryBuffer
        with torch.serialization.safe_globals([builtins.getattr, HistoryBuffer]):
            out = torch.load({str(path)!r}, weights_only=True)
        print('EXPOSED' if '__builtins__' in out['message_hub'] else 'NO')
    ''')
    proc = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == 'EXPOSED'


def test_os_system_is_never_reachable():
    """``getattr(os, 'system')``: os is no allowed global, and getattr refuses it anyway."""
    import os
    with pytest.raises(RestrictedGetattrError, match=r"getattr\(<os module>|getattr\(.*'system'"):
        restricted_getattr(os, 'system')


def test_real_checkpoint_with_sgs_state_loads_weights_only(tmp_path):
    """A toy Runner run with SpatialGradScalingHook: its checkpoint (message hub with
    HistoryBuffers, SGS state) loads with weights_only=True and the statistics methods
    come back as HistoryBuffer's own functions."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    from toy_runner import toy_cfg
    hook = dict(type='SpatialGradScalingHook', k=5, interval=1, warmup=1, num_batches=1)
    Runner.from_cfg(Config(toy_cfg(tmp_path / 'run', hook=hook, max_epochs=2))).train()
    ckpt = torch.load(tmp_path / 'run' / 'epoch_2.pth', map_location='cpu', weights_only=True)
    assert ckpt['sgs']['scales'] and ckpt['sgs']['num_refreshes'] >= 1
    buffers = ckpt['message_hub']['log_scalars']
    assert buffers and all(isinstance(b, HistoryBuffer) for b in buffers.values())
    methods = next(iter(buffers.values()))._statistics_methods
    assert {n: m for n, m in methods.items()} == {
        n: builtins.getattr(HistoryBuffer, n) for n in HISTORY_BUFFER_METHODS}
