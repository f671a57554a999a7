"""Run forward passes and accumulate every layer's dependence statistics."""
from collections import OrderedDict
from typing import Callable, Dict

import torch
import torch.nn as nn

from .dependence_base import DependenceStats
from .distributed import all_reduce_many


@torch.no_grad()
def collect_dependence(layers: Dict[str, nn.Conv2d],
                       make_stats: Callable[[str, nn.Conv2d], DependenceStats],
                       run_forward: Callable[[], None]) -> 'OrderedDict[str, DependenceStats]':
    """Accumulate dependence statistics of each layer's input.

    ``run_forward`` runs the model over the refresh batches; it is called once
    per pass of the estimator (the same batches each time). A forward-pre hook
    hands each conv's input to its accumulator as the conv runs, so no feature
    map outlives its layer. After each pass the statistics are all-reduced
    across ranks (one collective per op and dtype).

    Returns:
        The accumulators by layer name, ready for ``.dependence()``.
    """
    stats = OrderedDict((name, make_stats(name, conv)) for name, conv in layers.items())
    num_passes = max((s.num_passes for s in stats.values()), default=0)
    for pass_idx in range(num_passes):
        handles = []
        for name, conv in layers.items():
            acc = stats[name]

            def capture(module, inputs, acc=acc, pass_idx=pass_idx):
                acc.update(pass_idx, inputs[0])

            handles.append(conv.register_forward_pre_hook(capture))
        try:
            run_forward()
        finally:
            for h in handles:
                h.remove()
        all_reduce_many([item for s in stats.values() for item in s.reductions(pass_idx)])
        for s in stats.values():
            s.end_pass(pass_idx)
    return stats
