"""Run forward passes and accumulate every layer's dependence statistics."""
import contextlib
import weakref
from collections import OrderedDict
from typing import Callable, Dict, Iterator, Optional, Set

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode

from ..compat.versions import OUT_OF_MEMORY_ERRORS, is_compiling
from .dependence_base import SUM, DependenceStats
from .distributed import all_reduce_many
from .geometry import Padding, as_batch, slid_input, zero_padding


Sink = Callable[[torch.Tensor, Padding], None]


OOM_ERRORS = OUT_OF_MEMORY_ERRORS
# how other allocators say it (CPU, MPS, older CUDA builds): a RuntimeError
_OOM_TEXT = ('out of memory', "can't allocate memory", 'cannot allocate memory')


def is_out_of_memory(error: BaseException) -> bool:
    """``error`` is a device or host allocation failure (``torch.OutOfMemoryError``,
    ``torch.cuda.OutOfMemoryError``, or a RuntimeError / MemoryError saying so)."""
    if isinstance(error, OOM_ERRORS + (MemoryError, )):
        return True
    return isinstance(error, RuntimeError) and any(t in str(error).lower() for t in _OOM_TEXT)


class RefreshOutOfMemory(RuntimeError):
    """A refresh pass ran out of memory (on this rank or another one)."""


def _conv2d_call(args, kwargs):
    """(input, weight, padding, dilation) of an ``F.conv2d`` call."""
    names = ('input', 'weight', 'bias', 'stride', 'padding', 'dilation', 'groups')
    bound = dict(zip(names, args))
    bound.update(kwargs)
    return (bound.get('input'), bound.get('weight'), bound.get('padding', 0),
            bound.get('dilation', 1))


