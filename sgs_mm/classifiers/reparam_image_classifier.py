"""``ReparamImageClassifier``: mmpretrain's ``ImageClassifier`` with its
backbone trained as structural-reparameterization blocks."""
from collections import OrderedDict
from typing import Dict, Optional, Union

from mmpretrain.models.classifiers import ImageClassifier
from mmpretrain.registry import MODELS

from ..reparam import (KINDS, fuse_branches, fused_state_dict, init_branches,
                       to_branches)

__all__ = ['ReparamImageClassifier', 'reparam_settings', 'REPARAM_KEYS']

# the to_branches arguments a config may set
REPARAM_KEYS = ('kind', 'linear', 'include', 'exclude', 'norms',
                'on_missing_norm')
HOOK_HINT = ("default_hooks = dict(fused_checkpoint=dict("
             "type='FusedCheckpointHook'))")


def reparam_settings(reparam: Union[str, dict, None]) -> Dict[str, object]:
    """The :func:`~sgs_mm.reparam.to_branches` arguments of a ``reparam``
    setting: a kind (``'acb'``) or a dict with ``kind`` and optionally
    ``linear``, ``include``, ``exclude``, ``norms``, ``on_missing_norm``.

    Args:
        reparam: the setting.

    Returns:
        The arguments, ``kind`` and ``linear`` always present.

    Raises:
        ValueError: no kind, an unknown kind or an unknown key (each named
            with the valid ones).
    """
    if isinstance(reparam, str):
        reparam = dict(kind=reparam)
    if not isinstance(reparam, dict) or 'kind' not in reparam:
        raise ValueError(
            f'reparam must be one of {KINDS} or a dict with kind=..., got '
            f'{reparam!r}')
    unknown = sorted(set(reparam) - set(REPARAM_KEYS))
    if unknown:
        raise ValueError(f'reparam: unknown key(s) {unknown}; valid: '
                         f'{list(REPARAM_KEYS)}')
    if reparam['kind'] not in KINDS:
        raise ValueError(f"reparam: kind must be one of {KINDS}, got "
                         f"{reparam['kind']!r}")
    out = dict(reparam)
    out['linear'] = bool(out.get('linear', False))
    return out


def _refuse_pretrained_backbone(backbone) -> None:
    """A backbone initialised from a checkpoint would load plain keys into
    the branched network (mmengine's ``Pretrained`` only warns about
    them): refused."""
    init = (backbone or {}).get('init_cfg') if isinstance(backbone,
                                                          dict) else None
    for cfg in init if isinstance(init, (list, tuple)) else [init]:
        if isinstance(cfg, dict) and 'Pretrained' in str(cfg.get('type')):
            raise ValueError(
                'ReparamImageClassifier: the backbone is initialised from a '
                f'checkpoint (init_cfg type {cfg.get("type")!r}); a plain '
                'checkpoint does not fit the branched backbone. Train the '
                'blocks from scratch (backbone.init_cfg without Pretrained)')


@MODELS.register_module()
class ReparamImageClassifier(ImageClassifier):
    """An ``ImageClassifier`` whose backbone trains with ACB, RepVGG or DBB
    blocks in place of every KxK conv SGS would scale.

    The conversion (:func:`sgs_mm.reparam.to_branches`) happens when the
    model is built, before mmengine's Runner builds the optimizer or wraps
    the model for distributed training, so every branch parameter is
    trained. ``mmengine``'s weight initialisation then treats the branch
    convs and BatchNorms like the backbone's own (its ``init_cfg``), and
    each block gets its kind's own starting values back
    (:meth:`init_weights`).

    Checkpoints: with :class:`~sgs_mm.hooks.FusedCheckpointHook` (required
    for training; the first training step refuses to run without it),
    every checkpoint's ``state_dict`` is the fused plain network
    (:meth:`fused_state_dict`: the keys and shapes of the same config's
    ``ImageClassifier``), and the branched state, which ``--resume`` needs,
    is kept beside it under ``checkpoint['reparam']``.

    In a config (one line, plus the hook)::

        model = dict(type='ReparamImageClassifier', reparam='acb')

    Args:
        reparam: the block kind (``'acb'``, ``'repvgg'``, ``'dbb'``) or a
            dict of :func:`~sgs_mm.reparam.to_branches` arguments
            (``kind``, ``linear``, ``include``, ``exclude``, ``norms``,
            ``on_missing_norm``).
        require_checkpoint_hook: refuse to train without
            ``FusedCheckpointHook`` (default True).
        **kwargs: ``ImageClassifier``'s arguments (``backbone``, ``neck``,
            ``head``, ...).

    Raises:
        ValueError: at build time, for a bad ``reparam`` (unknown kind or
            key, ``linear=True`` with ``'dbb'``, convs without a norm for
            the fused bias) or a backbone initialised from a checkpoint.
    """

    def __init__(self, reparam: Union[str, dict, None] = None,
                 require_checkpoint_hook: bool = True, **kwargs):
        settings = reparam_settings(reparam)
        _refuse_pretrained_backbone(kwargs.get('backbone'))
        super().__init__(**kwargs)
        to_branches(self.backbone, **settings)
        self.reparam = settings
        self.require_checkpoint_hook = require_checkpoint_hook
        self.checkpoint_hook_attached = False
        self.fused = False

    def init_weights(self) -> None:
        """mmengine's initialisation (the backbone's ``init_cfg`` reaches
        every branch conv and BatchNorm), then each block's own starting
        values (:func:`~sgs_mm.reparam.init_branches`: the Lemma 1 form's
        side branches at zero, DBB's identity-based 1x1 at the identity)."""
        super().init_weights()
        init_branches(self.backbone)

    def fused_state_dict(self) -> 'OrderedDict[str, object]':
        """The state dict of the fused plain network (the branched model is
        left as it is): exactly the keys and shapes the same config's
        ``ImageClassifier`` has."""
        own = self.state_dict()
        if self.fused:
            return own
        out = OrderedDict((k, v) for k, v in own.items()
                          if not k.startswith('backbone.'))
        for k, v in fused_state_dict(self.backbone).items():
            out['backbone.' + k] = v
        return out

    def fuse(self) -> 'ReparamImageClassifier':
        """Fuse the backbone in place (for testing and export: the model is
        the plain ``ImageClassifier`` afterwards, its optimizer, if any,
        no longer matches)."""
        if not self.fused:
            fuse_branches(self.backbone)
            self.fused = True
        return self

    def loss(self, inputs, data_samples):
        if (self.require_checkpoint_hook and not
                self.checkpoint_hook_attached):
            raise RuntimeError(
                'ReparamImageClassifier: training without FusedCheckpointHook '
                'would save the branched network as the checkpoint\'s '
                f'state_dict; add `{HOOK_HINT}` to the config (or build the '
                'model with require_checkpoint_hook=False)')
        if self.fused:
            raise RuntimeError('ReparamImageClassifier: the backbone is fused '
                               '(testing mode); it cannot train any more')
        return super().loss(inputs, data_samples)
