"""SpatialGradScalingHook: Spatial Gradient Scaling (ICLR 2023) as an mmengine hook.

Schedule + Runner glue + reporting over :class:`sgs_mm.sgs.SpatialGradScaler`.
"""
import os.path as osp
from dataclasses import fields
from typing import Dict, Optional

import torch
from mmengine.dist import get_world_size, is_main_process
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from ..analysis.history import HISTORY_FILE, GHistoryWriter
from ..sgs import SGSOptions, SpatialGradScaler
from ..sgs.options import positive_int
from .refresh_batches import draw_batches, forked_rng
from .refresh_schedule import RefreshSchedule, resolve_unit
from .runner_glue import loop_counts_epochs, model_forward, optimizers_of, unwrapped_model

FORWARD_MODES = ('auto', 'tensor', 'loss')
STATE_KEY = 'sgs'
OWNER = 'SpatialGradScalingHook'


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
        method, k, diag_removal, respect_dilation, mode, include, exclude,
        alpha, beta, branches, normalize, max_chunk_elems: as in
            :class:`~sgs_mm.sgs.SpatialGradScaler` (``method='nmi'``, ``k=5``,
            ``mode='grad'``, ``max_chunk_elems=None``: from the device).
        interval (int): refresh every ``interval`` units after the warmup.
            Defaults to 5.
        warmup (int): first refresh at ``warmup`` units; 0 refreshes before
            the first training step. Defaults to 1.
        num_batches (int): training batches per refresh (per rank). Defaults to 2.
        unit (str, optional): ``'epoch'`` or ``'iter'``. ``None`` follows the
            train loop (epochs for ``EpochBasedTrainLoop``, iterations for
            ``IterBasedTrainLoop``). Epochs on an iteration-based loop (mmseg)
            are converted with the run's real iterations per epoch, so a
            different GPU count or batch size keeps their meaning.
        by_epoch (bool, optional): mmengine-style alias: True is
            ``unit='epoch'``, False ``unit='iter'``.
        history_file (str, optional): append-only G history (JSON Lines) in
            the work_dir. ``None`` disables it.
        log_heatmaps (bool): send a G heatmap grid to the visualizer backends.
        forward_mode (str): the refresh forward, after the data_preprocessor in
            training mode (RNG restored): ``'tensor'``, ``'loss'`` (losses
            discarded) or ``'auto'`` (default: ``'tensor'``, then ``'loss'``
            for the convs it left idle, e.g. mmseg's auxiliary heads).
        enabled (bool): False makes the hook a no-op (handy from
            ``--cfg-options custom_hooks.0.enabled=False``).
    """
    priority = 'NORMAL'

    def __init__(self, interval: int = 5, warmup: int = 1, num_batches: int = 2,
                 unit: Optional[str] = None, by_epoch: Optional[bool] = None,
                 forward_mode: str = 'auto', history_file: Optional[str] = HISTORY_FILE,
                 log_heatmaps: bool = True, enabled: bool = True, **sgs_args):
        try:
            self.options = SGSOptions(**sgs_args, owner=OWNER)
        except TypeError:
            known = [f.name for f in fields(SGSOptions) if f.name != 'owner']
            raise ValueError(f'{OWNER}: unknown argument(s) {sorted(set(sgs_args) - set(known))}'
                             f'; SGS takes {known}') from None
        if forward_mode not in FORWARD_MODES:
            raise ValueError(f'{OWNER}: forward_mode must be one of {FORWARD_MODES}, '
                             f'got {forward_mode!r}')
        self.interval = positive_int(OWNER, 'interval', interval)
        self.warmup = positive_int(OWNER, 'warmup', warmup, minimum=0)
        self.num_batches = positive_int(OWNER, 'num_batches', num_batches)
        self.unit = resolve_unit(OWNER, unit, by_epoch)
        self.history_file = history_file
        self.log_heatmaps = bool(log_heatmaps)
        self.forward_mode = forward_mode
        self.enabled = bool(enabled)

        self.scaler: Optional[SpatialGradScaler] = None
        self.schedule: Optional[RefreshSchedule] = None
        self.history: Optional[GHistoryWriter] = None
        self._pending_state: Optional[dict] = None

    def _view(attr, default=None):  # noqa: N805  (read-only view of the engine)
        return property(lambda self: getattr(self.scaler, attr) if self.scaler else default)

    layers, applier = _view('layers', {}), _view('applier')
    num_refreshes = _view('num_refreshes', 0)
    _reported_idle = _view('reported_idle', set())
    method = property(lambda self: self.options.method)
    last_refresh = property(lambda self: self.schedule.last if self.schedule else None)
    by_epoch = property(lambda self: None if self.unit is None else self.unit == 'epoch')

    def scales(self):
        """Current G per layer (float64, CPU)."""
        return self.scaler.scales()

    def before_train(self, runner) -> None:
        if not self.enabled:
            runner.logger.info(f'{OWNER} is disabled (enabled=False).')
            return
        self.scaler = SpatialGradScaler(unwrapped_model(runner), options=self.options,
                                        logger=runner.logger)
        self.schedule = RefreshSchedule.for_run(self.interval, self.warmup, self.unit,
                                                loop_counts_epochs(runner),
                                                runner.train_dataloader, get_world_size())
        self.unit = self.schedule.unit
        self._restore_pending()
        self.scaler.attach(optimizers_of(runner))
        if self.history_file and is_main_process():
            self.history = GHistoryWriter(
                osp.join(runner.work_dir, self.history_file),
                dict(method=self.method, k=self.options.k, mode=self.options.mode,
                     unit=self.unit))
            self.history.start(resume_iter=runner.iter if runner._resume else None)
            for note in self.history.notes:
                runner.logger.warning(f'SGS history: {note}')
        schedule = (self.schedule.describe(self.num_batches) if self.options.dynamic
                    else 'constant G')
        runner.logger.info(f'SGS ({self.method}, mode={self.options.mode}, k={self.options.k}):'
                           f' {len(self.scaler.layers)} conv layers, {schedule}.')

    def after_train(self, runner) -> None:
        if self.scaler is not None:
            self.scaler.detach()

    def before_train_epoch(self, runner) -> None:
        if self.enabled and (step := self.schedule.at_epoch_start(runner.epoch)) is not None:
            self.refresh(runner, step)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self.enabled and (step := self.schedule.at_iter(runner.iter)) is not None:
            self.refresh(runner, step)

    def refresh(self, runner, step: int, batches: Optional[list] = None
                ) -> Dict[str, torch.Tensor]:
        """Recompute G for every layer from ``num_batches`` training batches.

        ``batches`` (collated, before the data_preprocessor) replaces the
        random draw from the train dataset when given.

        Returns:
            The new G per layer (layers whose G was kept are left out).
        """
        seed = (runner.seed or 0) + 1000003 * (self.num_refreshes + 1) + step
        with forked_rng():
            if batches is None:
                batches = draw_batches(runner.train_dataloader, self.num_batches, seed)
            first = 'loss' if self.forward_mode == 'loss' else 'tensor'
            fallback = model_forward('loss') if self.forward_mode == 'auto' else None
            report = self.scaler.refresh(batches, model_forward(first), fallback)
        self.schedule.last = step
        self._report(runner, step, report.seconds)
        return report.updated

    def _report(self, runner, step, seconds):
        scales = self.scales()
        runner.logger.info(f'SGS refresh #{self.num_refreshes} at {self.unit} {step} '
                           f'({seconds:.2f}s, {len(scales)} layers; centre [min,max]): '
                           f'{self.scaler.summary(scales)}')
        if not is_main_process():
            return
        if self.history is not None:
            self.history.append(dict(refresh=self.num_refreshes, epoch=runner.epoch,
                                     iter=runner.iter,
                                     layers={n: g.tolist() for n, g in scales.items()}))
        if self.log_heatmaps:
            from ..visualization import render_scaling_grid
            image = render_scaling_grid({n: g.numpy() for n, g in scales.items()})
            runner.visualizer.add_image('sgs_G', image, step=runner.iter)

    def state_dict(self) -> dict:
        """The engine's state (G, refresh count, G-defining arguments) plus the
        schedule's last refresh step (stored in checkpoints)."""
        return dict(self.scaler.state_dict(), last_refresh=self.last_refresh, unit=self.unit)

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (before or after ``before_train``)."""
        self._pending_state = state
        if self.scaler is not None:
            self._restore_pending()

    def _restore_pending(self) -> None:
        state, self._pending_state = self._pending_state, None
        if state is not None and self.scaler.load_state_dict(state) and \
                state.get('unit', self.unit) == self.unit:
            self.schedule.last = state.get('last_refresh')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self.enabled and self.scaler is not None:
            checkpoint[STATE_KEY] = self.state_dict()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # Only a resumed run carries G on; a checkpoint loaded as weights
        # (``load_from`` without ``resume``) starts SGS afresh.
        if self.enabled and getattr(runner, '_resume', False) and STATE_KEY in checkpoint:
            self.load_state_dict(checkpoint[STATE_KEY])
