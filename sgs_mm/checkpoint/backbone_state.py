"""Move an ImageNet-pretrained ResNet backbone between OpenMMLab libraries.

The pretrain stage (mmpretrain) saves ``backbone.*`` weights that the
downstream stages load into mmseg's ResNet (PSPNet) and mmpose's ResNet
(SimpleBaseline). The configs of this repository use the **plain ResNet**
(7x7 stem, ``conv1``/``bn1``) in all three libraries, as the paper did
(torchvision-style ImageNet ResNet-18/34/50): the keys are then identical and
no conversion is needed.

The deep-stem variant (ResNetV1c / ``deep_stem=True``) has two key layouts:

* ``convmodule`` -- mmpretrain and mmpose build the stem from mmcv
  ``ConvModule``: ``stem.{0,1,2}.conv.weight``, ``stem.{0,1,2}.bn.*``;
* ``sequential`` -- mmseg builds a plain ``nn.Sequential``
  ``[conv, bn, relu] x 3``: ``stem.{0,3,6}.weight``, ``stem.{1,4,7}.*``.

:func:`convert_backbone_state` maps one onto the other, and
:func:`load_backbone_strict` loads a checkpoint into a backbone module and
raises if any key is missing, unexpected or of the wrong shape -- nothing is
skipped silently. :class:`StrictPretrainedInit` exposes the same as an
mmengine weight initialiser (``init_cfg=dict(type='StrictPretrained',
checkpoint=..., prefix='backbone.')``), registered in mmengine's root
``WEIGHT_INITIALIZERS`` so every library's configs can use it.

The command line lives in :mod:`sgs_mm.checkpoint.convert_backbone`.
"""
import os.path as osp
import re
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn

__all__ = [
    'stem_style', 'convert_backbone_state', 'extract_backbone_state',
    'load_backbone_strict', 'BackboneKeyMismatch', 'StrictPretrainedInit'
]

_SEQ_CONV = {0: 0, 1: 3, 2: 6}  # ConvModule index -> Sequential conv index
_SEQ_BN = {0: 1, 1: 4, 2: 7}


class BackboneKeyMismatch(RuntimeError):
    """Raised when checkpoint keys and backbone keys do not match 1:1."""


def stem_style(keys) -> str:
    """Classify a ResNet state dict's stem: ``'plain'`` (conv1/bn1),
    ``'convmodule'`` (``stem.i.conv``) or ``'sequential'`` (``stem.k``)."""
    keys = list(keys)
    if any(re.match(r'stem\.\d+\.conv\.', k) for k in keys):
        return 'convmodule'
    if any(re.match(r'stem\.\d+\.(weight|bias|running_)', k) for k in keys):
        return 'sequential'
    return 'plain'


def convert_backbone_state(state: Dict[str, torch.Tensor],
                           to: str) -> 'OrderedDict[str, torch.Tensor]':
    """Rename deep-stem keys to the ``to`` layout (``'sequential'`` or
    ``'convmodule'``); every other key is kept as is. Plain-stem state dicts
    cannot be converted to a deep stem (different architecture)."""
    src = stem_style(state)
    if to not in ('sequential', 'convmodule', 'plain'):
        raise ValueError(f'unknown stem layout {to!r}')
    if src == to:
        return OrderedDict(state)
    if 'plain' in (src, to):
        raise BackboneKeyMismatch(
            f'cannot convert a {src!r}-stem ResNet checkpoint into a {to!r}-'
            'stem backbone: the architectures differ (7x7 stem vs deep stem);'
            ' pretrain the matching ResNet variant instead')
    out = OrderedDict()
    inv_conv = {v: k for k, v in _SEQ_CONV.items()}
    inv_bn = {v: k for k, v in _SEQ_BN.items()}
    for k, v in state.items():
        m_cm = re.match(r'stem\.(\d+)\.(conv|bn)\.(.+)$', k)
        m_sq = re.match(r'stem\.(\d+)\.(.+)$', k)
        if src == 'convmodule' and m_cm:
            i, part, rest = int(m_cm.group(1)), m_cm.group(2), m_cm.group(3)
            j = (_SEQ_CONV if part == 'conv' else _SEQ_BN)[i]
            out[f'stem.{j}.{rest}'] = v
        elif src == 'sequential' and m_sq:
            j, rest = int(m_sq.group(1)), m_sq.group(2)
            if j in inv_conv:
                out[f'stem.{inv_conv[j]}.conv.{rest}'] = v
            elif j in inv_bn:
                out[f'stem.{inv_bn[j]}.bn.{rest}'] = v
            else:
                raise BackboneKeyMismatch(f'unexpected stem key {k}')
        else:
            out[k] = v
    return out