def _tensors(obj):
    """The tensors in ``obj`` and one level of lists, tuples and dict values."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for t in obj if isinstance(t, torch.Tensor)]
    if isinstance(obj, dict):
        return [t for t in obj.values() if isinstance(t, torch.Tensor)]
    return []


class _OwnConv2d(TorchFunctionMode):
    """Finds, in a conv's own ``forward``, the ``F.conv2d`` call that convolves
    with the conv's weight or a tensor computed from it, and hands its
    arguments to ``on_call`` (once).

    "Computed from it" is followed through every torch function the forward
    calls while the mode is on (``weight.view``, ``mean``, ``(w - m) / s``,
    ``w + other``...): an output of a call that takes a tracked tensor is
    tracked too. Calls that convolve with another module's weight (a gate
    conv, mmcv SAConv2d's 1x1 context convs) are passed over. Tracked
    tensors are held by weak reference only.

    Args:
        weight: the conv's own weight Parameter.
        on_call: ``on_call(args, kwargs)`` of the matching ``F.conv2d`` call.
    """

    def __init__(self, weight: torch.Tensor, on_call):
        super().__init__()
        self.on_call = on_call
        self._derived = {id(weight): weakref.ref(weight)}

    def _is_derived(self, t: torch.Tensor) -> bool:
        ref = self._derived.get(id(t))
        return ref is not None and ref() is t

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.on_call is None:
            return func(*args, **kwargs)
        derived = any(self._is_derived(t)
                      for a in list(args) + list(kwargs.values()) for t in _tensors(a))
        if derived and getattr(func, '__name__', '') == 'conv2d':
            _, weight, _, _ = _conv2d_call(args, kwargs)
            if isinstance(weight, torch.Tensor) and self._is_derived(weight):
                on_call, self.on_call, self._derived = self.on_call, None, {}
                on_call(args, kwargs)
        out = func(*args, **kwargs)
        if derived and self.on_call is not None:
            for t in _tensors(out):
                self._derived[id(t)] = weakref.ref(t)
        return out


def _forward_is_standard(conv: nn.Conv2d) -> bool:
    """The class's ``forward`` is ``nn.Conv2d``'s (it pads in ``_conv_forward``)."""
    return type(conv).forward is nn.Conv2d.forward


@contextlib.contextmanager
def capture_inputs(conv: nn.Conv2d, sink: Sink,
                   no_own_call: Optional[Callable[[], None]] = None) -> Iterator[None]:
    """Hand ``sink(x, zeros)`` the tensor ``conv``'s kernel slides over, at every
    call, while the context is open (SGS_SPEC §2.1).

    ``x`` (N, C, H, W) is the input as the convolution receives it: padded
    with ``padding_mode`` when that is not ``'zeros'``, or by whatever the
    conv's own forward does before ``F.conv2d`` (mmcv's
    ``Conv2dAdaptivePadding``, TF-style 'same'); ``zeros`` (top, bottom, left,
    right) is the zero padding ``F.conv2d`` adds. An unbatched (C, H, W)
    input is one sample.

    - ``nn.Conv2d``'s own forward: a wrapper of ``conv._conv_forward`` on the
      instance pads as ``nn.Conv2d._conv_forward`` does.
    - A subclass whose ``forward`` is its own: the first ``F.conv2d`` call of
      that forward that convolves with the conv's weight or a tensor computed
      from it (a ``TorchFunctionMode`` while the forward runs, see
      :class:`_OwnConv2d`), with the input and padding it is given. Calls
      with other weights (a gate conv, context convs) are passed over. When
      no call uses its weight (the forward convolves some other way, e.g.
      unfold + matmul or a custom op), nothing is handed to ``sink`` and
      ``no_own_call()`` is called: G cannot be estimated for such a layer.
    - Paths that call ``conv._conv_forward`` directly and skip the module's
      hooks, such as mmengine's ``efficient_conv_bn_eval`` (conv + eval-mode
      BN fused on the fly), are seen through the ``_conv_forward`` wrapper.
    - Otherwise (e.g. while ``torch.compile`` traces, where no mode is
      entered) the forward-pre hook's input with the conv's own padding rule.

    Each call counts once. On any exit (``BaseException`` included: an
    interrupt inside the forward skips the module's forward hooks) every
    mode, hook and wrapper is removed.

    Args:
        conv: the conv.
        sink: receives ``(x, zeros)`` per call.
        no_own_call: called for each call of a subclass forward in which no
            ``F.conv2d`` used the conv's weight.
    """
    frames = []  # one per conv(x) call in progress: [seen, input, mode]
    standard = _forward_is_standard(conv)

    def emit(x, zeros):
        sink(as_batch(x), tuple(int(p) for p in zeros))

    def on_conv2d(frame, args, kwargs):
        if frame[0]:
            return
        x, weight, padding, dilation = _conv2d_call(args, kwargs)
        if not isinstance(x, torch.Tensor):
            return
        frame[0] = True
        emit(x, zero_padding(padding, tuple(weight.shape[-2:]), dilation))

    def close(frame):
        mode = frame[2]
        if mode is not None:
            frame[2] = None
            mode.__exit__(None, None, None)

    def pre_hook(module, inputs):
        frame = [False, inputs[0] if inputs else None, None]
        frames.append(frame)
        if not standard and not is_compiling():
            mode = _OwnConv2d(conv.weight, lambda args, kwargs: on_conv2d(frame, args, kwargs))
            mode.__enter__()
            frame[2] = mode

    def post_hook(module, inputs, output):
        frame = frames.pop()
        seen, x, mode = frame
        close(frame)
        if seen or output is None:
            return
        if mode is not None:
            if no_own_call is not None:
                no_own_call()
        elif isinstance(x, torch.Tensor):
            emit(*slid_input(conv, x))

    handles = [conv.register_forward_pre_hook(pre_hook),
               conv.register_forward_hook(post_hook, always_call=True)]
    had_own = '_conv_forward' in conv.__dict__
    inner = conv._conv_forward

    def conv_forward(x, *args, **kwargs):
        frame = frames[-1] if frames else None
        # inside a subclass's own forward the mode picks the call by its weight
        if frame is None or (not frame[0] and frame[2] is None):
            if frame is not None:
                frame[0] = True
            emit(*slid_input(conv, x))
        return inner(x, *args, **kwargs)

    conv._conv_forward = conv_forward
    try:
        yield
    finally:
        # frames left open: a forward interrupted by a BaseException (its
        # forward hooks do not run); innermost first
        while frames:
            close(frames.pop())
        for h in handles:
            h.remove()
        if had_own:
            conv._conv_forward = inner
        else:
            del conv._conv_forward


@torch.no_grad()
def collect_dependence(layers: Dict[str, nn.Conv2d],
                       make_stats: Callable[[str, nn.Conv2d], DependenceStats],
                       run_forward: Callable[[], None],
                       no_own_call: Optional[Set[str]] = None
                       ) -> 'OrderedDict[str, DependenceStats]':
    """Accumulate dependence statistics of each layer's input.

    Args:
        layers: the convs by name.
        make_stats: a fresh accumulator for a layer.
        run_forward: runs the model over the refresh batches.
        no_own_call: when given, receives the names of layers whose own
            forward ran but convolved with no tensor from their weight (see
            :func:`capture_inputs`): no statistics for them.

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
    # ranks that ran out of memory in this pass (SUM over ranks): every rank
    # still takes part in the pass's all-reduce, then all of them give up
    # together, so a distributed refresh never waits on a rank that left
    failed = torch.zeros(1, dtype=torch.int64)
    for pass_idx in range(num_passes):
        error = None
        with contextlib.ExitStack() as stack:
            for name, conv in layers.items():
                acc = stats[name]
                stack.enter_context(capture_inputs(
                    conv, lambda x, zeros, acc=acc, pass_idx=pass_idx: acc.update(
                        pass_idx, x, zeros),
                    None if no_own_call is None else
                    lambda name=name: no_own_call.add(name)))
            try:
                run_forward()
            except Exception as e:  # noqa: BLE001  only out-of-memory is caught
                if not is_out_of_memory(e):
                    raise
                error = e
        failed.fill_(0 if error is None else 1)
        all_reduce_many([(failed, SUM)] +
                        [item for s in stats.values() for item in s.reductions(pass_idx)])
        if int(failed.item()) > 0:
            raise RefreshOutOfMemory(
                f'{type(error).__name__}: {error}' if error is not None else
                'another rank ran out of memory')
        for s in stats.values():
            s.end_pass(pass_idx)
    return stats
