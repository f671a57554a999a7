"""Which convolutions SGS scales (SGS_SPEC §1): found and keyed by module name."""
import fnmatch
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import torch.nn as nn


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def find_sgs_layers(model: nn.Module, include: Optional[Sequence[str]] = None,
                    exclude: Optional[Sequence[str]] = None, owner: str = 'SpatialGradScaler'
                    ) -> Tuple['OrderedDict[str, nn.Conv2d]', List[str], List[str], List[str]]:
    """Eligible convs of ``model`` by module name, and the ones skipped.

    Eligible: an ``nn.Conv2d`` (subclasses included) whose kernel has both
    sides > 1 and whose weight requires grad, whose name matches an
    ``include`` glob (all when ``None``) and no ``exclude`` glob.

    Returns:
        ``(layers, even, refused, frozen)``: the eligible convs; the skipped ones
        with an even kernel side (no centre tap); the refused ones whose
        ``weight`` is not a Parameter but recomputed from one
        (``torch.nn.utils.parametrize``, ``weight_norm``): a gradient hook on
        the recomputed tensor never fires and G on its leaves would not be
        G on the weight, so SGS cannot scale them; the KxK convs (matching
        include/exclude) left out because their weight does not require grad
        (frozen, e.g. ``frozen_stages``).

    Raises:
        ValueError: an include/exclude pattern matches no conv of the model
            (a typo would otherwise silently disable SGS for those layers).
    """
    include, exclude = list(include or []), list(exclude or [])
    convs = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    names = [name for name, _ in convs]
    for arg, patterns in (('include', include), ('exclude', exclude)):
        for p in patterns:
            if not any(fnmatch.fnmatchcase(n, p) for n in names):
                raise ValueError(
                    f'{owner}: {arg} pattern {p!r} matches no Conv2d of the '
                    f'model; conv names look like {names[:3]}')
    layers: 'OrderedDict[str, nn.Conv2d]' = OrderedDict()
    even: List[str] = []
    refused: List[str] = []
    frozen: List[str] = []
    for name, conv in convs:
        kh, kw = conv.kernel_size
        if kh <= 1 or kw <= 1:
            continue
        if include and not _matches(name, include):
            continue
        if exclude and _matches(name, exclude):
            continue
        if not conv.weight.requires_grad:
            frozen.append(name)
            continue
        if kh % 2 == 0 or kw % 2 == 0:
            even.append(name)
            continue
        if not isinstance(conv.weight, nn.Parameter):
            refused.append(name)
            continue
        layers[name] = conv
    return layers, even, refused, frozen


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside DataParallel / DistributedDataParallel wrappers
    (mmengine's wrappers derive from them), else the model itself.

    Raises:
        ValueError: the model is sharded by FSDP (``FullyShardedDataParallel``)
            or DeepSpeed, under which SGS cannot scale
            (:func:`~sgs_mm.sgs.sharding.refuse_unsupported_wrappers`).
    """
    from torch.nn.parallel import DataParallel, DistributedDataParallel

    from .sharding import refuse_unsupported_wrappers
    refuse_unsupported_wrappers(model)
    while isinstance(model, (DataParallel, DistributedDataParallel)):
        model = model.module
    return model


def named_weights(layers: Dict[str, nn.Conv2d]) -> Dict[str, nn.Parameter]:
    return OrderedDict((name, conv.weight) for name, conv in layers.items())