def extract_backbone_state(checkpoint, prefix: str = 'backbone.'):
    """Return the ``prefix``-stripped sub-state-dict of a checkpoint (a path,
    a loaded checkpoint dict or a state dict)."""
    if isinstance(checkpoint, str):
        from mmengine.runner.checkpoint import _load_checkpoint
        checkpoint = _load_checkpoint(checkpoint, map_location='cpu')
    state = checkpoint.get('state_dict', checkpoint)
    if not prefix:
        return OrderedDict(state)
    sub = OrderedDict((k[len(prefix):], v) for k, v in state.items()
                      if k.startswith(prefix))
    if not sub:
        raise BackboneKeyMismatch(
            f'no key with prefix {prefix!r} in the checkpoint (first keys: '
            f'{list(state)[:5]})')
    return sub


def _compare(module: nn.Module, state) -> Tuple[List[str], List[str],
                                                List[str]]:
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shape = sorted(k for k in set(own) & set(state)
                   if tuple(own[k].shape) != tuple(state[k].shape))
    return missing, unexpected, shape


def load_backbone_strict(module: nn.Module,
                         checkpoint,
                         prefix: str = 'backbone.',
                         convert: str = 'auto') -> Dict[str, int]:
    """Load a checkpoint's ``prefix`` weights into ``module`` exactly.

    Args:
        module: the backbone (e.g. mmseg/mmpose ``ResNet``).
        checkpoint: path, checkpoint dict or state dict.
        prefix: key prefix of the backbone in the checkpoint.
        convert: ``'auto'`` converts the deep-stem key layout to the one of
            ``module``; ``'none'`` loads the keys as they are.

    Returns:
        dict with the number of loaded tensors and the stem layouts.

    Raises:
        BackboneKeyMismatch: listing missing, unexpected and shape-mismatched
            keys, if there is any.
    """
    state = extract_backbone_state(checkpoint, prefix)
    src, dst = stem_style(state), stem_style(module.state_dict())
    if convert == 'auto' and src != dst:
        state = convert_backbone_state(state, dst)
    missing, unexpected, shape = _compare(module, state)
    if missing or unexpected or shape:
        raise BackboneKeyMismatch(
            f'backbone checkpoint does not match {type(module).__name__} '
            f'(checkpoint stem {src!r}, model stem {dst!r}): '
            f'missing={missing[:10]}{"..." if len(missing) > 10 else ""} '
            f'({len(missing)}), unexpected={unexpected[:10]} '
            f'({len(unexpected)}), shape mismatch={shape[:10]}')
    module.load_state_dict(state, strict=True)
    return dict(loaded=len(state), src_stem=src, dst_stem=dst)


try:  # register as an mmengine weight initialiser
    from mmengine.registry import WEIGHT_INITIALIZERS
except ImportError:  # pragma: no cover
    WEIGHT_INITIALIZERS = None


class StrictPretrainedInit:
    """``init_cfg=dict(type='StrictPretrained', checkpoint=PATH,
    prefix='backbone.')``: like mmengine's ``Pretrained`` but converts the
    deep-stem layout when needed and raises on any missing/unexpected key.

    After loading, every submodule is marked initialised (``is_init``) so that
    children's own ``init_weights`` (e.g. mmcv ``ConvModule``'s Kaiming
    init, which runs after non-``Pretrained`` initialisers) cannot overwrite
    the loaded weights.
    """

    def __init__(self,
                 checkpoint: Optional[str] = None,
                 prefix: str = 'backbone.',
                 map_location: str = 'cpu',
                 convert: str = 'auto'):
        self.checkpoint = checkpoint
        self.prefix = prefix
        self.map_location = map_location
        self.convert = convert

    def __call__(self, module: nn.Module) -> None:
        from mmengine.logging import print_log
        ckpt = self.checkpoint
        if not ckpt:
            raise FileNotFoundError(
                'StrictPretrained: no checkpoint given; set '
                'model.backbone.init_cfg.checkpoint=<pretrain stage .pth> '
                '(e.g. --cfg-options model.backbone.init_cfg.checkpoint=...)')
        if '://' not in ckpt and not osp.isfile(ckpt):
            raise FileNotFoundError(
                f'StrictPretrained: pretrain checkpoint {ckpt!r} does not '
                'exist. Train the pretrain stage first (tools/train.py '
                'configs/pretrain/...) or pass its checkpoint with '
                '--cfg-options model.backbone.init_cfg.checkpoint=PATH')
        info = load_backbone_strict(module, ckpt, self.prefix, self.convert)
        for m in module.modules():
            m.is_init = True
        print_log(
            f'StrictPretrained: loaded {info["loaded"]} tensors from {ckpt} '
            f'(prefix {self.prefix!r}, stem {info["src_stem"]} -> '
            f'{info["dst_stem"]}), 0 missing / 0 unexpected',
            logger='current')

    def _get_init_info(self) -> str:
        return f'{self.__class__.__name__}: load from {self.checkpoint}'


if WEIGHT_INITIALIZERS is not None and \
        'StrictPretrained' not in WEIGHT_INITIALIZERS.module_dict:
    WEIGHT_INITIALIZERS.register_module(
        name='StrictPretrained', module=StrictPretrainedInit)

