"""The checkpoint allow-list must not open weights-only ``torch.load`` to code (issue 10).

``import sgs_mm`` registers what mmengine checkpoints need. The only ``getattr``
such a checkpoint holds is ``getattr(HistoryBuffer, 'min'|'max'|'mean'|'current')``;
the checkpoint's ``builtins.getattr`` therefore resolves to a restricted callable
that allows exactly those and refuses everything else. A real mmengine
checkpoint with SGS state still loads weights-only (resume is covered end to end
by tests/test_env_resume.py).

Every load goes through :func:`sgs_mm.compat.versions.load_weights_only`, so the
same tests run on torch >= 2.4 (torch's weights-only unpickler with the
allow-list) and on torch 2.1-2.3 (sgs_mm's restricted unpickler,
:mod:`sgs_mm.compat.restricted_load`).
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
from sgs_mm.compat.restricted_load import allowed_globals, restricted_load
from sgs_mm.compat.torch_load import (HISTORY_BUFFER_METHODS, RestrictedGetattrError,
                                      restricted_getattr, unrestricted_getattr_entries)
from sgs_mm.compat.versions import (has_add_safe_globals, load_weights_only,
                                    safe_globals_take_names)

# the two ways load_weights_only loads, each run on the torch that has it
LOADERS = [pytest.param(restricted_load, id='restricted-unpickler')] + (
    [pytest.param(load_weights_only, id='torch-weights-only')] if has_add_safe_globals()
    else [])


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
    # sgs_mm's restricted unpickler (every torch)
    assert allowed_globals()['builtins.getattr'] is restricted_getattr
    assert builtins.getattr not in allowed_globals().values()
    if not safe_globals_take_names():
        return  # torch < 2.6: no named entries in torch's own list
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
@pytest.mark.parametrize('load', LOADERS)
def test_crafted_checkpoint_is_refused(tmp_path, payload, load):
    path = _save(tmp_path, payload())
    with pytest.raises(pickle.UnpicklingError) as info:
        load(path, map_location='cpu')
    message = str(info.value)
    assert 'sgs_mm refused getattr(' in message, message
    assert 'HistoryBuffer.{current, max, mean, min}' in message


@pytest.mark.parametrize('load', LOADERS)
def test_global_outside_the_allow_list_is_refused(tmp_path, load):
    """A checkpoint that would call ``os.system`` (or any other global outside the
    list) is refused before anything runs."""
    import os
    marker = tmp_path / 'ran'
    path = _save(tmp_path, _Call(os.system, f'touch {marker}'))
    with pytest.raises(pickle.UnpicklingError, match='posix.system|os.system'):
        load(path, map_location='cpu')
    assert not marker.exists()
    torch.save({'w': torch.ones(2)}, tmp_path / 'plain.pth')  # control: a plain file loads
    assert torch.equal(load(tmp_path / 'plain.pth', map_location='cpu')['w'], torch.ones(2))


@pytest.mark.skipif(not hasattr(torch.serialization, 'safe_globals'),
                    reason='torch < 2.5 has no safe_globals context manager to build the control')
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


@pytest.mark.parametrize('load', LOADERS)
def test_real_checkpoint_with_sgs_state_loads_weights_only(tmp_path, load):
    """A toy Runner run with SpatialGradScalingHook: its checkpoint (message hub with
    HistoryBuffers, SGS state) loads with weights_only=True and the statistics methods
    come back as HistoryBuffer's own functions."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    from toy_runner import toy_cfg
    hook = dict(type='SpatialGradScalingHook', k=5, interval=1, warmup=1, num_batches=1)
    Runner.from_cfg(Config(toy_cfg(tmp_path / 'run', hook=hook, max_epochs=2))).train()
    ckpt = load(tmp_path / 'run' / 'epoch_2.pth', map_location='cpu')
    assert ckpt['sgs']['scales'] and ckpt['sgs']['num_refreshes'] >= 1
    buffers = ckpt['message_hub']['log_scalars']
    assert buffers and all(isinstance(b, HistoryBuffer) for b in buffers.values())
    methods = next(iter(buffers.values()))._statistics_methods
    assert {n: m for n, m in methods.items()} == {
        n: builtins.getattr(HistoryBuffer, n) for n in HISTORY_BUFFER_METHODS}
