"""SpatialGradScaler: SGS for any PyTorch training loop.

The orchestration floor between the algorithm (estimators, G, application in
``sgs_mm.sgs``) and framework glue (``sgs_mm.hooks``): which convs, when G is
applied, how a refresh runs the model, what is kept when an estimate fails,
and the state saved in checkpoints. Torch only.
"""
import gc
import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

import torch
import torch.nn as nn

from .apply import ScalingApplier
from .autocorr import AutocorrStats
from .chunking import resolve_max_elems
from .collect import RefreshOutOfMemory, collect_dependence
from .distributed import broadcast_from_rank0, is_distributed
from .geometry import PairGeometry
from .layers import find_sgs_layers, unwrap_model
from .sharding import reshard_fsdp2
from .nmi import NMIStats
from .options import SGSOptions
from .scaling import scaling_from_dependence
from .state_checks import check_saved_scales
from .static_scalings import reparam_scaling

STATE_VERSION = 2
# chunk sizes of a refresh and of its retries after running out of memory,
# as divisors of the normal chunk (max_chunk_elems, or the device's default)
OOM_RETRY_DIVISORS = (1, 8, 64)
RETRY_MIN_ELEMS = 1 << 12


def free_memory() -> None:
    """Give back what a failed refresh held: Python garbage, then the CUDA
    caching allocator's unused blocks (only where CUDA is in use)."""
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def _first_line(error: BaseException) -> str:
    text = str(error).strip().split('\n')[0]
    if isinstance(error, RefreshOutOfMemory):
        return text
    return f'{type(error).__name__}: {text}' if text else type(error).__name__
Forward = Callable[[nn.Module, Any], Any]


def _default_forward(model: nn.Module, batch) -> Any:
    return model(batch)


# path segments wrappers add to module names: DDP / DataParallel ('module',
# leading) and torch.compile ('_orig_mod', anywhere)
_WRAPPER_SEGMENTS = ('module', '_orig_mod')


def strip_wrappers(name: str) -> str:
    """``name`` without the segments model wrappers add: every ``_orig_mod``
    and the leading ``module`` segments (``module._orig_mod.conv1`` -> ``conv1``)."""
    parts = [p for p in name.split('.') if p != '_orig_mod']
    while parts and parts[0] == 'module':
        parts = parts[1:]
    return '.'.join(parts)


def map_layer_names(saved: Sequence[str], kernels: Dict[str, tuple],
                    saved_shapes: Dict[str, tuple]):
    """Match saved layer names to a model's (``kernels``: name -> kernel size).

    1. the same name;
    2. the same name once wrapper segments are stripped (:func:`strip_wrappers`);
    3. for the rest, one prefix added to or removed from every saved name
       (``conv1`` <-> ``backbone.conv1``): the prefix that maps the most
       remaining names onto layers with the saved G's kernel shape, if no
       other prefix maps as many (a tie is ambiguous: nothing is mapped).

    Every model layer gets at most one saved name.

    Returns:
        ``(mapping, ambiguous)``: saved name -> model name, and the saved
        names left out because they fit more than one way.
    """
    mine = list(kernels)
    mapping: Dict[str, str] = {s: s for s in saved if s in kernels}
    taken = set(mapping.values())

    def fits(s, m):
        return m not in taken and kernels[m] == saved_shapes.get(s)

    by_stripped: Dict[str, List[str]] = {}
    for m in mine:
        by_stripped.setdefault(strip_wrappers(m), []).append(m)
    for s in saved:
        if s in mapping:
            continue
        cands = [m for m in by_stripped.get(strip_wrappers(s), []) if fits(s, m)]
        if len(cands) == 1:
            mapping[s] = cands[0]
            taken.add(cands[0])
    rest = [s for s in saved if s not in mapping]
    free = {strip_wrappers(m): m for m in mine if m not in taken}
    votes: Dict[tuple, Dict[str, str]] = {}
    for s in rest:
        cs = strip_wrappers(s)
        for cm, m in free.items():
            if not fits(s, m):
                continue
            if cm.endswith('.' + cs):
                votes.setdefault(('', cm[:-len(cs)]), {})[s] = m
            elif cs.endswith('.' + cm):
                votes.setdefault((cs[:-len(cm)], ''), {})[s] = m
    ambiguous: List[str] = []
    if votes:
        best = max(len(v) for v in votes.values())
        winners = [v for v in votes.values() if len(v) == best]
        if len(winners) == 1 and len(set(winners[0].values())) == len(winners[0]):
            mapping.update(winners[0])
        else:
            ambiguous = sorted({s for v in winners for s in v})
    return mapping, ambiguous


