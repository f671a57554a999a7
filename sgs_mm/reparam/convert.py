"""``to_branches`` / ``fuse_branches``: train the convs SGS scales as
structural-reparameterization blocks, and turn them back into plain convs."""
import copy
import logging
from typing import Dict, Optional, Sequence, Union

import torch.nn as nn

from ..sgs.layers import find_sgs_layers
from .block import BranchBlock
from .geometry import why_not_convertible
from .kinds import KINDS, LINEAR_KINDS, build_block
from .norms import can_take_bias, fold_bias, following_norms

MISSING_NORM = ('error', 'skip', 'bias')
SKIPPED_ATTR = 'reparam_skipped'

Patterns = Union[str, Sequence[str], None]


def _patterns(value: Patterns) -> list:
    return [value] if isinstance(value, str) else list(value or [])


def _set_child(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attr = name.rpartition('.')
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, module)


def _skipped_by_selection(even, refused, frozen) -> Dict[str, str]:
    skipped = {n: 'even kernel (no centre tap)' for n in even}
    skipped.update({n: 'weight is not a Parameter (parametrized)' for n in refused})
    skipped.update({n: 'frozen (weight does not require grad)' for n in frozen})
    return skipped


def _eligible(model: nn.Module, include, exclude):
    layers, even, refused, frozen = find_sgs_layers(model, _patterns(include),
                                                    _patterns(exclude), owner='to_branches')
    inside = [n + '.' for n, m in model.named_modules() if isinstance(m, BranchBlock)]
    keep = {n: c for n, c in layers.items() if not any(n.startswith(p) for p in inside)}
    return keep, _skipped_by_selection(even, refused, frozen)


def to_branches(model: nn.Module, kind: str, linear: bool = False, include: Patterns = None,
                exclude: Patterns = None, norms: Optional[Dict[str, Optional[str]]] = None,
                on_missing_norm: str = 'error',
                logger: Optional[logging.Logger] = None) -> nn.Module:
    """Train every KxK conv that SGS would scale as a block of ``kind``, in place.

    The convs are those of :func:`sgs_mm.sgs.find_sgs_layers` (odd KxK with
    both sides > 1, trainable, ``include`` / ``exclude`` globs on module
    names). Each becomes a :class:`BranchBlock` registered under the conv's
    own name, whose ``'kxk'`` branch is the conv object itself:

    * ``'acb'``: KxK + 1xK + Kx1 (ACNet);
    * ``'repvgg'``: KxK + 1x1, + identity where in == out channels, stride 1
      and the conv pads half its window;
    * ``'dbb'``: KxK, 1x1, 1x1 -> KxK, 1x1 -> KxK average pool (Diverse
      Branch Block; no 1x1 branch for a depthwise conv).

    ``linear=False`` (the published blocks): each branch has its own
    BatchNorm, the layer's own norm stays after the sum. ``linear=True``
    (``'acb'``, ``'repvgg'``; the paper's Fig. 2b, Lemma 1): bias-free
    branches without BN, summed, side branches starting at zero, so that the
    block starts as the conv and trains exactly like it under
    ``SpatialGradScalingHook(method='reparam', normalize=False)`` with
    :func:`~sgs_mm.reparam.lemma1_branches`. A host initialiser that runs
    afterwards redraws the branch convs too: :func:`init_branches` restores
    the kinds' starting values.

    Convs the kind is not defined for (a DBB on a dilated conv, a conv with
    its own forward such as ``Conv2dAdaptivePadding``, ...), even kernels,
    frozen and parametrized weights are left alone: one warning names them
    (frozen ones are only logged), and ``model.reparam_skipped`` maps each
    name to the reason.

    Args:
        model: the model (not yet wrapped in DDP).
        kind: ``'acb'``, ``'repvgg'`` or ``'dbb'``.
        linear: the Lemma 1 form.
        include: module-name globs of the convs to convert (all when None).
        exclude: module-name globs of the convs to leave.
        norms: ``{conv name: name of the BatchNorm after it, or None}`` where
            automatic detection (mmcv ConvModule, mmlab / torchvision ResNet
            ``convN`` -> ``normN_name`` / ``bnN``, next module of an
            ``nn.Sequential``) does not apply.
        on_missing_norm: the published form of a conv with no bias and no
            BatchNorm after it has a fused bias nowhere to go: ``'error'``
            (default) raises, ``'skip'`` leaves such convs alone (named),
            ``'bias'`` gives the fused conv a bias (its checkpoint gains a
            ``.bias`` key).
        logger: where the warning goes (default ``logging.getLogger('sgs_mm')``).

    Returns:
        ``model``, converted.

    Raises:
        ValueError: unknown ``kind``; ``linear=True`` with ``'dbb'``; a
            pattern that matches no conv; with ``on_missing_norm='error'``,
            convs without a norm to take their bias (all named).
    """
    if kind not in KINDS:
        raise ValueError(f'to_branches: kind must be one of {KINDS}, got {kind!r}')
    if linear and kind not in LINEAR_KINDS:
        raise ValueError(f"to_branches: linear=True (the Lemma 1 form) exists for {LINEAR_KINDS}"
                         f" only; {kind!r} composes convs and BNs in series, which no "
                         'gradient scaling reproduces')
    if on_missing_norm not in MISSING_NORM:
        raise ValueError(f'to_branches: on_missing_norm must be one of {MISSING_NORM}, '
                         f'got {on_missing_norm!r}')
    logger = logger or logging.getLogger('sgs_mm')
    layers, skipped = _eligible(model, include, exclude)
    norm_of = following_norms(model, layers, norms)
    modules = dict(model.named_modules())
    plan, missing = {}, []
    for name, conv in layers.items():
        reason = why_not_convertible(conv)
        if reason is not None:
            skipped[name] = reason
            continue
        norm = norm_of[name]
        norm_ok = norm is not None and can_take_bias(modules[norm], conv.out_channels)
        if not linear and conv.bias is None and not norm_ok:
            if on_missing_norm == 'error':
                missing.append(name)
                continue
            if on_missing_norm == 'skip':
                skipped[name] = 'no BatchNorm after it to take the fused bias'
                continue
        plan[name] = norm if norm_ok else None
    if missing:
        raise ValueError(
            f'to_branches: {len(missing)} conv(s) have no bias and no BatchNorm directly after '
            f'them that could take the bias of a fused {kind!r} block: {missing}. Name their '
            "norms with norms={conv: norm}, or pass on_missing_norm='skip' (leave them) or "
            "'bias' (fused convs get a bias), or exclude them")
    for name, norm in plan.items():
        conv = layers[name]
        block = build_block(kind, conv, linear)
        if isinstance(block, str):
            skipped[name] = block
            continue
        if not linear and norm is None:
            block.had_bias = True  # on_missing_norm='bias' (or the conv has one)
        block.conv_name, block.norm_name = name, norm
        _set_child(model, name, block)
    frozen = [n for n, r in skipped.items() if r.startswith('frozen')]
    if frozen:  # not trained at all (e.g. frozen_stages): as SGS, said, not warned
        logger.info(f'to_branches({kind!r}): {len(frozen)} frozen KxK conv(s) stay plain: '
                    f'{frozen}')
    warned = {n: r for n, r in skipped.items() if n not in frozen}
    if warned:
        listed = ', '.join(f'{n} ({r})' for n, r in warned.items())
        logger.warning(f'to_branches({kind!r}): {len(warned)} KxK conv(s) left as they are: '
                       f'{listed}')
    setattr(model, SKIPPED_ATTR, skipped)
    return model


