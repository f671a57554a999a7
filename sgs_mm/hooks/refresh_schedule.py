"""When the SGS hook refreshes G: epochs or iterations, on either kind of train loop."""
from typing import Optional

from .refresh_batches import batches_per_rank

UNITS = ('epoch', 'iter')
DEFAULT_UNIT = 'epoch'
# a schedule whose refreshes come closer than this many training iterations
# apart gets a warning at the start of training (a refresh costs about
# 2 x num_batches forward passes plus the statistics: every few hundred
# iterations it is a noticeable share of the run; the paper refreshes every
# 5 epochs, thousands of iterations)
MIN_ITERS_BETWEEN_REFRESHES = 200
# ... when the run holds more refreshes than this (a short run, e.g. a demo of a
# few hundred iterations, refreshing a handful of times costs little)
MAX_FREQUENT_REFRESHES = 10


def resolve_unit(owner: str, unit: Optional[str], by_epoch: Optional[bool]) -> str:
    """``unit`` from the ``unit`` / ``by_epoch`` arguments: epochs unless
    ``unit='iter'`` or ``by_epoch=False`` asks for iterations, on every loop.

    Raises:
        ValueError: an unknown value, or the two arguments disagree.
    """
    if unit is not None and unit not in UNITS:
        raise ValueError(f'{owner}: unit must be one of {UNITS} or None, got {unit!r}')
    if by_epoch not in (None, True, False):
        raise ValueError(f'{owner}: by_epoch must be None, True or False, got {by_epoch!r}')
    if by_epoch is None:
        return unit or DEFAULT_UNIT
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
    return batches_per_rank(loader, world_size)


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
        """The schedule of one run (``unit=None``: epochs). An epoch is
        ``iters_per_epoch(loader, world_size)`` iterations of this run."""
        return cls(interval, warmup, unit or DEFAULT_UNIT, loop_by_epoch,
                   iters_per_epoch(loader, world_size))

    # ---------------------------------------------------------- arithmetic
    def to_iters(self, steps: int) -> int:
        """``steps`` of the schedule's unit in training iterations."""
        return steps * self.iters_per_epoch if self.unit == 'epoch' else steps

    def position(self, epoch: int, iteration: int) -> int:
        """Where a run at ``epoch`` / ``iteration`` stands, in ``unit``
        (whole steps)."""
        if self.unit == 'iter':
            return iteration
        if self.loop_by_epoch:
            return epoch
        return iteration // self.iters_per_epoch

    def last_step(self, max_iters: int, max_epochs: Optional[int] = None) -> int:
        """The last step (in ``unit``) at which this run can still refresh:
        refreshes happen before an epoch or iteration starts."""
        if self.unit == 'epoch':
            if self.loop_by_epoch and max_epochs is not None:
                return max_epochs - 1
            return (max_iters - 1) // self.iters_per_epoch
        return max_iters - 1

    def count(self, first: int, last: int) -> int:
        """Refreshes due at steps ``first..last`` (both included)."""
        if last < first:
            return 0
        n = 1 if first <= self.warmup <= last else 0
        lo = max(first, self.warmup + 1)
        if lo <= last:
            n += last // self.interval - (lo - 1) // self.interval
        return n

    def _plural(self, n: int, unit: str) -> str:
        word = 'epoch' if unit == 'epoch' else 'iteration'
        return f'{n:,} {word}{"" if n == 1 else "s"}'

    def describe(self, num_batches: int) -> str:
        """``refresh at epoch 1 (iteration 186), then every 5 epochs = 930
        iterations, with 2 batch(es) per rank`` (both units)."""
        ipe = self.iters_per_epoch
        if self.unit == 'epoch':
            text = (f'refresh at epoch {self.warmup} (iteration {self.to_iters(self.warmup):,}), '
                    f'then every {self._plural(self.interval, "epoch")} = '
                    f'{self._plural(self.to_iters(self.interval), "iter")}')
        else:
            text = (f'refresh at iteration {self.warmup:,}, then every '
                    f'{self._plural(self.interval, "iter")} (= {self.interval / ipe:.3g} '
                    f'epochs)')
        return (text + f', with {num_batches} batch(es) per rank (1 epoch = '
                f'{self._plural(ipe, "iter")} of this run)')