def _names(names: Sequence[str], n: int = 20) -> str:
    shown = ', '.join(names[:n])
    return f'[{shown}' + (f', ... {len(names) - n} more]' if len(names) > n else ']')


def _few(mapping: Dict[str, str], n: int = 3) -> str:
    items = [f'{s!r} -> {m!r}' for s, m in list(mapping.items())[:n]]
    more = f' and {len(mapping) - n} more' if len(mapping) > n else ''
    return ', '.join(items) + more


@dataclass
class RefreshReport:
    """What one :meth:`SpatialGradScaler.refresh` did.

    Attributes:
        refresh: the refresh count after this one (1 for the first).
        updated: the new G per layer (float64, CPU).
        idle: convs that did not run during the refresh (G kept).
        kept_nan: convs whose G would contain NaN (G kept).
        nonfinite: convs with NaN/Inf inputs (those channels ignored).
        seconds: wall time of the refresh.
        failed: why the refresh gave up (out of memory after the retries with
            smaller chunks); every layer kept its G and the refresh count
            did not move. None when it succeeded.
        no_own_call: convs whose own forward ran but convolved with no tensor
            computed from their weight (G kept: it cannot be estimated).
        adopted: convs that became trainable since the scaler was built
            (frozen then) and are scaled from this refresh on.
    """
    refresh: int
    updated: 'OrderedDict[str, torch.Tensor]' = field(default_factory=OrderedDict)
    idle: List[str] = field(default_factory=list)
    kept_nan: List[str] = field(default_factory=list)
    nonfinite: List[str] = field(default_factory=list)
    seconds: float = 0.0
    failed: Optional[str] = None
    no_own_call: List[str] = field(default_factory=list)
    adopted: List[str] = field(default_factory=list)


_ISLICE_HINT = ('pass the batches as a list, e.g. sgs.refresh([x.cuda() for x, _ in '
                'itertools.islice(loader, 2)]) for 2 batches of a DataLoader')


def as_batch_list(batches) -> list:
    """``refresh``'s ``batches`` as a list: a bare tensor or a dict (one
    collated batch) is one batch; a list, tuple or other sized collection is
    a sequence of them.

    A DataLoader, a Dataset, an iterator or a generator is refused: a refresh
    needs a few batches, and iterating such a source runs through all of it
    (an endless loader never returns).

    Args:
        batches: what :meth:`SpatialGradScaler.refresh` was given.

    Raises:
        ValueError: no batch at all, a loader / dataset / unsized iterable,
            or not an iterable of batches.
    """
    if isinstance(batches, (torch.Tensor, Mapping)):
        return [batches]
    from torch.utils.data import DataLoader, Dataset
    if isinstance(batches, (DataLoader, Dataset)):
        raise ValueError(f'SpatialGradScaler.refresh() takes the refresh batches themselves, '
                         f'got a {type(batches).__name__}, which it would run through '
                         f'entirely: {_ISLICE_HINT}')
    if not hasattr(batches, '__len__') and hasattr(batches, '__iter__'):
        raise ValueError(f'SpatialGradScaler.refresh() got an unsized iterable '
                         f'({type(batches).__name__}: an iterator, generator or streaming '
                         f'loader, possibly endless): {_ISLICE_HINT}')
    try:
        batches = list(batches)
    except TypeError:
        raise ValueError(f'SpatialGradScaler.refresh() takes a list of batches (each what '
                         f'forward(model, batch) takes; a bare tensor is one batch), got '
                         f'{type(batches).__name__}') from None
    if not batches:
        raise ValueError('SpatialGradScaler.refresh() needs at least one batch: pass a list '
                         'of batches (e.g. [images] or two batches of the train loader)')
    return batches


