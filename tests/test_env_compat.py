"""sgs_mm.compat: checkpoint loading, the torch-version branches (versions.py) and the CPU dist helpers."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from mmengine.config import Config

from sgs_mm.compat import (cpu_dist_needed, cpu_model_wrapper_cfg,
                           init_cpu_dist_if_needed, patch_cfg_for_cpu_dist)
from sgs_mm.compat.torch_load import (apply_torch_load_fix, safe_globals,
                                      unrestricted_getattr_entries)

# A checkpoint shaped like mmengine's: a message hub with HistoryBuffers that
# hold numpy arrays and scalars of several dtypes.
_SAVE_AND_LOAD = textwrap.dedent('''
    import sys, numpy as np, torch
    from mmengine.logging import HistoryBuffer, MessageHub
    hub = MessageHub.get_instance('compat_test')
    for i in range(3):
        hub.update_scalar('train/loss', np.float32(0.5 * i))
        hub.update_scalar('train/lr', np.float64(0.1))
        hub.update_scalar('train/iter', np.int64(i))
    ckpt = dict(meta=dict(epoch=2), state_dict={{'w': torch.ones(2)}},
                message_hub=hub.state_dict(), extra=np.arange(3, dtype=np.int32))
    torch.save(ckpt, sys.argv[1])
    {import_line}
    out = torch.load(sys.argv[1], map_location='cpu')
    buf = out['message_hub']['log_scalars']['train/loss']
    assert isinstance(buf, HistoryBuffer)
    assert buf._statistics_methods['mean'] is HistoryBuffer.mean
    # the checkpoint's getattr is the restricted one, never the real builtin
    import builtins
    assert all(g is not builtins.getattr and not (isinstance(g, tuple) and g[0] is
               builtins.getattr) for g in torch.serialization.get_safe_globals())
    print('LOADED')
''')


def _run(tmp_path, import_line):
    script = tmp_path / 'save_load.py'
    script.write_text(_SAVE_AND_LOAD.format(import_line=import_line))
    return subprocess.run(
        [sys.executable, str(script), str(tmp_path / 'ckpt.pth')],
        capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(
    not hasattr(torch.serialization, 'add_safe_globals'),
    reason='torch < 2.4 loads without weights_only by default')
def test_mmengine_checkpoint_loads_only_with_fix(tmp_path):
    without = _run(tmp_path, '')
    # On torch >= 2.6 the plain load is refused; the fix is what makes it work.
    if tuple(int(x) for x in torch.__version__.split('.')[:2]) >= (2, 6):
        assert without.returncode != 0
        assert 'HistoryBuffer' in without.stderr
    with_fix = _run(tmp_path, 'import sgs_mm')
    assert with_fix.returncode == 0, with_fix.stderr[-3000:]
    assert 'LOADED' in with_fix.stdout


def test_fix_is_idempotent():
    assert apply_torch_load_fix() == apply_torch_load_fix()
    if hasattr(torch.serialization, 'get_safe_globals'):
        registered = torch.serialization.get_safe_globals()
        for g in safe_globals():
            assert registered.count(g) == 1
        assert unrestricted_getattr_entries() == []


def test_dist_helpers_do_nothing_without_launcher():
    assert not cpu_dist_needed('none')
    assert not cpu_dist_needed(None)
    assert init_cpu_dist_if_needed('none') is False
    cfg = Config(dict(launcher='none'))
    patch_cfg_for_cpu_dist(cfg)
    assert 'model_wrapper_cfg' not in cfg


@pytest.mark.skipif(torch.cuda.is_available(), reason='CPU-only behaviour')
def test_cpu_wrapper_cfg_patch():
    assert cpu_dist_needed('pytorch')
    cfg = Config(dict(launcher='pytorch'))
    patch_cfg_for_cpu_dist(cfg)
    assert cfg.model_wrapper_cfg == cpu_model_wrapper_cfg()
    cfg = Config(dict(model_wrapper_cfg=dict(
        type='MMDistributedDataParallel', find_unused_parameters=True,
        device_ids=[0])))
    patch_cfg_for_cpu_dist(cfg, launcher='pytorch')
    assert cfg.model_wrapper_cfg.device_ids is None
    assert cfg.model_wrapper_cfg.find_unused_parameters is True
    assert cfg.model_wrapper_cfg.broadcast_buffers is False


@pytest.mark.skipif(torch.cuda.is_available(), reason='CPU-only behaviour')
def test_init_without_torchrun_env_raises(monkeypatch):
    if torch.distributed.is_initialized():
        pytest.skip('a process group already exists in this process')
    for var in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(RuntimeError, match='torchrun'):
        init_cpu_dist_if_needed('pytorch')


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_cuda_machine_keeps_mmengines_own_dist():
    """GPU counterpart of the two CPU-only tests: with CUDA, nothing is patched
    and mmengine's own (NCCL) initialisation is left to run."""
    assert not cpu_dist_needed('pytorch')
    cfg = Config(dict(launcher='pytorch'))
    patch_cfg_for_cpu_dist(cfg)
    assert 'model_wrapper_cfg' not in cfg
    assert init_cpu_dist_if_needed('pytorch') is False


