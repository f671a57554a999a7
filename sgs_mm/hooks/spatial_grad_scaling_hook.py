"""SpatialGradScalingHook: Spatial Gradient Scaling (ICLR 2023) as an mmengine hook."""
import json
import os.path as osp
import time
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop

from ..sgs import (AutocorrStats, NMIStats, PairGeometry, ScalingApplier, collect_dependence,
                   find_sgs_layers, fixed_scaling, reparam_scaling, scaling_from_dependence)
from ..sgs.dependence_base import DEFAULT_MAX_ELEMS
from ..sgs.layers import named_weights, unwrap_model
from .refresh_batches import draw_batches, forked_rng

METHODS = ('nmi', 'autocorr', 'fixed', 'reparam')
DYNAMIC_METHODS = ('nmi', 'autocorr')
MODES = ('grad', 'update')
FORWARD_MODES = ('auto', 'tensor', 'loss')
STATE_KEY = 'sgs'


def _positive_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f'SpatialGradScalingHook: {name} must be an integer >= {minimum}, '
                         f'got {value!r}')
    return value


def _is_positive_number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and value > 0


def _patterns(name, value) -> List[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError(f'SpatialGradScalingHook: {name} must be a glob string or a list of '
                     f'them, got {value!r}')


@HOOKS.register_module()
class SpatialGradScalingHook(Hook):
    """Scale every KxK conv's weight gradient by a KxK matrix G (SGS).

    G is recomputed on a schedule from the spatial dependence of each conv's
    input (normalized mutual information between every pixel and its
    displaced neighbours, ``method='nmi'``), see ``SGS_SPEC.md``. Registered
    in mmengine's root ``HOOKS`` registry, so it builds under the mmpretrain,
    mmseg and mmpose scopes::

        custom_imports = dict(imports=['sgs_mm'], allow_failed_imports=False)
        custom_hooks = [dict(type='SpatialGradScalingHook', k=5, interval=5,
                             warmup=1, num_batches=2)]

    Args:
        method (str): ``'nmi'`` (default), ``'autocorr'`` (Pearson, clamped at
            0), ``'fixed'`` (the paper's 3x3 alpha/beta matrix, constant) or
            ``'reparam'`` (Lemma 1: G = sum of the masks of ``branches``,
            constant). Static methods set G once before training.
        k (float): the k-transform ``k·S/((k-1)·S+1)``. Defaults to 5.
        interval (int): refresh every ``interval`` epochs (or iterations, see
            ``by_epoch``) after the warmup. Defaults to 5.
        warmup (int): first refresh at epoch/iteration ``warmup``; 0 refreshes
            before the first training step. Defaults to 1.
        num_batches (int): training batches per refresh (per rank). Defaults to 2.
        by_epoch (bool, optional): schedule in epochs or iterations. ``None``
            follows the train loop (epochs for ``EpochBasedTrainLoop``,
            iterations for ``IterBasedTrainLoop`` as in mmseg).
        diag_removal (bool): the paper's ImageNet variant ("remove near
            values"), ``nmi`` only. Defaults to False.
        respect_dilation (bool): pair pixels ``dilation`` apart, as the kernel
            taps see them (False: 1 apart, like the reference). Defaults to True.
        mode (str): ``'grad'`` scales gradients (default), ``'update'`` scales
            the optimizer's update (the paper's Adagrad*).
        include / exclude (str | list[str], optional): globs on module names
            (e.g. ``'backbone.layer4.*'``); each must match some conv.
        alpha, beta (float): the ``fixed`` method's ratios.
        branches (list[tuple[int, int]]): the ``reparam`` branch kernel shapes,
            e.g. ACB ``[(3, 3), (1, 3), (3, 1)]``.
        normalize (bool): ``reparam``: rescale G to mean 1. False keeps the
            exact Lemma-1 values (training identical to the branched block).
        max_chunk_elems (int): pixel pairs processed at once: bounds the
            refresh's temporaries to about 16 bytes per element (2**20: ~16 MiB).
        history_file (str, optional): G history JSON in the work_dir,
            rewritten after each refresh. ``None`` disables it.
        log_heatmaps (bool): send a G heatmap grid to the visualizer backends.
        forward_mode (str): how a refresh runs the model. ``'tensor'``: one
            ``mode='tensor'`` forward per batch (SGS_SPEC §5). ``'loss'``:
            ``mode='loss'`` (every training branch runs; losses discarded).
            ``'auto'`` (default): ``'tensor'``, then ``'loss'`` only for the
            convs the tensor forward left idle, such as mmseg's auxiliary
            heads, which run in training only yet receive gradients.
        enabled (bool): False turns the hook into a no-op (handy from
            ``--cfg-options custom_hooks.0.enabled=False``).
    """
    priority = 'NORMAL'

    def __init__(self,
                 method: str = 'nmi',
                 k: float = 5.0,
                 interval: int = 5,
                 warmup: int = 1,
                 num_batches: int = 2,
                 by_epoch: Optional[bool] = None,
                 diag_removal: bool = False,
                 respect_dilation: bool = True,
                 mode: str = 'grad',
                 include: Union[str, Sequence[str], None] = None,
                 exclude: Union[str, Sequence[str], None] = None,
                 alpha: Optional[float] = None,
                 beta: Optional[float] = None,
                 branches: Optional[Sequence[Tuple[int, int]]] = None,
                 normalize: bool = True,
                 max_chunk_elems: int = DEFAULT_MAX_ELEMS,
                 history_file: Optional[str] = 'sgs_g_history.json',
                 log_heatmaps: bool = True,
                 forward_mode: str = 'auto',
                 enabled: bool = True):
        if method not in METHODS:
            raise ValueError(f'SpatialGradScalingHook: method must be one of {METHODS}, '
                             f'got {method!r}')
        if mode not in MODES:
            raise ValueError(f'SpatialGradScalingHook: mode must be one of {MODES}, '
                             f'got {mode!r}')
        if forward_mode not in FORWARD_MODES:
            raise ValueError(f'SpatialGradScalingHook: forward_mode must be one of '
                             f'{FORWARD_MODES}, got {forward_mode!r}')
        if not _is_positive_number(k):
            raise ValueError(f'SpatialGradScalingHook: k must be a number > 0, got {k!r}')
        if by_epoch not in (None, True, False):
            raise ValueError(f'SpatialGradScalingHook: by_epoch must be None, True or False, '
                             f'got {by_epoch!r}')
        if diag_removal and method != 'nmi':
            raise ValueError("SpatialGradScalingHook: diag_removal applies to method='nmi' "
                             f'only, got method={method!r}')
        self.method = method
        self.k = float(k)
        self.interval = _positive_int('interval', interval)
        self.warmup = _positive_int('warmup', warmup, minimum=0)
        self.num_batches = _positive_int('num_batches', num_batches)
        self.max_chunk_elems = _positive_int('max_chunk_elems', max_chunk_elems)
        self.by_epoch = by_epoch
        self.diag_removal = bool(diag_removal)
        self.respect_dilation = bool(respect_dilation)
        self.mode = mode
        self.include = _patterns('include', include)
        self.exclude = _patterns('exclude', exclude)
        self.static_scaling = None
        if method == 'fixed':
            for name, v in (('alpha', alpha), ('beta', beta)):
                if not _is_positive_number(v):
                    raise ValueError(f"SpatialGradScalingHook: method='fixed' needs {name} > 0, "
                                     f'got {v!r}')
            self.static_scaling = fixed_scaling(alpha, beta)
        if method == 'reparam':
            if not branches or not all(
                    isinstance(b, (list, tuple)) and len(b) == 2 and
                    all(isinstance(x, int) and x > 0 for x in b) for b in branches):
                raise ValueError("SpatialGradScalingHook: method='reparam' needs branches, a "
                                 'list of (kh, kw) kernel shapes, e.g. [(3, 3), (1, 3), (3, 1)]; '
                                 f'got {branches!r}')
        self.branches = [tuple(b) for b in branches] if branches else None
        self.normalize = bool(normalize)
        self.history_file = history_file
        self.log_heatmaps = bool(log_heatmaps)
        self.forward_mode = forward_mode
        self.enabled = bool(enabled)

        self.layers: 'OrderedDict[str, torch.nn.Conv2d]' = OrderedDict()
        self.applier: Optional[ScalingApplier] = None
        self.num_refreshes = 0
        self.last_refresh: Optional[int] = None
        self._pending_state: Optional[dict] = None
        self._reported_idle = set()

    # ------------------------------------------------------------------ setup
    def before_train(self, runner) -> None:
        if not self.enabled:
            runner.logger.info('SpatialGradScalingHook is disabled (enabled=False).')
            return
        model = unwrap_model(runner.model)
        self.layers, even = find_sgs_layers(model, self.include, self.exclude)
        if even:
            runner.logger.warning(f'SGS skips {len(even)} conv(s) with an even kernel size '
                                  f'(no centre tap): {even}')
        if not self.layers:
            raise ValueError('SpatialGradScalingHook: the model has no eligible conv (a '
                             'trainable nn.Conv2d with an odd kernel larger than 1x1 on both '
                             'sides, matching include/exclude)')
        if self.by_epoch is None:
            loop = runner.train_loop
            if isinstance(loop, EpochBasedTrainLoop):
                self.by_epoch = True
            elif isinstance(loop, IterBasedTrainLoop):
                self.by_epoch = False
            else:
                self.by_epoch = hasattr(loop, 'max_epochs')
        self.applier = ScalingApplier(named_weights(self.layers), self.mode)
        self._set_static_scalings(runner)
        if self._pending_state is not None:
            self._restore(runner, self._pending_state)
            self._pending_state = None
        self.applier.attach(self._optimizers(runner))
        unit = 'epoch' if self.by_epoch else 'iter'
        schedule = (f'refresh at {unit} {self.warmup} then every {self.interval} {unit}s '
                    f'with {self.num_batches} batch(es)' if self.method in DYNAMIC_METHODS
                    else 'constant G')
        runner.logger.info(f'SGS ({self.method}, mode={self.mode}, k={self.k}): '
                           f'{len(self.layers)} conv layers, {schedule}.')

    @staticmethod
    def _optimizers(runner):
        from mmengine.optim import OptimWrapperDict
        wrapper = runner.optim_wrapper
        if isinstance(wrapper, OptimWrapperDict):
            return [w.optimizer for w in wrapper.values()]
        return [wrapper.optimizer]

    def _set_static_scalings(self, runner):
        if self.method == 'fixed':
            skipped = []
            for name, conv in self.layers.items():
                if tuple(conv.kernel_size) == (3, 3):
                    self.applier.set(name, self.static_scaling)
                else:
                    skipped.append(name)
            if skipped:
                runner.logger.warning(f"SGS method='fixed' is a 3x3 matrix; G stays 1 for the "
                                      f'non-3x3 convs {skipped}')
        elif self.method == 'reparam':
            for name, conv in self.layers.items():
                try:
                    g = reparam_scaling(self.branches, tuple(conv.kernel_size), self.normalize)
                except ValueError as e:
                    raise ValueError(f'SpatialGradScalingHook: layer {name!r}: {e}') from None
                self.applier.set(name, g)

    def after_train(self, runner) -> None:
        if self.applier is not None:
            self.applier.detach()

    # --------------------------------------------------------------- schedule
    def _due(self, step: int) -> bool:
        if self.method not in DYNAMIC_METHODS or self.last_refresh == step:
            return False
        return step == self.warmup or (step > self.warmup and step % self.interval == 0)

    def before_train_epoch(self, runner) -> None:
        if self.enabled and self.by_epoch and self._due(runner.epoch):
            self.refresh(runner, runner.epoch)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self.enabled and self.by_epoch is False and self._due(runner.iter):
            self.refresh(runner, runner.iter)

    # ---------------------------------------------------------------- refresh
    def _make_stats(self, name, conv):
        geometry = PairGeometry.from_conv(conv, self.respect_dilation)
        device = conv.weight.device
        if self.method == 'nmi':
            return NMIStats(geometry, conv.in_channels, device, self.max_chunk_elems,
                            diag_removal=self.diag_removal)
        return AutocorrStats(geometry, conv.in_channels, device, self.max_chunk_elems)

    def refresh(self, runner, step: int, batches: Optional[list] = None
                ) -> Dict[str, torch.Tensor]:
        """Recompute G for every layer from ``num_batches`` training batches.

        ``batches`` (collated, before the data_preprocessor) replaces the
        random draw from the train dataset when given.

        The model runs in eval mode under no_grad (BatchNorm statistics
        untouched) through its data_preprocessor and ``forward_mode``; each
        module's previous train/eval flag is restored afterwards.

        Returns:
            The new G per layer (layers whose G was kept are left out).
        """
        start = time.perf_counter()
        model = unwrap_model(runner.model)
        seed = (runner.seed or 0) + 1000003 * (self.num_refreshes + 1) + step
        flags = [(m, m.training) for m in model.modules()]
        try:
            with forked_rng(), torch.no_grad():
                if batches is None:
                    batches = draw_batches(runner.train_dataloader, self.num_batches, seed)
                model.eval()

                def run_forward(mode):
                    for batch in batches:
                        data = model.data_preprocessor(batch, False)
                        if isinstance(data, dict):
                            model(**data, mode=mode)
                        else:
                            model(*data, mode=mode)

                first = 'loss' if self.forward_mode == 'loss' else 'tensor'
                stats = collect_dependence(self.layers, self._make_stats,
                                           lambda: run_forward(first))
                idle = OrderedDict((n, self.layers[n]) for n, acc in stats.items()
                                   if int(acc.calls) == 0)
                if idle and self.forward_mode == 'auto':
                    stats.update(collect_dependence(idle, self._make_stats,
                                                    lambda: run_forward('loss')))
        finally:
            for m, training in flags:
                m.training = training

        updated, kept_nan, idle, nonfinite = OrderedDict(), [], [], []
        for name, acc in stats.items():
            if int(acc.calls) == 0:
                idle.append(name)
                continue
            if int(acc.nonfinite.sum()) > 0:
                nonfinite.append(name)
            conv = self.layers[name]
            g = scaling_from_dependence(acc.dependence(), acc.geometry.displacements,
                                        tuple(conv.kernel_size), self.k)
            if g is None:
                kept_nan.append(name)
                continue
            self.applier.set(name, g)
            updated[name] = g
        self.num_refreshes += 1
        self.last_refresh = step
        self._report(runner, step, time.perf_counter() - start, idle, kept_nan, nonfinite)
        return updated

    # ---------------------------------------------------------------- logging
    def scales(self) -> 'OrderedDict[str, torch.Tensor]':
        """Current G per layer (float64, CPU)."""
        return OrderedDict((n, s.detach().to("cpu", torch.float64, copy=True))
                           for n, s in self.applier.scales.items())

    def _report(self, runner, step, seconds, idle, kept_nan, nonfinite):
        unit = 'epoch' if self.by_epoch else 'iter'
        scales = self.scales()
        summary = ', '.join(
            f'{n}: c={g[g.shape[0] // 2, g.shape[1] // 2]:.2f} [{g.min():.2f},{g.max():.2f}]'
            for n, g in scales.items())
        runner.logger.info(f'SGS refresh #{self.num_refreshes} at {unit} {step} '
                           f'({seconds:.2f}s, {len(scales)} layers; centre [min,max]): {summary}')
        new_idle = [n for n in idle if n not in self._reported_idle]
        if new_idle:
            self._reported_idle.update(new_idle)
            runner.logger.warning(f'SGS: these convs did not run during the refresh and keep '
                                  f'their previous G: {new_idle}')
        if kept_nan:
            runner.logger.warning(f'SGS: G would contain NaN (constant or non-finite inputs); '
                                  f'previous G kept for {kept_nan}')
        if nonfinite:
            runner.logger.warning(f'SGS: non-finite values in the inputs of {nonfinite}; '
                                  f'those channels were ignored')
        if not is_main_process():
            return
        if self.history_file:
            self._append_history(runner, scales)
        if self.log_heatmaps:
            from ..visualization import render_scaling_grid
            image = render_scaling_grid({n: g.numpy() for n, g in scales.items()})
            runner.visualizer.add_image('sgs_G', image, step=runner.iter)

    def _history_path(self, runner):
        return osp.join(runner.work_dir, self.history_file)

    def _append_history(self, runner, scales):
        path = self._history_path(runner)
        history = self._read_history(path)
        history['records'] = [r for r in history['records'] if r['iter'] < runner.iter]
        history['records'].append(dict(
            refresh=self.num_refreshes, epoch=runner.epoch, iter=runner.iter,
            layers={n: g.tolist() for n, g in scales.items()}))
        with open(path, 'w') as f:
            json.dump(history, f)

    def _read_history(self, path):
        if osp.exists(path):
            with open(path) as f:
                return json.load(f)
        return dict(format='sgs_mm.g_history', version=1, method=self.method, k=self.k,
                    mode=self.mode, records=[])

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """G per layer plus the refresh counters (stored in checkpoints)."""
        return dict(version=1, method=self.method, num_refreshes=self.num_refreshes,
                    last_refresh=self.last_refresh, scales=dict(self.scales()))

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (before or after ``before_train``)."""
        if self.applier is None:
            self._pending_state = state
        else:
            self._restore(None, state)

    def _restore(self, runner, state):
        scales = state.get('scales', {})
        missing = [n for n in self.layers if n not in scales]
        unknown = [n for n in scales if n not in self.layers]
        for name, g in scales.items():
            if name in self.layers:
                g = torch.as_tensor(g)
                if tuple(g.shape) != tuple(self.layers[name].kernel_size):
                    raise ValueError(f'SGS state for {name!r} has shape {tuple(g.shape)}, the '
                                     f'layer a {tuple(self.layers[name].kernel_size)} kernel')
                self.applier.set(name, g)
        self.num_refreshes = int(state.get('num_refreshes', 0))
        self.last_refresh = state.get('last_refresh')
        if (missing or unknown) and runner is not None:
            runner.logger.warning(f'SGS state: no saved G for {missing} (kept at 1); saved G '
                                  f'for layers not in the model ignored: {unknown}')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self.enabled and self.applier is not None:
            checkpoint[STATE_KEY] = self.state_dict()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # Only a resumed run carries G on; a checkpoint loaded as weights
        # (``load_from`` without ``resume``) starts SGS afresh.
        if self.enabled and getattr(runner, '_resume', False) and STATE_KEY in checkpoint:
            self.load_state_dict(checkpoint[STATE_KEY])
