"""Comparison arms as data in a pipeline spec.

A stage entry may name a structural reparameterization, next to the SGS
on/off its config already carries::

    dict(name='pretrain_r18_acb', config='configs/pretrain/...in1k.py',
         reparam='acb',       # or dict(kind='dbb'), dict(kind='acb', linear=True)
         table=dict(model='ResNet-18', variant='ACB'))

The stage then trains its mmpretrain ``ImageClassifier`` config as a
``ReparamImageClassifier`` with ``FusedCheckpointHook``
(:mod:`sgs_mm.classifiers`): the backbone trains with the blocks, and every
checkpoint it saves -- the one downstream stages start from included -- is
the fused plain ResNet. Downstream stages need nothing new.
"""
from typing import Dict

from .stage_inputs import StageInputError

ARM_FIELD = 'reparam'
CLASSIFIER_TYPES = ('ImageClassifier', 'mmpretrain.ImageClassifier')
ARM_IMPORTS = ('sgs_mm', 'sgs_mm.classifiers')

__all__ = ['ARM_FIELD', 'check_arm', 'arm_options', 'arm_label']


def _settings(reparam) -> dict:
    from ..classifiers.reparam_image_classifier import reparam_settings
    return reparam_settings(reparam)


def check_arm(stage: dict) -> None:
    """Check a spec stage's ``reparam`` setting (when it has one).

    Args:
        stage: the spec entry.

    Raises:
        ValueError: a bad setting (unknown kind or key), naming the stage.
    """
    if stage.get(ARM_FIELD) is None:
        return
    try:
        _settings(stage[ARM_FIELD])
    except ValueError as e:
        raise ValueError(f'stage {stage["name"]}: {e}') from e


def arm_label(stage: dict) -> str:
    """How the dry run names a stage's arm: ``'reparam acb'``, or ``''``."""
    reparam = stage.get(ARM_FIELD)
    if reparam is None:
        return ''
    s = _settings(reparam)
    return f'reparam {s["kind"]}' + (' (linear)' if s['linear'] else '')


def arm_options(stage: dict, cfg) -> Dict[str, object]:
    """The config options that realise a stage's arm on its resolved config
    (empty for a stage without one).

    Args:
        stage: the spec entry.
        cfg: the stage's config, loaded with its options.

    Returns:
        ``model.type``, ``model.reparam.*``, the hook in ``default_hooks``
        and ``custom_imports`` (the config's own imports kept).

    Raises:
        StageInputError: the config does not build an mmpretrain
            ``ImageClassifier``.
    """
    if stage.get(ARM_FIELD) is None:
        return {}
    settings = _settings(stage[ARM_FIELD])
    model_type = (cfg.get('model') or {}).get('type')
    if model_type not in CLASSIFIER_TYPES:
        raise StageInputError(
            f'stage {stage["name"]}: reparam={stage[ARM_FIELD]!r} needs a '
            f'config whose model is an mmpretrain ImageClassifier; '
            f'{stage["config"]} builds {model_type!r}')
    imports = list((cfg.get('custom_imports') or {}).get('imports') or [])
    imports += [m for m in ARM_IMPORTS if m not in imports]
    opts = {'custom_imports.imports': imports,
            'custom_imports.allow_failed_imports': False,
            'model.type': 'ReparamImageClassifier',
            'default_hooks.fused_checkpoint.type': 'FusedCheckpointHook'}
    for key, value in settings.items():
        opts[f'model.reparam.{key}'] = value
    return opts