# ------------------------------------------------ sgs_mm.compat.versions, on every torch
def test_versions_out_of_memory_class_is_what_cuda_raises():
    """torch >= 2.5: torch.OutOfMemoryError (torch.cuda's is the same class);
    torch 2.1: torch.cuda.OutOfMemoryError. Either way the class CUDA raises,
    and the engine recognises it."""
    from sgs_mm.compat.versions import OUT_OF_MEMORY_ERRORS, OutOfMemoryError
    from sgs_mm.sgs.collect import is_out_of_memory
    assert issubclass(torch.cuda.OutOfMemoryError, OUT_OF_MEMORY_ERRORS)
    assert OutOfMemoryError in OUT_OF_MEMORY_ERRORS
    assert is_out_of_memory(OutOfMemoryError('CUDA out of memory'))
    if hasattr(torch, 'OutOfMemoryError'):
        assert torch.OutOfMemoryError in OUT_OF_MEMORY_ERRORS


def test_versions_torch_version_and_allow_list_flags():
    from sgs_mm.compat.versions import (has_add_safe_globals, safe_globals_take_names,
                                        torch_version)
    major, minor = torch_version()
    assert f'{major}.{minor}' == '.'.join(torch.__version__.split('.')[:2])
    assert has_add_safe_globals() == ((major, minor) >= (2, 4))
    assert safe_globals_take_names() == ((major, minor) >= (2, 6))


def test_versions_grad_scaler_and_cpu_capability():
    from sgs_mm.compat.versions import cpu_capability, grad_scaler, is_compiling
    scaler = grad_scaler('cuda', enabled=torch.cuda.is_available())
    assert scaler.is_enabled() == torch.cuda.is_available()
    assert cpu_capability() not in ('', 'unknown')
    assert is_compiling() is False


def test_load_weights_only_reads_an_mmengine_checkpoint_on_this_torch(tmp_path):
    """The message hub (HistoryBuffers holding numpy arrays) loads weights-only:
    through torch's unpickler on torch >= 2.4, sgs_mm's restricted one before."""
    from mmengine.logging import HistoryBuffer, MessageHub

    from sgs_mm.compat.versions import load_weights_only
    hub = MessageHub.get_instance('compat_versions_test')
    for i in range(3):
        hub.update_scalar('train/loss', np.float32(0.5 * i))
    torch.save(dict(state_dict={'w': torch.ones(2)}, message_hub=hub.state_dict(),
                    extra=np.arange(3, dtype=np.int32)), tmp_path / 'ckpt.pth')
    out = load_weights_only(tmp_path / 'ckpt.pth', map_location='cpu')
    buf = out['message_hub']['log_scalars']['train/loss']
    assert isinstance(buf, HistoryBuffer) and buf.mean() == pytest.approx(0.5)
    assert np.array_equal(out['extra'], np.arange(3))


def test_versions_fsdp2_types_where_torch_has_them():
    from sgs_mm.compat.versions import dtensor_type, fsdp2_module_type, torch_version
    from sgs_mm.sgs.sharding import is_sharded, local_shard
    t = torch.ones(2)
    assert not is_sharded(t) and local_shard(t) is t
    if torch_version() >= (2, 6):  # public homes of both (2.4-2.5: the private ones)
        from torch.distributed.fsdp import FSDPModule
        from torch.distributed.tensor import DTensor
        assert dtensor_type() is DTensor and fsdp2_module_type() is FSDPModule
    elif torch_version() < (2, 4):
        assert fsdp2_module_type() is None
