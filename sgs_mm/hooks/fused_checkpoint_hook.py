"""``FusedCheckpointHook``: checkpoints of a ``ReparamImageClassifier`` hold
the fused plain network, with the branched state kept for ``--resume``."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from mmengine.runner.checkpoint import weights_to_cpu

__all__ = ['FusedCheckpointHook', 'REPARAM_KEY']

# where the branched state goes in a checkpoint
REPARAM_KEY = 'reparam'


def _model(runner):
    model = runner.model
    return model.module if is_model_wrapper(model) else model


def _training(runner) -> bool:
    """Whether the runner trains (``Runner.train`` builds the optimizer
    before any hook runs; ``test``/``val`` never do)."""
    from mmengine.optim import OptimWrapper, OptimWrapperDict
    return isinstance(runner.optim_wrapper, (OptimWrapper, OptimWrapperDict))


@HOOKS.register_module()
class FusedCheckpointHook(Hook):
    """Save a branched model's checkpoints as the fused plain network.

    For models with ``fused_state_dict()`` and ``fuse()``
    (:class:`~sgs_mm.classifiers.ReparamImageClassifier`):

    - every checkpoint the Runner saves (``epoch_N.pth``, ``iter_N.pth``,
      ``best_*.pth``) gets the fused plain network as its ``state_dict``
      (what downstream configs, ``StrictPretrained`` and mmengine's
      ``Pretrained`` load), and the branched state with the block settings
      under ``checkpoint['reparam']`` (``kind``, ``linear``, ``state_dict``);
    - training runs (``--resume``, ``load_from``) load that branched state
      back, so a resumed run continues exactly; a checkpoint without it
      (a plain or fused one) cannot continue a branched training and is
      refused with a message;
    - test and val runs (``tools/test.py``) fuse the model in place and load
      the fused ``state_dict``: what is tested is what is handed on.

    Args:
        priority: the hook's priority (default ``'VERY_HIGH'``: before the
            other hooks' ``before_save_checkpoint`` and
            ``after_load_checkpoint``).

    Raises:
        TypeError: at ``before_run``, when the model has no branches to fuse
            (the config's model is not a ``ReparamImageClassifier``).
        ValueError: at ``before_run``, when an enabled
            ``SpatialGradScalingHook`` is in the same run.
    """

    def __init__(self, priority: str = 'VERY_HIGH'):
        self.priority = priority

    def before_run(self, runner) -> None:
        model = _model(runner)
        if not (hasattr(model, 'fused_state_dict') and hasattr(model, 'fuse')):
            raise TypeError(
                f'FusedCheckpointHook: the model {type(model).__name__} has '
                'no branches to fuse; use it with model = dict('
                "type='ReparamImageClassifier', reparam=...)")
        sgs = [type(h).__name__ for h in runner.hooks
               if type(h).__name__ == 'SpatialGradScalingHook'
               and getattr(h, 'enabled', True)]
        if sgs:
            raise ValueError(
                'FusedCheckpointHook: SpatialGradScalingHook and a branched '
                'model in one run would scale the blocks\' KxK convs on top '
                'of their own dynamics; compare SGS and the blocks as '
                'separate runs (or set the SGS hook\'s enabled=False)')
        model.checkpoint_hook_attached = True

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        model = _model(runner)
        if getattr(model, 'fused', False):
            return  # already the plain network
        checkpoint[REPARAM_KEY] = dict(model.reparam,
                                       state_dict=checkpoint['state_dict'])
        checkpoint['state_dict'] = weights_to_cpu(model.fused_state_dict())

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        model = _model(runner)
        branched = checkpoint.get(REPARAM_KEY)
        if not _training(runner):
            state = checkpoint.get('state_dict', {})
            if not getattr(model, 'fused', False) and any(
                    '.branches.' in k for k in state):
                # a branched state_dict (saved without this hook): load it,
                # then hand the fused network to the Runner's loading
                model.load_state_dict({k[len('module.'):] if k.startswith(
                    'module.') else k: v for k, v in state.items()})
                model.fuse()
                checkpoint['state_dict'] = model.state_dict()
            model.fuse()
            runner.logger.info(
                'FusedCheckpointHook: testing the fused plain network')
            return
        if not branched:
            raise ValueError(
                'FusedCheckpointHook: the checkpoint holds no branched state '
                f"(no '{REPARAM_KEY}' entry): a plain or fused checkpoint "
                'cannot continue a branched training; resume from a '
                'checkpoint this hook saved')
        for key in ('kind', 'linear'):
            if branched.get(key) != model.reparam.get(key):
                raise ValueError(
                    f'FusedCheckpointHook: the checkpoint was trained with '
                    f'reparam {key}={branched.get(key)!r}, the model has '
                    f'{key}={model.reparam.get(key)!r}')
        checkpoint['state_dict'] = branched['state_dict']
