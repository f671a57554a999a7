"""When the SGS hook refreshes G: epochs or iterations, on either kind of train loop."""
import math
from typing import Optional

UNITS = ('epoch', 'iter')


def resolve_unit(owner: str, unit: Optional[str], by_epoch: Optional[bool]) -> Optional[str]:
    """``unit`` from the ``unit`` / ``by_epoch`` arguments (None: follow the loop).

    Raises:
        ValueError: an unknown value, or the two arguments disagree.
    """
    if unit is not None and unit not in UNITS:
        raise ValueError(f'{owner}: unit must be one of {UNITS} or None, got {unit!r}')
    if by_epoch not in (None, True, False):
        raise ValueError(f'{owner}: by_epoch must be None, True or False, got {by_epoch!r}')
    if by_epoch is None:
        return unit
    from_flag = 'epoch' if by_epoch else 'iter'
    if unit is not None and unit != from_flag:
        raise ValueError(f'{owner}: by_epoch={by_epoch} contradicts unit={unit!r}; give one')
    return from_flag


def iters_per_epoch(loader, world_size: int = 1) -> int:
    """Training iterations that make one pass over the train dataset.

    An epoch-style sampler (mmengine's ``DefaultSampler``, torch's samplers)
    gives ``len(loader)`` per rank. mmengine's ``InfiniteSampler`` (mmseg's
    iteration-based loops) reports the whole dataset's length, so the pass is
    computed from the dataset, the batch size and the number of ranks.
    """
    sampler = getattr(loader, 'sampler', None)
    if type(sampler).__name__ != 'InfiniteSampler':
        return max(1, len(loader))
    batch_size = loader.batch_size or getattr(loader.batch_sampler, 'batch_size', 1)
    per_rank = math.ceil(len(loader.dataset) / max(1, world_size))
    return max(1, math.ceil(per_rank / batch_size))


class RefreshSchedule:
    """The reference's rule: refresh at ``warmup``, then every ``interval``
    after it, counted in ``unit``; on an iteration-based loop an epoch is
    ``iters_per_epoch`` iterations (so the meaning survives another GPU count
    or batch size).

    Args:
        interval, warmup (int): in ``unit``.
        unit (str): ``'epoch'`` or ``'iter'``.
        loop_by_epoch (bool): the train loop counts epochs (mmengine calls
            ``before_train_epoch``); False for iteration-based loops.
        iters_per_epoch (int): iterations of one epoch of this run.
    """

    def __init__(self, interval: int, warmup: int, unit: str, loop_by_epoch: bool,
                 iters_per_epoch: int = 1):
        self.interval, self.warmup, self.unit = interval, warmup, unit
        self.loop_by_epoch = loop_by_epoch
        self.iters_per_epoch = max(1, int(iters_per_epoch))
        self.last: Optional[int] = None

    def _due(self, step: int) -> bool:
        if self.last == step:
            return False
        return step == self.warmup or (step > self.warmup and step % self.interval == 0)

    def at_epoch_start(self, epoch: int) -> Optional[int]:
        """The step to refresh at when epoch ``epoch`` starts, else None."""
        if self.unit == 'epoch' and self.loop_by_epoch and self._due(epoch):
            return epoch
        return None

    def at_iter(self, iteration: int) -> Optional[int]:
        """The step to refresh at before iteration ``iteration``, else None."""
        if self.unit == 'iter':
            return iteration if self._due(iteration) else None
        if self.loop_by_epoch or iteration % self.iters_per_epoch:
            return None
        epoch = iteration // self.iters_per_epoch
        return epoch if self._due(epoch) else None

    @classmethod
    def for_run(cls, interval: int, warmup: int, unit: Optional[str], loop_by_epoch: bool,
                loader, world_size: int = 1) -> 'RefreshSchedule':
        """The schedule of one run: ``unit=None`` follows the loop; epochs on an
        iteration-based loop count ``iters_per_epoch(loader, world_size)``."""
        unit = unit or ('epoch' if loop_by_epoch else 'iter')
        ipe = iters_per_epoch(loader, world_size) if unit == 'epoch' and not loop_by_epoch else 1
        return cls(interval, warmup, unit, loop_by_epoch, ipe)

    def describe(self, num_batches: int) -> str:
        text = (f'refresh at {self.unit} {self.warmup} then every {self.interval} '
                f'{self.unit}s with {num_batches} batch(es)')
        if self.unit == 'epoch' and not self.loop_by_epoch:
            text += f' (1 epoch = {self.iters_per_epoch} iterations of this run)'
        return text
