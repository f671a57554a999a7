"""SpatialGradScalingHook: Spatial Gradient Scaling (ICLR 2023) as an mmengine hook.

Schedule + Runner glue + reporting over :class:`sgs_mm.sgs.SpatialGradScaler`.
"""
import os.path as osp
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
from mmengine.dist import get_world_size, is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop

from ..analysis.history import HISTORY_FILE, GHistoryWriter
from ..sgs import SGSOptions, SpatialGradScaler
from ..sgs.options import positive_int
from .refresh_batches import draw_batches, forked_rng
from .refresh_schedule import RefreshSchedule, iters_per_epoch, resolve_unit

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
        forward_mode (str): how a refresh runs the model, after the
            data_preprocessor in training mode (the padding and batch
            augments that training sees; RNG restored afterwards).
            ``'tensor'``: ``mode='tensor'``; ``'loss'``: ``mode='loss'``
            (every training branch runs; losses discarded); ``'auto'``
            (default): ``'tensor'``, then ``'loss'`` only for the convs the
            tensor forward left idle (e.g. mmseg's auxiliary heads).
        enabled (bool): False makes the hook a no-op (handy from
            ``--cfg-options custom_hooks.0.enabled=False``).
    """
    priority = 'NORMAL'

    def __init__(self,
                 method: str = 'nmi',
                 k: float = 5.0,
                 interval: int = 5,
                 warmup: int = 1,
                 num_batches: int = 2,
                 unit: Optional[str] = None,
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
                 max_chunk_elems: Optional[int] = None,
                 history_file: Optional[str] = HISTORY_FILE,
                 log_heatmaps: bool = True,
                 forward_mode: str = 'auto',
                 enabled: bool = True):
        self.options = SGSOptions(
            method=method, k=k, diag_removal=diag_removal, respect_dilation=respect_dilation,
            mode=mode, include=include, exclude=exclude, alpha=alpha, beta=beta,
            branches=branches, normalize=normalize, max_chunk_elems=max_chunk_elems,
            owner=OWNER)
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

    # ----------------------------------------------------------- engine views
    @property
    def method(self) -> str:
        return self.options.method

    @property
    def layers(self):
        return self.scaler.layers if self.scaler else {}

    @property
    def applier(self):
        return self.scaler.applier if self.scaler else None

    @property
    def num_refreshes(self) -> int:
        return self.scaler.num_refreshes if self.scaler else 0

    @property
    def last_refresh(self) -> Optional[int]:
        return self.schedule.last if self.schedule else None

    @property
    def by_epoch(self) -> Optional[bool]:
        return None if self.unit is None else self.unit == 'epoch'

    @property
    def _reported_idle(self) -> set:
        return self.scaler.reported_idle if self.scaler else set()

    def scales(self):
        """Current G per layer (float64, CPU)."""
        return self.scaler.scales()

    # ------------------------------------------------------------------ setup
    def before_train(self, runner) -> None:
        if not self.enabled:
            runner.logger.info(f'{OWNER} is disabled (enabled=False).')
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        self.scaler = SpatialGradScaler(model, options=self.options, logger=runner.logger)
        self.schedule = self._make_schedule(runner)
        self._restore_pending(runner)
        self.scaler.attach(self._optimizers(runner))
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

    def _make_schedule(self, runner) -> RefreshSchedule:
        loop = runner.train_loop
        if isinstance(loop, EpochBasedTrainLoop):
            loop_by_epoch = True
        elif isinstance(loop, IterBasedTrainLoop):
            loop_by_epoch = False
        else:
            loop_by_epoch = hasattr(loop, 'max_epochs')
        if self.unit is None:
            self.unit = 'epoch' if loop_by_epoch else 'iter'
        ipe = 1
        if self.unit == 'epoch' and not loop_by_epoch:
            ipe = iters_per_epoch(runner.train_dataloader, get_world_size())
        return RefreshSchedule(self.interval, self.warmup, self.unit, loop_by_epoch, ipe)

    @staticmethod
    def _optimizers(runner):
        from mmengine.optim import OptimWrapperDict
        wrapper = runner.optim_wrapper
        if isinstance(wrapper, OptimWrapperDict):
            return [w.optimizer for w in wrapper.values()]
        return [wrapper.optimizer]

    def after_train(self, runner) -> None:
        if self.scaler is not None:
            self.scaler.detach()

    # --------------------------------------------------------------- schedule
    def before_train_epoch(self, runner) -> None:
        step = self.schedule.at_epoch_start(runner.epoch) if self.enabled else None
        if step is not None:
            self.refresh(runner, step)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        step = self.schedule.at_iter(runner.iter) if self.enabled else None
        if step is not None:
            self.refresh(runner, step)

    # ---------------------------------------------------------------- refresh
    def refresh(self, runner, step: int, batches: Optional[list] = None
                ) -> Dict[str, torch.Tensor]:
        """Recompute G for every layer from ``num_batches`` training batches.

        ``batches`` (collated, before the data_preprocessor) replaces the
        random draw from the train dataset when given.

        Returns:
            The new G per layer (layers whose G was kept are left out).
        """
        seed = (runner.seed or 0) + 1000003 * (self.num_refreshes + 1) + step

        def forward_in(mode):
            def forward(model, batch):
                data = model.data_preprocessor(batch, True)
                if isinstance(data, dict):
                    return model(**data, mode=mode)
                return model(*data, mode=mode)
            return forward

        with forked_rng():
            if batches is None:
                batches = draw_batches(runner.train_dataloader, self.num_batches, seed)
            first = 'loss' if self.forward_mode == 'loss' else 'tensor'
            fallback = forward_in('loss') if self.forward_mode == 'auto' else None
            report = self.scaler.refresh(batches, forward_in(first), fallback)
        self.schedule.last = step
        self._report(runner, step, report.seconds)
        return report.updated

    # ---------------------------------------------------------------- logging
    def _report(self, runner, step, seconds):
        scales = self.scales()
        summary = ', '.join(
            f'{n}: c={g[g.shape[0] // 2, g.shape[1] // 2]:.2f} [{g.min():.2f},{g.max():.2f}]'
            for n, g in scales.items())
        runner.logger.info(f'SGS refresh #{self.num_refreshes} at {self.unit} {step} '
                           f'({seconds:.2f}s, {len(scales)} layers; centre [min,max]): {summary}')
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

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """The engine's state (G, refresh count, G-defining arguments) plus the
        schedule's last refresh step (stored in checkpoints)."""
        return dict(self.scaler.state_dict(), last_refresh=self.last_refresh, unit=self.unit)

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (before or after ``before_train``)."""
        self._pending_state = state
        if self.scaler is not None:
            self._restore_pending(None)

    def _restore_pending(self, runner) -> bool:
        state, self._pending_state = self._pending_state, None
        if state is None or not self.scaler.load_state_dict(state):
            return False
        if self.schedule is not None and state.get('unit', self.unit) == self.unit:
            self.schedule.last = state.get('last_refresh')
        config = state.get('config', {})
        where = f'refresh #{self.num_refreshes}' if self.num_refreshes else 'constant G'
        (runner.logger if runner else self.scaler.logger).info(
            f'SGS: restored G of {len(state.get("scales", {}))} layers from {where} '
            f'({state.get("method")}, k={config.get("k", "?")})')
        return True

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self.enabled and self.scaler is not None:
            checkpoint[STATE_KEY] = self.state_dict()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # Only a resumed run carries G on; a checkpoint loaded as weights
        # (``load_from`` without ``resume``) starts SGS afresh.
        if self.enabled and getattr(runner, '_resume', False) and STATE_KEY in checkpoint:
            self.load_state_dict(checkpoint[STATE_KEY])