class SpatialGradScaler:
    """Spatial Gradient Scaling (ICLR 2023) for a model's KxK convolutions.

    Every eligible conv's weight gradient is multiplied by a KxK matrix G
    (broadcast over out/in channels); :meth:`refresh` re-estimates G from the
    spatial dependence of each conv's input (``SGS_SPEC.md``)::

        sgs = SpatialGradScaler(model)           # G = 1 everywhere
        sgs.attach(optimizer)
        for epoch in range(epochs):
            if epoch == 1 or (epoch > 1 and epoch % 5 == 0):
                sgs.refresh(two_batches)         # eval + no_grad inside
            train_one_epoch(...)
        torch.save({'model': ..., 'sgs': sgs.state_dict()}, path)

    G is applied exactly once per weight: attaching a scaler to weights that
    another one still hooks (a notebook cell run again) detaches the other
    one, with a warning naming the layers; the newest attach wins.

    Under ``torch.distributed`` each rank refreshes on its own batches; the
    statistics are all-reduced so every rank gets the same G, equal to one
    process on the union of the batches. A ``DistributedDataParallel`` (or
    DataParallel/FSDP) model is unwrapped.

    Args:
        model (nn.Module): the model (or its DDP wrapper).
        method (str): ``'nmi'`` (default), ``'autocorr'``, ``'fixed'`` (the
            paper's 3x3 alpha/beta matrix) or ``'reparam'`` (Lemma 1, G = sum
            of the branches' masks). Static methods set G here, once.
        k (float): the k-transform ``k·S/((k-1)·S+1)``. Defaults to 5.
        diag_removal (bool): the paper's ImageNet variant, ``nmi`` only.
        respect_dilation (bool): pair pixels ``dilation`` apart as the taps
            see them (False: 1 apart, like the reference). Defaults to True.
        mode (str): ``'grad'`` (default) or ``'update'`` (scale the optimizer's
            update; needs the optimizer(s) in :meth:`attach`).
        include / exclude (str | list[str]): module-name globs.
        alpha, beta (float): ``'fixed'``'s ratios.
        branches (list[tuple[int, int]]): ``'reparam'``'s branch kernels.
        normalize (bool): ``'reparam'``: mean 1 (False: exact Lemma-1 values).
        max_chunk_elems (int, optional): pixel pairs processed at once; None
            picks it from each layer's device (see ``sgs_mm.sgs.chunking``).
        logger (logging.Logger, optional): where warnings go
            (default ``logging.getLogger('sgs_mm')``).

    Raises:
        ValueError: a bad argument, a pattern that matches no conv, no
            eligible conv, or a ``reparam`` branch larger than a kernel.
    """

    def __init__(self, model: nn.Module, method: str = 'nmi', k: float = 5.0,
                 diag_removal: bool = False, respect_dilation: bool = True,
                 mode: str = 'grad', include: Union[str, Sequence[str], None] = None,
                 exclude: Union[str, Sequence[str], None] = None,
                 alpha: Optional[float] = None, beta: Optional[float] = None,
                 branches: Optional[Sequence] = None, normalize: bool = True,
                 max_chunk_elems: Optional[int] = None,
                 logger: Optional[logging.Logger] = None,
                 options: Optional[SGSOptions] = None):
        self.options = options or SGSOptions(
            method=method, k=k, diag_removal=diag_removal, respect_dilation=respect_dilation,
            mode=mode, include=include, exclude=exclude, alpha=alpha, beta=beta,
            branches=branches, normalize=normalize, max_chunk_elems=max_chunk_elems)
        self.logger = logger or logging.getLogger('sgs_mm')
        owner = self.options.owner
        self.model = unwrap_model(model)
        self.layers, even, refused, frozen = find_sgs_layers(
            self.model, self.options.include, self.options.exclude, owner)
        # frozen convs: picked up at the refresh after they become trainable;
        # until then, warned about once when their weight gets a gradient
        frozen_names = set(frozen)
        self._left_out = OrderedDict((n, m) for n, m in self.model.named_modules()
                                     if n in frozen_names)
        self._warned_left_out = set()
        self._optimizers: List[torch.optim.Optimizer] = []
        # G and the refresh count are published together under this lock:
        # state_dict() from another thread (an asynchronous checkpoint
        # writer) sees one refresh's state, never a mix
        self._state_lock = threading.RLock()
        if frozen:
            self.logger.info(f'SGS skips {len(frozen)} conv(s) whose weight is frozen '
                             f'(requires_grad=False, e.g. frozen_stages): {_names(frozen)}; '
                             'one unfrozen later is scaled from the next refresh on')
        if even:
            self.logger.warning(f'SGS skips {len(even)} conv(s) with an even kernel size (no '
                                f'centre tap): {even}')
        if refused:
            self.logger.warning(
                f'SGS cannot scale {refused}: their weight is recomputed from other '
                'parameters (torch.nn.utils.parametrize / weight_norm), so a gradient hook on '
                'it never fires and G on its leaves is not G on the weight. They train '
                'without SGS.')
        if not self.layers:
            raise ValueError(f'{owner}: the model has no eligible conv (a trainable nn.Conv2d '
                             'with an odd kernel larger than 1x1 on both sides, matching '
                             'include/exclude)')
        self._group_layers()
        shared = {k: v for k, v in self.groups.items() if len(v) > 1}
        if shared:
            self.logger.info(f'SGS: convs sharing one weight get one G (mean of theirs): '
                             f'{list(shared.values())}')
        self.applier = self._make_applier(self.options.mode)
        self.num_refreshes = 0
        self.reported_no_own_call = set()
        self.reported_idle = set()
        self._idle_since_refresh: List[str] = []
        self._check_pending = False
        self._step_handles = []
        self._set_static_scalings()

    # ------------------------------------------------------------------ setup
    @property
    def method(self) -> str:
        return self.options.method

    @property
    def state_lock(self) -> 'threading.RLock':
        """The (reentrant) lock under which G and the refresh count change.
        Hold it to make more changes appear together to :meth:`state_dict`
        callers in other threads (the hook publishes its schedule step so)."""
        return self._state_lock

    def _group_layers(self) -> None:
        """One G per weight Parameter: convs sharing a weight form a group,
        keyed by the first name, and get the mean of their G."""
        self.groups: 'OrderedDict[str, List[str]]' = OrderedDict()
        first_name: Dict[int, str] = {}
        for name, conv in self.layers.items():
            key = first_name.setdefault(id(conv.weight), name)
            self.groups.setdefault(key, []).append(name)
        self.key_of = {n: key for key, names in self.groups.items() for n in names}

    def _make_applier(self, mode: str) -> ScalingApplier:
        """An applier for the weights of :attr:`groups`, with the convs using each
        (for the gathered weight of a sharded model, see :class:`ScalingApplier`)."""
        return ScalingApplier(
            OrderedDict((key, self.layers[key].weight) for key in self.groups), mode,
            modules=OrderedDict((key, [self.layers[n] for n in names])
                                for key, names in self.groups.items()))

    def _set_static_scalings(self, keys: Optional[Sequence[str]] = None) -> None:
        method = self.options.method
        keys = list(self.groups) if keys is None else keys
        if method == 'fixed':
            g, skipped = self.options.static_scaling(), []
            for key in keys:
                if tuple(self.layers[key].kernel_size) == (3, 3):
                    self.applier.set(key, g)
                else:
                    skipped.append(key)
            if skipped:
                self.logger.warning(f"SGS method='fixed' is a 3x3 matrix; G stays 1 for the "
                                    f'non-3x3 convs {skipped}')
        elif method == 'reparam':
            for key in keys:
                try:
                    g = reparam_scaling(self.options.branches,
                                        tuple(self.layers[key].kernel_size),
                                        self.options.normalize)
                except ValueError as e:
                    raise ValueError(f'{self.options.owner}: layer {key!r}: {e}') from None
                self.applier.set(key, g)

    def _adopt_unfrozen(self) -> List[str]:
        """Take in the convs that were frozen when the scaler was built and are
        trainable now (fine-tuning that unfreezes a stage): they get G from
        this refresh on (a static G at once). The applier is rebuilt over
        all weights, keeping every G, and re-attached where it was.

        Returns:
            The names of the convs taken in.
        """
        now = [n for n, conv in self._left_out.items() if conv.weight.requires_grad]
        if not now:
            return []
        layers = find_sgs_layers(self.model, self.options.include, self.options.exclude,
                                 self.options.owner)[0]
        adopted = [n for n in layers if n in now and n not in self.layers]
        for n in now:
            del self._left_out[n]
        skipped = [n for n in now if n not in adopted]
        if skipped:
            self.logger.warning(f'SGS: {skipped} became trainable but cannot be scaled (even '
                                'kernel, or a weight recomputed from other parameters); they '
                                'train without SGS')
        if not adopted:
            return []
        with self._state_lock:
            old = self.applier
            self.layers = OrderedDict((n, layers[n]) for n in layers
                                      if n in self.layers or n in adopted)
            self._group_layers()
            applier = self._make_applier(old.mode)
            for key, g in old.scales.items():
                if key in applier.scales:
                    applier.scales[key].copy_(g)
            applier.active = old.active
            attached = old.attached
            old.detach()
            self.applier = applier
            if attached:
                self.applier.on_release = weakref.WeakMethod(self.detach)
                self.applier.attach(self._optimizers)
            self._set_static_scalings([k for k in self.groups if k in adopted])
        return adopted

    def _check_left_out(self) -> None:
        """One warning, the first time a conv left out as frozen trains
        (before the refresh that takes it in)."""
        training = [n for n, conv in self._left_out.items()
                    if n not in self._warned_left_out and conv.weight.requires_grad
                    and conv.weight.grad is not None]
        if not training:
            return
        self._warned_left_out.update(training)
        when = ('the next refresh estimates their G' if self.options.dynamic else
                'the next refresh gives them their G')
        self.logger.warning(
            f'SGS: {_names(training)} were frozen when SGS started and train now with G = 1 '
            f'(not scaled) until {when} and scales them from then on.')

    def attach(self, optimizers: Union[torch.optim.Optimizer,
                                       Iterable[torch.optim.Optimizer], None] = None) -> None:
        """Apply G from now on (all ones until the first refresh).

        Args:
            optimizers: the optimizer(s) stepping the model. Required in
                ``'update'`` mode; in ``'grad'`` mode they enable the
                self-check at the first step after each refresh.
        """
        if isinstance(optimizers, torch.optim.Optimizer):
            optimizers = [optimizers]
        optimizers = list(optimizers or [])
        self.detach()
        self._optimizers = optimizers
        self.applier.on_release = weakref.WeakMethod(self.detach)
        taken = self.applier.attach(optimizers)
        if taken:
            self.logger.warning(
                f'SGS: another SpatialGradScaler was still attached to {taken} (built earlier '
                'on this model, e.g. by a notebook cell run again, or a second SGS hook); it is '
                'detached now and this one applies G to them, once. (Attaching the other one '
                'again would take them back.)')
        if self.applier.unowned:
            self.logger.warning(f"SGS mode='update': no attached optimizer steps the weights "
                                f'of {self.applier.unowned}; their updates are not scaled')
        self._step_handles = [opt.register_step_pre_hook(self._self_check)
                              for opt in optimizers]
        self._arm_check()

    def detach(self) -> None:
        """Stop applying G (G itself is kept)."""
        self.applier.detach()
        for h in self._step_handles:
            h.remove()
        self._step_handles = []

    # ---------------------------------------------------------------- refresh
    def _make_stats(self, name: str, conv: nn.Conv2d, divisor: int = 1):
        geometry = PairGeometry.from_conv(conv, self.options.respect_dilation)
        device = conv.weight.device
        max_elems = self.options.max_chunk_elems
        if divisor > 1:  # a retry after running out of memory: smaller chunks
            max_elems = max(RETRY_MIN_ELEMS, resolve_max_elems(max_elems, device) // divisor)
        if self.options.method == 'nmi':
            return NMIStats(geometry, conv.in_channels, device, max_elems,
                            diag_removal=self.options.diag_removal)
        return AutocorrStats(geometry, conv.in_channels, device, max_elems)

    def refresh(self, batches: Sequence, forward: Optional[Forward] = None,
                fallback_forward: Optional[Forward] = None) -> RefreshReport:
        """Re-estimate G from ``batches`` (``nmi``/``autocorr``; no-op otherwise).

        The model runs in eval mode under ``no_grad`` (BatchNorm statistics
        untouched); every module's train/eval flag is restored afterwards. In a
        multi-process run every rank refreshes with global rank 0's buffers
        (DDP often leaves each rank its own BatchNorm running statistics), so
        all ranks see one model; each rank's own buffers are put back after.

        Args:
            batches: a list of what ``forward`` takes, one item per forward
                pass; a bare tensor (or dict) is one batch.
            forward: ``forward(model, batch)``; default ``model(batch)``.
            fallback_forward: a second way to run the model, used only for the
                convs that ``forward`` left idle (e.g. training-only heads).

        Out of memory (on any rank) is not fatal: the refresh frees what it
        held (and the CUDA cache) and retries with chunks 8x, then 64x
        smaller; if that fails too, every layer keeps its G, a warning says
        how to set ``max_chunk_elems``, and ``report.failed`` says why.

        Returns:
            RefreshReport: the new G per layer, the idle / NaN / non-finite
            layers (their previous G kept, warnings logged).

        Raises:
            ValueError: no batch (``[]``), or ``batches`` is not iterable.
        """
        start = time.perf_counter()
        report = RefreshReport(refresh=self.num_refreshes)
        batches = as_batch_list(batches) if self.options.dynamic else batches
        report.adopted = self._adopt_unfrozen()
        if report.adopted:
            self.logger.info(
                f'SGS: {len(report.adopted)} conv(s) frozen when SGS started are trainable now '
                f'and scaled from this refresh on: {_names(report.adopted)}')
        if not self.options.dynamic:
            return report
        forward = forward or _default_forward
        model = self.model
        flags = [(m, m.training) for m in model.modules()]
        buffers = list(model.buffers()) if is_distributed() else []
        own_buffers = [b.detach().clone() for b in buffers]

        no_own_call = set()

        def run(fwd, layers, divisor):
            no_own_call.clear()
            return collect_dependence(layers, lambda n, c: self._make_stats(n, c, divisor),
                                      lambda: [fwd(model, batch) for batch in batches],
                                      no_own_call)

        stats = None
        try:
            model.eval()
            with torch.no_grad():
                broadcast_from_rank0(buffers)
                for attempt, divisor in enumerate(OOM_RETRY_DIVISORS):
                    try:
                        stats = run(forward, self.layers, divisor)
                        idle = OrderedDict((n, self.layers[n]) for n, acc in stats.items()
                                           if int(acc.calls) == 0 and n not in no_own_call)
                        if idle and fallback_forward is not None:
                            first = set(no_own_call)
                            stats.update(run(fallback_forward, idle, divisor))
                            no_own_call.update(first)
                        break
                    except RefreshOutOfMemory as e:
                        stats = None
                        free_memory()
                        if attempt + 1 < len(OOM_RETRY_DIVISORS):
                            self.logger.warning(
                                f'SGS refresh #{self.num_refreshes + 1} ran out of memory '
                                f'({_first_line(e)}); memory freed, retrying with chunks '
                                f'{OOM_RETRY_DIVISORS[attempt + 1]}x smaller')
                        else:
                            report.failed = _first_line(e)
        finally:
            for m, training in flags:
                m.training = training
            with torch.no_grad():
                for b, own in zip(buffers, own_buffers):
                    b.copy_(own)
            reshard_fsdp2(model)
        if stats is None:
            report.seconds = time.perf_counter() - start
            chunk = self.options.max_chunk_elems
            self.logger.warning(
                f'SGS refresh #{self.num_refreshes + 1} ran out of memory even with chunks '
                f'{OOM_RETRY_DIVISORS[-1]}x smaller ({report.failed}); the previous G is kept '
                'and training goes on. To refresh within less memory, set max_chunk_elems '
                f'(pixel pairs processed at once; now {chunk if chunk else "from the device"}, '
                f'e.g. max_chunk_elems={2**18} in SpatialGradScaler(...) or the '
                'SpatialGradScalingHook config) and/or fewer or smaller refresh batches '
                '(num_batches).')
            return report

        per_layer = {}
        for name, acc in stats.items():
            if int(acc.calls) == 0:
                (report.no_own_call if name in no_own_call else report.idle).append(name)
                continue
            if int(acc.nonfinite.sum()) > 0:
                report.nonfinite.append(name)
            g = scaling_from_dependence(acc.dependence(), acc.geometry.displacements,
                                        tuple(self.layers[name].kernel_size), self.options.k)
            if g is None:
                report.kept_nan.append(name)
            else:
                per_layer[name] = g
        new_g = OrderedDict()
        for key, names in self.groups.items():
            gs = [per_layer[n] for n in names if n in per_layer]
            if gs:
                new_g[key] = torch.stack(gs).mean(0) if len(gs) > 1 else gs[0]
        with self._state_lock:  # G and its refresh count are published together
            for key, g in new_g.items():
                self.applier.set(key, g)
                report.updated[key] = g.detach().to('cpu', torch.float64)
            self.num_refreshes += 1
            report.refresh = self.num_refreshes
        report.seconds = time.perf_counter() - start
        self._idle_since_refresh = report.idle
        self._warn(report)
        self._arm_check()
        return report

    def _warn(self, report: RefreshReport) -> None:
        new_no_own = [n for n in report.no_own_call if n not in self.reported_no_own_call]
        if new_no_own:
            self.reported_no_own_call.update(new_no_own)
            self.logger.warning(
                f'SGS cannot estimate G for {new_no_own}: their forward ran, but none of its '
                'F.conv2d calls convolved with their own weight or a tensor computed from it '
                '(they convolve another way, e.g. a custom op, deformable conv or unfold + '
                'matmul). They keep G = 1 (their previous G).')
        new_idle = [n for n in report.idle if n not in self.reported_idle]
        if new_idle:
            self.reported_idle.update(new_idle)
            self.logger.warning(
                f'SGS: these convs did not run during the refresh and keep their previous G: '
                f'{new_idle}. Their forward was never called by the refresh forward: a branch '
                'it does not take (e.g. a training-only head), or a module that uses the '
                'weight without calling the conv (e.g. F.conv2d(x, conv.weight)); the first '
                'training step tells which.')
        if report.kept_nan:
            self.logger.warning(f'SGS: G would contain NaN (constant or non-finite inputs); '
                                f'previous G kept for {report.kept_nan}')
        if report.nonfinite:
            self.logger.warning(f'SGS: non-finite values in the inputs of {report.nonfinite}; '
                                f'those channels were ignored')

    # ------------------------------------------------------------- self-check
    def _arm_check(self) -> None:
        self.applier.reset_counts()
        self._check_pending = True

    @torch.no_grad()
    def _self_check(self, optimizer, args, kwargs) -> None:
        """At the first optimizer step after attaching / each refresh: every
        weight that received a gradient went through SGS's hook, and still is
        the Parameter the hook is on."""
        if self._left_out:
            self._check_left_out()
        if not self._check_pending:
            return
        self._check_pending = False
        if self.options.mode != 'grad':
            return
        replaced, bypassed = [], []
        for key, names in self.groups.items():
            w = self.applier.weights[key]
            if any(self.layers[n].weight is not w for n in names):
                replaced.append(key)
            elif (self.applier.fired[key] == 0 and w.grad is not None
                  and bool(w.grad.ne(0).any())):
                bypassed.append(key)
        if replaced:
            self.logger.warning(
                f'SGS self-check: the weight Parameter of {replaced} was replaced after SGS '
                'attached (e.g. load_state_dict(assign=True)); their gradients are NOT scaled. '
                'Attach SGS after the weights are final.')
        if bypassed:
            self.logger.warning(
                f'SGS self-check: {bypassed} received gradients that did not pass SGS\'s '
                'gradient hook (hook removed, or gradients written to .grad directly); their '
                'gradients are NOT scaled.')
        trained_idle = [n for n in self._idle_since_refresh
                        if self.applier.fired[self.key_of[n]] > 0]
        if trained_idle:
            self.logger.warning(
                f'SGS self-check: {trained_idle} train, but their forward never ran during the '
                'last refresh, so their G stays at its previous value (1 before the first '
                'estimate): the refresh forward does not reach them (a training-only branch: '
                'give refresh() a fallback_forward that runs it) or the model bypasses these '
                'modules\' forward and uses their weight directly.')

    # ------------------------------------------------------------------ state
    def scales(self) -> 'OrderedDict[str, torch.Tensor]':
        """Current G per weight (float64, CPU), keyed by the first conv's name
        (all from one refresh, also while another thread refreshes)."""
        with self._state_lock:
            return OrderedDict((n, s.detach().to('cpu', torch.float64, copy=True))
                               for n, s in self.applier.scales.items())

    def state_dict(self) -> dict:
        """G per layer, the refresh count and the arguments that define G.

        Safe to call from another thread (an asynchronous checkpoint writer)
        while a refresh runs: the snapshot is one refresh's G with its count.
        """
        with self._state_lock:
            return dict(version=STATE_VERSION, method=self.options.method,
                        config=self.options.g_config(), num_refreshes=self.num_refreshes,
                        scales=dict(self.scales()))

    def config_mismatch(self, state: dict) -> List[str]:
        """The G-defining arguments on which ``state`` differs from this scaler."""
        saved = state.get('config')
        if saved is None:  # version 1 saved the method only
            saved = dict(method=state.get('method'))
        mine = self.options.g_config()
        return [f'{name}={saved[name]!r} (now {mine[name]!r})' for name in saved
                if name in mine and saved[name] != mine[name]]

    def load_state_dict(self, state: dict) -> int:
        """Restore :meth:`state_dict` when it was saved with the same G-defining
        arguments; otherwise warn and keep the current (fresh) G.

        Saved layer names are matched to this model's by name; names that
        differ only by wrapper prefixes (``module.`` of DDP, ``_orig_mod.`` of
        ``torch.compile``) or by one common prefix (``backbone.``: a state
        saved on a backbone-only model, or the other way round) are mapped
        when the mapping is unambiguous (see :func:`map_layer_names`). The
        log says exactly how many layers got their G; the refresh count is
        only taken over when at least one did.

        Returns:
            int: the number of layers whose G was restored (0, falsy, when
            none was: the state does not fit this model, nothing changed).

        Raises:
            ValueError: a saved G has another shape than its layer's kernel.
            InvalidSGSState: a saved G is non-finite, negative or all zero
                (a damaged checkpoint; no method gives one): the error names
                the layers and the values, nothing is restored. Single zero
                taps are accepted (``nmi``: a displacement without
                dependence; ``reparam``: taps outside every branch).
        """
        mismatch = self.config_mismatch(state)
        if mismatch:
            self.logger.warning(f'SGS: the saved G was computed with {", ".join(mismatch)}; '
                                'it is not restored, SGS starts afresh')
            return 0
        scales = {n: torch.as_tensor(g) for n, g in (state.get('scales') or {}).items()}
        check_saved_scales(scales)
        kernels = {n: tuple(self.layers[n].kernel_size) for n in self.groups}
        for name, g in scales.items():
            if name in kernels and tuple(g.shape) != kernels[name]:
                raise ValueError(f'SGS state for {name!r} has shape {tuple(g.shape)}, the '
                                 f'layer a {kernels[name]} kernel')
        mapping, ambiguous = map_layer_names(
            list(scales), kernels, {n: tuple(g.shape) for n, g in scales.items()})
        restored = len(mapping)
        missing = [n for n in self.groups if n not in mapping.values()]
        unknown = [n for n in scales if n not in mapping]
        saved_refreshes = int(state.get('num_refreshes', 0))
        what = f'({self.options.method}, k={self.options.k})'
        if restored:
            with self._state_lock:
                for saved, mine in mapping.items():
                    self.applier.set(mine, scales[saved])
                self.num_refreshes = saved_refreshes
        else:
            self.logger.warning(
                f'SGS: the saved state holds G for none of this model\'s {len(self.groups)} '
                f'layers (saved names look like {unknown[:3]}, the model\'s like '
                f'{list(self.groups)[:3]}{"; ambiguous: " + str(ambiguous) if ambiguous else ""}'
                '); nothing restored, SGS starts afresh')
            return 0
        renamed = {s: m for s, m in mapping.items() if s != m}
        where = f'refresh #{self.num_refreshes}' if self.num_refreshes else 'constant G'
        count = (f'{restored} layers' if not missing else
                 f'{restored} of {len(self.groups)} layers')
        self.logger.info(f'SGS: restored G of {count} from {where} {what}'
                         + (f'; saved under other names, mapped: {_few(renamed)}'
                            if renamed else ''))
        if missing or unknown:
            self.logger.warning(
                f'SGS state: no saved G for {missing} (they keep G = '
                f'{"1" if self.options.dynamic else "their constant G"} until the next '
                f'refresh); saved G for layers not in the model ignored: {unknown}'
                + (f' (ambiguous: {ambiguous})' if ambiguous else ''))
        self._arm_check()
        return restored

    def summary(self, scales: Optional[Dict[str, torch.Tensor]] = None) -> str:
        """Every layer's G in one line: centre and [min, max] (of ``scales``,
        by default the current :meth:`scales`)."""
        return ', '.join(
            f'{n}: c={g[g.shape[0] // 2, g.shape[1] // 2]:.2f} [{g.min():.2f},{g.max():.2f}]'
            for n, g in (scales or self.scales()).items())
