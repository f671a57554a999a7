"""Run forward passes and accumulate every layer's dependence statistics."""
import contextlib
from collections import OrderedDict
from typing import Callable, Dict, Iterator

import torch
import torch.nn as nn

from .dependence_base import DependenceStats
from .distributed import all_reduce_many


@contextlib.contextmanager
def capture_inputs(conv: nn.Conv2d, sink: Callable[[torch.Tensor], None]) -> Iterator[None]:
    """Hand every input ``conv`` convolves to ``sink`` while the context is open.

    A forward-pre hook sees the normal path (``conv(x)``). Paths that call
    ``conv._conv_forward`` directly and skip the module's hooks, such as
    mmengine's ``efficient_conv_bn_eval`` (conv + eval-mode BN fused on the
    fly), are seen through a wrapper of ``_conv_forward`` on the instance;
    inside ``conv(x)`` the wrapper stays silent, so each input counts once.
    Subclasses whose ``forward`` does not call ``_conv_forward`` are seen by
    the pre hook alone.
    """
    depth = [0]

    def pre_hook(module, inputs):
        depth[0] += 1
        sink(inputs[0])

    def post_hook(module, inputs, output):
        depth[0] -= 1

    handles = [conv.register_forward_pre_hook(pre_hook),
               conv.register_forward_hook(post_hook, always_call=True)]
    had_own = '_conv_forward' in conv.__dict__
    inner = conv._conv_forward

    def conv_forward(x, *args, **kwargs):
        if depth[0] == 0:
            sink(x)
        return inner(x, *args, **kwargs)

    conv._conv_forward = conv_forward
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        if had_own:
            conv._conv_forward = inner
        else:
            del conv._conv_forward


@torch.no_grad()
def collect_dependence(layers: Dict[str, nn.Conv2d],
                       make_stats: Callable[[str, nn.Conv2d], DependenceStats],
                       run_forward: Callable[[], None]) -> 'OrderedDict[str, DependenceStats]':
    """Accumulate dependence statistics of each layer's input.

    ``run_forward`` runs the model over the refresh batches; it is called once
    per pass of the estimator (the same batches each time). Each conv's
    input is handed to its accumulator as the conv runs (:func:`capture_inputs`),
    so no feature map outlives its layer. After each pass the statistics are
    all-reduced across ranks (one collective per op and dtype).

    Returns:
        The accumulators by layer name, ready for ``.dependence()``.
    """
    stats = OrderedDict((name, make_stats(name, conv)) for name, conv in layers.items())
    num_passes = max((s.num_passes for s in stats.values()), default=0)
    for pass_idx in range(num_passes):
        with contextlib.ExitStack() as stack:
            for name, conv in layers.items():
                acc = stats[name]
                stack.enter_context(capture_inputs(
                    conv, lambda x, acc=acc, pass_idx=pass_idx: acc.update(pass_idx, x)))
            run_forward()
        all_reduce_many([item for s in stats.values() for item in s.reductions(pass_idx)])
        for s in stats.values():
            s.end_pass(pass_idx)
    return stats
