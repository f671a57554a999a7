"""SpatialGradScalingHook: Spatial Gradient Scaling (ICLR 2023) as an mmengine hook.

Schedule + Runner glue + reporting over :class:`sgs_mm.sgs.SpatialGradScaler`.
"""
import difflib
import os.path as osp
from dataclasses import fields
from typing import Dict, List, Optional

import torch
from mmengine.dist import get_world_size, is_main_process
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from ..analysis.history import HISTORY_FILE, GHistoryWriter
from ..sgs import InvalidSGSState, SGSOptions, SpatialGradScaler
from ..sgs.options import positive_int
from .refresh_batches import batches_per_rank, draw_batches, forked_rng, loader_batch_size
from .refresh_schedule import (MAX_FREQUENT_REFRESHES, MIN_ITERS_BETWEEN_REFRESHES,
                               RefreshSchedule, resolve_unit)
from .runner_glue import loop_counts_epochs, model_forward, optimizers_of, unwrapped_model

FORWARD_MODES = ('auto', 'tensor', 'loss')
STATE_KEY = 'sgs'
OWNER = 'SpatialGradScalingHook'
# the hook's own arguments (schedule, reporting); the rest go to SGSOptions
HOOK_ARGS = ('interval', 'warmup', 'num_batches', 'unit', 'by_epoch', 'forward_mode',
             'history_file', 'log_heatmaps', 'enabled')
SGS_ARGS = tuple(f.name for f in fields(SGSOptions) if f.name != 'owner')


def unknown_arguments_error(unknown: List[str]) -> ValueError:
    """The error for misspelled/unknown hook arguments: every accepted argument
    and, where one is close, the one probably meant."""
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, HOOK_ARGS + SGS_ARGS, n=1, cutoff=0.6)
        if close:
            hints.append(f'{name!r}: did you mean {close[0]!r}?')
    return ValueError(
        f'{OWNER}: unknown argument(s) {unknown}'
        + (f' ({"; ".join(hints)})' if hints else '')
        + f'. It takes the schedule and hook arguments {list(HOOK_ARGS)} and the SGS '
        f'arguments {list(SGS_ARGS)}.')


