"""Test-only hooks for tests/configs/toy_sgs_torchrun.py (tools/train.py under
torchrun). Both do nothing unless their environment variable is set.

- ``SGSTestCrashHook``: with ``SGS_TEST_CRASH_AT_ITER=N``, global rank 0
  SIGKILLs itself just before training iteration ``N`` (after the SGS hook's
  ``before_train_iter``), as an OOM kill or a lost node would; torchrun then
  tears the other ranks down and exits non-zero. It first writes
  ``<work_dir>/crashed_at.json`` (iteration, epoch, ranks) so a test can tell
  the kill happened where it asked.
- ``SGSTestDistProbeHook``: with ``SGS_TEST_PROBE_DIR=DIR``, after training
  every rank writes ``DIR/rank<R>.pt`` (R = global rank): its launcher
  environment (RANK, LOCAL_RANK, GROUP_RANK, ...), the ranks the process group,
  mmengine and the training sampler see, the sampler's indices, the G the
  training refreshes left, and the G of one more refresh through the hook's
  own draw (the batches it drew are recorded), after every rank took rank 0's
  buffers (mmengine's DDP runs with ``broadcast_buffers=False``, so BatchNorm
  running stats differ per rank). Rank 0 adds the model's state_dict and the union of every rank's
  refresh batches, so one process can recompute G on exactly those samples.
"""
import json
import os
import os.path as osp
import signal
import sys

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

CRASH_ENV = 'SGS_TEST_CRASH_AT_ITER'
PROBE_ENV = 'SGS_TEST_PROBE_DIR'
LAUNCH_VARS = ('RANK', 'LOCAL_RANK', 'GROUP_RANK', 'WORLD_SIZE', 'LOCAL_WORLD_SIZE',
               'MASTER_ADDR', 'MASTER_PORT')


@HOOKS.register_module(name='SGSTestCrashHook', force=True)
class SGSTestCrashHook(Hook):
    """SIGKILL global rank 0 before iteration ``$SGS_TEST_CRASH_AT_ITER``."""

    priority = 'LOWEST'

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        at = os.environ.get(CRASH_ENV)
        if at is None or runner.iter != int(at) or get_rank() != 0:
            return
        with open(osp.join(runner.work_dir, 'crashed_at.json'), 'w') as f:
            json.dump(dict(iter=runner.iter, epoch=runner.epoch, batch_idx=batch_idx,
                           rank=get_rank(), pid=os.getpid()), f)
        os.kill(os.getpid(), signal.SIGKILL)


@HOOKS.register_module(name='SGSTestDistProbeHook', force=True)
class SGSTestDistProbeHook(Hook):
    """Dump what each rank saw and computed to ``$SGS_TEST_PROBE_DIR``."""

    priority = 'LOWEST'

    def after_train(self, runner):
        out_dir = os.environ.get(PROBE_ENV)
        if not out_dir:
            return
        import torch.distributed as dist
        from mmengine.model import is_model_wrapper

        from sgs_mm import SpatialGradScalingHook
        from sgs_mm.hooks.refresh_batches import draw_batches

        hook = next(h for h in runner.hooks if isinstance(h, SpatialGradScalingHook))
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        sampler = runner.train_dataloader.sampler
        result = dict(
            env={k: os.environ.get(k) for k in LAUNCH_VARS},
            dist_rank=dist.get_rank(), dist_world_size=dist.get_world_size(),
            runner_rank=runner.rank, runner_world_size=runner.world_size,
            sampler_rank=sampler.rank, sampler_world_size=sampler.world_size,
            sampler_indices=list(iter(sampler)),
            model_device=str(next(model.parameters()).device),
            wrapper=type(runner.model).__name__,
            backend=dist.get_backend(),
            epoch=runner.epoch, iter=runner.iter,
            num_refreshes=hook.num_refreshes,
            seed=runner.seed,
            trained_g=hook.scales())
        for buf in model.buffers():
            dist.broadcast(buf, src=0)
        # one more refresh through the hook's own draw (its seed, the
        # rank-aware refresh sampler), recording the batches it drew
        module = sys.modules[type(hook).__module__]
        assert module.draw_batches is draw_batches, 'the hook no longer draws with draw_batches'
        drawn = []

        def recording_draw(*args, **kwargs):
            drawn.append(draw_batches(*args, **kwargs))
            return drawn[-1]

        module.draw_batches = recording_draw
        try:
            hook.refresh(runner, step=1000)
        finally:
            module.draw_batches = draw_batches
        assert len(drawn) == 1
        batches = drawn[0]
        gathered = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, batches)
        result['refresh_g'] = hook.scales()
        result['n_refresh_samples'] = sum(len(b['inputs']) for b in batches)
        if dist.get_rank() == 0:
            result['state_dict'] = {k: v.detach().clone()
                                    for k, v in model.state_dict().items()}
            result['union_batches'] = [b for per_rank in gathered for b in per_rank]
        os.makedirs(out_dir, exist_ok=True)
        torch.save(result, osp.join(out_dir, f'rank{dist.get_rank()}.pt'))
        dist.barrier()
