"""Drawing the refresh batches without disturbing training."""
import contextlib
import math
import random
from typing import List

import numpy as np
import torch
from torch.utils.data import DataLoader


@contextlib.contextmanager
def forked_rng():
    """Restore Python, NumPy and torch (CPU and CUDA) RNG states on exit, so a
    refresh's random data transforms do not change the training's randomness."""
    py, np_state = random.getstate(), np.random.get_state()
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(np_state)
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def rank0_seed(seed: int) -> int:
    """``seed`` as global rank 0 has it, on every rank (a broadcast in a
    multi-process run, so every rank must call it; ``seed`` itself on one)."""
    from mmengine.dist import broadcast, get_world_size
    if get_world_size() == 1:
        return int(seed)
    value = torch.tensor([int(seed)], dtype=torch.int64)
    broadcast(value, src=0)
    return int(value.item())


def loader_batch_size(loader) -> int:
    """The batch size of a DataLoader (given directly or by its batch sampler)."""
    return loader.batch_size or getattr(loader.batch_sampler, 'batch_size', None) or 1


def batches_per_rank(loader, world_size: int = 1) -> int:
    """Batches one pass over ``loader``'s dataset gives each rank with
    mmengine's ``DefaultSampler`` (``round_up``): the most that
    :func:`draw_batches` can draw. Raises TypeError for a dataset without a
    length."""
    per_rank = math.ceil(len(loader.dataset) / max(1, world_size))
    return max(1, math.ceil(per_rank / loader_batch_size(loader)))


def draw_batches(train_loader: DataLoader, num_batches: int, seed: int) -> List:
    """``num_batches`` collated batches from the train dataset.

    A separate loader (no workers) over the same dataset, collate function and
    batch size, with mmengine's rank-aware ``DefaultSampler`` (its shard is
    chosen by the *global* rank): each rank draws different samples, the
    training iterator (and its persistent workers) is untouched, and the draw
    is reproducible.

    The sampler is seeded with rank 0's ``seed`` on every rank: a shared
    permutation split by rank is what makes the ranks' samples disjoint, and a
    caller's seed can differ per rank (``runner.seed`` includes the global
    rank under ``randomness.diff_rank_seed=True``). In a multi-process run
    this is a collective: every rank must call it at the same point.
    """
    from mmengine.dataset import DefaultSampler
    seed = rank0_seed(seed)
    sampler = DefaultSampler(train_loader.dataset, shuffle=True, seed=seed)
    loader = DataLoader(train_loader.dataset, batch_size=loader_batch_size(train_loader),
                        sampler=sampler,
                        num_workers=0, collate_fn=train_loader.collate_fn)
    batches = []
    for batch in loader:
        batches.append(batch)
        if len(batches) == num_batches:
            break
    return batches