@HOOKS.register_module()
class SpatialGradScalingHook(Hook):
    """Scale every KxK conv's weight gradient by a KxK matrix G (SGS).

    G is recomputed on a schedule from the spatial dependence of each conv's
    input (normalized mutual information between every pixel and its
    displaced neighbours, ``method='nmi'``), see ``docs/hook.md``. The
    schedule counts epochs in every library unless ``unit='iter'``. Registered
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
        num_batches (int): training batches per refresh (per rank); more than
            the train set has per rank is cut to that, with a warning.
            Defaults to 2.
        unit (str, optional): ``'epoch'`` (default, also for ``None``) or
            ``'iter'``. Epochs hold on every loop: on an iteration-based loop
            (mmseg) they are converted with the run's real iterations per
            epoch (dataset size, batch size, number of GPUs). Iterations only
            when asked for.
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
        unknown = sorted(set(sgs_args) - set(SGS_ARGS))
        if unknown:
            raise unknown_arguments_error(unknown)
        self.options = SGSOptions(**sgs_args, owner=OWNER)
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
        self._resume_refresh: Optional[str] = None  # why G must be refreshed at once
        self._batches_used = self.num_batches  # what the train set can give per refresh

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
        had_state = self._pending_state is not None
        restored = self._restore_pending()
        self.scaler.attach(optimizers_of(runner))
        if self.history_file and is_main_process():
            self._start_history(runner)
        dynamic = self.options.dynamic
        if dynamic:
            self._batches_used = self._check_num_batches(runner)
        schedule = (self.schedule.describe(self._batches_used) if dynamic else 'constant G')
        runner.logger.info(f'SGS ({self.method}, mode={self.options.mode}, k={self.options.k}):'
                           f' {len(self.scaler.layers)} conv layers, {schedule}.')
        if dynamic:
            self._check_schedule(runner)
            self._resume_refresh = self._needs_resume_refresh(runner, had_state, restored)

    def _start_history(self, runner) -> None:
        path = osp.join(runner.work_dir, self.history_file)
        self.history = GHistoryWriter(path, dict(method=self.method, k=self.options.k,
                                                 mode=self.options.mode, unit=self.unit))
        try:
            self.history.start(resume_iter=runner.iter if runner._resume else None)
        except OSError as e:
            runner.logger.warning(f'SGS history: cannot write {path} ({e}); training goes on '
                                  'without the G history (G itself is saved in the '
                                  'checkpoints)')
            self.history = None
            return
        for note in self.history.notes:
            runner.logger.warning(f'SGS history: {note}')

    def _check_num_batches(self, runner) -> int:
        """The batches a refresh really gets (per rank), with a warning when
        ``num_batches`` asks for more than the train set has."""
        loader = runner.train_dataloader
        world = get_world_size()
        try:
            available = batches_per_rank(loader, world)
        except TypeError:  # an iterable dataset without a length
            return self.num_batches
        if self.num_batches <= available:
            return self.num_batches
        runner.logger.warning(
            f'SGS: num_batches={self.num_batches}, but the train set gives only {available} '
            f'batch(es) per rank ({len(loader.dataset)} samples, batch size '
            f'{loader_batch_size(loader)}{f", {world} ranks" if world > 1 else ""}); each '
            f'refresh uses {available}.')
        return available

    def _run_length(self, runner):
        loop = runner.train_loop
        return int(getattr(loop, 'max_iters', 0) or 0), getattr(loop, 'max_epochs', None)

    def _check_schedule(self, runner) -> None:
        """Warn at the start when this run never refreshes, or refreshes more
        often than every ``MIN_ITERS_BETWEEN_REFRESHES`` iterations and more
        than ``MAX_FREQUENT_REFRESHES`` times."""
        sch = self.schedule
        max_iters, max_epochs = self._run_length(runner)
        if max_iters <= 0:
            return
        last = sch.last_step(max_iters, max_epochs)
        total = sch.count(0, last)
        unit = 'epoch' if sch.unit == 'epoch' else 'iteration'
        if total == 0:
            length = (f'{max_epochs} epochs' if sch.unit == 'epoch' and max_epochs else
                      f'{max_iters:,} iterations' + (
                          f' = {max_iters / sch.iters_per_epoch:.3g} epochs'
                          if sch.unit == 'epoch' else ''))
            runner.logger.warning(
                f'SGS will never refresh in this run: the first refresh is at {unit} '
                f'{sch.warmup} (warmup={sch.warmup}), the run has {length}. G stays 1 (plain '
                'training); lower warmup to refresh.')
            return
        gap = sch.to_iters(sch.interval)
        if total > MAX_FREQUENT_REFRESHES and gap < MIN_ITERS_BETWEEN_REFRESHES:
            hint = ("the paper refreshes every 5 epochs: interval=5 with the default "
                    "unit='epoch'" if sch.unit == 'iter' else 'a larger interval')
            every = f'{sch.interval} {unit}{"s" if sch.interval > 1 else ""}'
            if sch.unit == 'epoch':
                every += f' = {gap:,} iterations'
            runner.logger.warning(
                f'SGS refreshes every {every} ({total:,} refreshes in this run), more often '
                f'than every {MIN_ITERS_BETWEEN_REFRESHES} iterations: each refresh costs about '
                f'2 x {self._batches_used} forward passes. Intended? Otherwise use {hint}.')

    def _needs_resume_refresh(self, runner, had_state: bool, restored: int) -> Optional[str]:
        """Why G must be re-estimated before the first step of a resumed run
        (None: it need not): the run resumes past the warm-up without a
        usable G for every layer, and no refresh is due right there."""
        if not getattr(runner, '_resume', False) or runner.iter <= 0:
            return None
        sch = self.schedule
        if restored == len(self.scaler.groups) and self.scaler.num_refreshes > 0:
            return None
        position = self.schedule.position(runner.epoch, runner.iter)
        started = position > sch.warmup or (
            position == sch.warmup and sch.unit == 'epoch' and not sch.loop_by_epoch
            and runner.iter > sch.to_iters(sch.warmup))
        if not started:
            return None  # the warm-up refresh is still ahead
        if not had_state:
            return ('the checkpoint has no SGS state (saved without SpatialGradScalingHook, or '
                    'with it disabled)')
        if not restored:
            return 'the checkpoint\'s SGS state is not usable here (see the warning above)'
        if restored < len(self.scaler.groups):
            return (f'the checkpoint\'s SGS state has G for {restored} of '
                    f'{len(self.scaler.groups)} layers')
        return 'the checkpoint\'s SGS state holds no estimated G yet (G = 1, no refresh done)'

    def after_train(self, runner) -> None:
        if self.scaler is not None:
            self.scaler.detach()

    def before_train_epoch(self, runner) -> None:
        if self.enabled and (step := self.schedule.at_epoch_start(runner.epoch)) is not None:
            self._resume_refresh = None
            self.refresh(runner, step)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if not self.enabled:
            return
        if (step := self.schedule.at_iter(runner.iter)) is not None:
            self._resume_refresh = None
            self.refresh(runner, step)
        elif self._resume_refresh is not None:
            why, self._resume_refresh = self._resume_refresh, None
            step = self.schedule.position(runner.epoch, runner.iter)
            unit = 'epoch' if self.unit == 'epoch' else 'iteration'
            runner.logger.warning(
                f'SGS: resumed at {unit} {step} (iteration {runner.iter}), past the warm-up, '
                f'but {why}: refreshing G now rather than training on with G = 1 until the '
                'next scheduled refresh.')
            self.refresh(runner, step)

    def refresh(self, runner, step: int, batches: Optional[list] = None
                ) -> Dict[str, torch.Tensor]:
        """Recompute G for every layer from ``num_batches`` training batches.

        ``batches`` (collated, before the data_preprocessor) replaces the
        random draw from the train dataset when given. A refresh that runs
        out of memory (after retries with smaller chunks) keeps the previous
        G and training goes on (the engine's warning says what to change).

        Returns:
            The new G per layer (layers whose G was kept are left out).
        """
        seed = (runner.seed or 0) + 1000003 * (self.num_refreshes + 1) + step
        with forked_rng():
            if batches is None:
                batches = draw_batches(runner.train_dataloader, self.num_batches, seed)
            first = 'loss' if self.forward_mode == 'loss' else 'tensor'
            fallback = model_forward('loss') if self.forward_mode == 'auto' else None
            # G, its refresh count and the step are published together: a
            # state_dict() in another thread waits for the refresh to end
            with self.scaler.state_lock:
                report = self.scaler.refresh(batches, model_forward(first), fallback)
                self.schedule.last = step
        if report.failed:
            runner.logger.warning(f'SGS refresh at {self.unit} {step} failed '
                                  f'({report.failed}): every layer keeps its previous G.')
            return report.updated
        self._report(runner, step, report.seconds, len(batches))
        return report.updated

    def _report(self, runner, step, seconds, num_batches):
        scales = self.scales()
        runner.logger.info(f'SGS refresh #{self.num_refreshes} at {self.unit} {step} '
                           f'({seconds:.2f}s, {num_batches} batch(es), {len(scales)} layers; '
                           f'centre [min,max]): {self.scaler.summary(scales)}')
        if not is_main_process():
            return
        if self.history is not None:
            # an epoch schedule on an iteration loop (mmseg) counts its own
            # epochs: the loop's stays 0
            epoch = step if self.unit == 'epoch' else runner.epoch
            ok = self.history.append(dict(refresh=self.num_refreshes, epoch=epoch,
                                          iter=runner.iter,
                                          layers={n: g.tolist() for n, g in scales.items()}))
            if not ok:
                runner.logger.warning(
                    f'SGS history: writing {self.history.path} failed '
                    f'({self.history.incomplete}); it is marked incomplete and no further '
                    'refresh is written to it. Training goes on (G itself is saved in the '
                    'checkpoints).')
                self.history = None
        if self.log_heatmaps:
            from ..visualization import check_local_image, render_scaling_grid
            try:
                image = render_scaling_grid({n: g.numpy() for n, g in scales.items()})
                runner.visualizer.add_image('sgs_G', image, step=runner.iter)
                check_local_image(runner.visualizer, 'sgs_G', runner.iter, image)
            except OSError as e:
                self.log_heatmaps = False
                runner.logger.warning(f'SGS: the G heatmap could not be written ({e}); '
                                      'heatmaps are off for the rest of this run, training '
                                      'goes on.')

    def state_dict(self) -> dict:
        """The engine's state (G, refresh count, G-defining arguments) plus the
        schedule's last refresh step (stored in checkpoints). Safe from another
        thread during a refresh: the snapshot is one refresh's state."""
        with self.scaler.state_lock:
            return dict(self.scaler.state_dict(), last_refresh=self.last_refresh,
                        unit=self.unit)

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (before or after ``before_train``)."""
        self._pending_state = state
        if self.scaler is not None:
            self._restore_pending()

    def _restore_pending(self) -> int:
        """Restore the pending state; returns the number of layers restored."""
        state, self._pending_state = self._pending_state, None
        if state is None:
            return 0
        try:
            restored = self.scaler.load_state_dict(state)
        except InvalidSGSState as e:  # a damaged G: treated like a missing one
            self.scaler.logger.warning(f'{e} It is treated as missing: G starts afresh (a run '
                                       'resumed past the warm-up refreshes at once).')
            return 0
        if restored and state.get('unit', self.unit) == self.unit:
            self.schedule.last = state.get('last_refresh')
        return restored

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self.enabled and self.scaler is not None:
            checkpoint[STATE_KEY] = self.state_dict()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # Only a resumed run carries G on; a checkpoint loaded as weights
        # (``load_from`` without ``resume``) starts SGS afresh.
        if self.enabled and getattr(runner, '_resume', False) and STATE_KEY in checkpoint:
            self.load_state_dict(checkpoint[STATE_KEY])