def _current_norm_name(block: BranchBlock, block_name: str) -> Optional[str]:
    """``block.norm_name`` in the model being fused, whose names may have
    gained or lost a prefix (``module.``, ``backbone.``) since conversion."""
    old, norm = block.conv_name, block.norm_name
    if norm is None or old is None or old == block_name:
        return norm
    if old.endswith(block_name):
        prefix = old[:len(old) - len(block_name)]
        return norm[len(prefix):] if norm.startswith(prefix) else None
    if block_name.endswith(old):
        return block_name[:len(block_name) - len(old)] + norm
    return None


def fuse_branches(model: nn.Module) -> nn.Module:
    """Turn every :class:`BranchBlock` back into its original conv, in place.

    The conv gets the fused kernel; the fused bias goes to the conv's own bias
    where it has (or had) one, otherwise into the running mean of the
    BatchNorm after it (:mod:`sgs_mm.reparam.norms` explains why that is
    exact in eval mode and harmless in train mode). Eval-mode outputs equal
    the branched model's to the conv dtype's precision, and ``state_dict()``
    has the keys and shapes of the model before :func:`to_branches`.

    Args:
        model: a model converted by :func:`to_branches` (or any module
            containing blocks; its names may carry a prefix the conversion
            did not, e.g. ``backbone.``).

    Returns:
        ``model``, fused.

    Raises:
        RuntimeError: a block's bias has no BatchNorm to go to in ``model``
            (e.g. fusing a sub-module that does not contain that norm).
    """
    blocks = [(n, m) for n, m in model.named_modules() if isinstance(m, BranchBlock)]
    modules = dict(model.named_modules())
    for name, block in blocks:
        norm_name = _current_norm_name(block, name)
        norm = modules.get(norm_name) if norm_name is not None else None
        conv, bias = block.to_conv()
        if bias is not None:
            if norm is None:
                raise RuntimeError(
                    f'fuse_branches: the block {name!r} has a fused bias and its BatchNorm '
                    f'{block.norm_name!r} is not in this model')
            fold_bias(norm, bias)
        _set_child(model, name, conv)
    return model


def init_branches(model: nn.Module) -> nn.Module:
    """Give every block's parts the kind's own starting values again, after
    a host initialiser drew them (e.g. mmengine's ``init_weights`` with an
    ``init_cfg`` for every ``Conv2d``; it reaches a block's own
    ``init_weights`` only through ``BaseModule`` parents, not through the
    ``nn.Sequential`` stages of a ResNet): the Lemma 1 form's side branches
    to zero, DBB's identity-based 1x1 conv to the identity. Call it after
    the model's weights are initialised (an mmengine hook's ``before_train``).

    Args:
        model: a model converted by :func:`to_branches`.

    Returns:
        ``model``.
    """
    for module in model.modules():
        if isinstance(module, BranchBlock):
            module.init_weights()
    return model


def fused_state_dict(model: nn.Module) -> dict:
    """The ``state_dict`` that :func:`fuse_branches` would give ``model``,
    leaving ``model`` branched (a fused deep copy; e.g. for the checkpoints
    of a run that goes on training the blocks).

    Args:
        model: a model converted by :func:`to_branches` (wrapped or not).

    Returns:
        The fused copy's ``state_dict``: the original architecture's keys.
    """
    return fuse_branches(copy.deepcopy(model)).state_dict()
