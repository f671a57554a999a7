"""How many pixel pairs a refresh processes at once (``max_elems``).

The estimators walk a layer's input in batch chunks of at most ``max_elems``
elements of the zero-padded map. The chunk size never changes the NMI
statistics (ranges are MIN/MAX, histograms integer counts: G is bit-identical
for every chunk size); it trades temporary memory against the number of small
kernels launched.

``max_elems=None`` (the default) picks it from the layer's device:

- CPU (and any device other than CUDA): ``2**20``. On the 2-core CI CPU (one
  thread, ResNet-50, 2 x 32 images) the estimator took 4.2 s at ``2**18``,
  2.95 s at ``2**20`` and 2.7 s at ``2**22`` (within that machine's noise),
  while a larger chunk grows the process's resident memory.
- CUDA: from the memory the caching allocator can still hand out on that
  device (the driver's free memory, ``torch.cuda.mem_get_info``, plus what
  torch has reserved but not allocated)::

      max_elems = 2 ** floor(log2(available * CUDA_MEMORY_FRACTION / BYTES_PER_ELEM))

  clamped to ``[2**20, CUDA_MAX_ELEMS]``. On a GPU every chunk costs a few
  dozen small kernel launches and host syncs per displacement, so small
  chunks are launch-bound: a ResNet-50 refresh of 2 x 256 images at 224 on an
  H200 took 4.85 s at 2**20, 1.23 s at 2**22, 0.61 s at 2**24 and 0.46 s at
  2**26 (identical G). The cap ``2**26`` is where that curve flattens: each
  ResNet-50 KxK layer's batch of 256 (34 M to 110 M padded elements) then
  takes one or two chunks, and the temporaries stay below
  ``2**26 * BYTES_PER_ELEM`` = 3 GiB (the cap is chosen from 12 GiB
  available). The fraction leaves three quarters of the available memory to
  the refresh's forward pass and to fragmentation.

An explicit integer always wins.
"""
import math
import numbers
from typing import Optional, Union

import torch

# CPU chunk (and the floor of the CUDA rule)
CPU_MAX_ELEMS = 1 << 20
MIN_ELEMS = 1 << 20
# largest chunk the CUDA rule picks
CUDA_MAX_ELEMS = 1 << 26
# Peak temporary bytes per element of a chunk, measured on the estimators
# (every tensor an update creates, padded copy included; tests/test_sgs_chunking.py
# checks the bound). float32 input: NMI pass 0 6-28 B (28 B when a chunk holds
# a single sample), pass 1 20 B, 22 B with NaN/Inf in the input, 38 B with
# diag_removal; autocorr 27 B, 36 B with NaN/Inf. float64 input (the worst):
# up to 45 B. Rounded up.
BYTES_PER_ELEM = 48
# share of the available device memory the chunk's temporaries may take
CUDA_MEMORY_FRACTION = 0.25


def chunk_elems_for_memory(available_bytes: float) -> int:
    """The CUDA rule: largest power of two with ``elems * BYTES_PER_ELEM``
    within ``CUDA_MEMORY_FRACTION`` of ``available_bytes``, clamped to
    ``[MIN_ELEMS, CUDA_MAX_ELEMS]``."""
    budget = float(available_bytes) * CUDA_MEMORY_FRACTION / BYTES_PER_ELEM
    if not budget >= MIN_ELEMS:  # also NaN / negative
        return MIN_ELEMS
    elems = 1 << int(math.floor(math.log2(budget)))
    return max(MIN_ELEMS, min(CUDA_MAX_ELEMS, elems))


def cuda_available_bytes(device: torch.device) -> int:
    """Bytes the caching allocator can still give out on a CUDA device:
    the driver's free memory plus torch's reserved-but-unallocated blocks."""
    free, _ = torch.cuda.mem_get_info(device)
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return int(free) + max(0, int(cached))


def resolve_max_elems(max_elems: Optional[int], device: Union[str, torch.device],
                      available_bytes: Optional[float] = None) -> int:
    """The chunk size to use on ``device`` (see the module docstring).

    Args:
        max_elems: an explicit chunk size (wins), or None for the device default.
        device: the layer's device.
        available_bytes: CUDA only: use this instead of asking the device
            (tests, or a caller that knows better).

    Raises:
        ValueError: ``max_elems`` is not None and not an integer >= 1.
    """
    if max_elems is not None:
        if (isinstance(max_elems, bool) or not isinstance(max_elems, numbers.Integral)
                or max_elems < 1):
            raise ValueError(f'max_elems must be None or an integer >= 1, got {max_elems!r}')
        return int(max_elems)
    device = torch.device(device)
    if device.type != 'cuda':
        return CPU_MAX_ELEMS
    if available_bytes is None:
        try:
            available_bytes = cuda_available_bytes(device)
        except (RuntimeError, AssertionError):  # no usable CUDA runtime: stay small
            return MIN_ELEMS
    return chunk_elems_for_memory(available_bytes)
