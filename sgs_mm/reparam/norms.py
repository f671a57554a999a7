"""The norm layer that takes a conv's output, and folding a fused bias into it.

A fused block has a bias (its branches' BatchNorms give one); an original conv
without a bias cannot hold it without changing the checkpoint's keys. Where a
BatchNorm directly follows the conv the bias is folded into its running mean:

* eval mode: ``BN(Wx + b) = γ (Wx + b − μ) / σ + β = γ (Wx − (μ − b)) / σ + β``,
  so ``running_mean -= b`` is exact;
* train mode: the BN subtracts the batch mean, which contains ``b``, so the
  bias never mattered; the running mean then tracks ``Wx`` alone, which is
  what ``μ − b`` already is.

A BN without running statistics always uses the batch's and cancels the bias
outright. Other norms (GroupNorm, LayerNorm) do not remove a per-channel
constant, so they cannot take it.
"""
from typing import Dict, Optional

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

_NORM_TYPES = (_BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


def is_norm(module) -> bool:
    """``module`` is a normalization layer (BatchNorm / SyncBatchNorm, GroupNorm,
    LayerNorm, InstanceNorm)."""
    return isinstance(module, _NORM_TYPES)


def can_take_bias(norm: nn.Module, channels: int) -> bool:
    """A per-channel bias before ``norm`` can be folded into it exactly: a
    BatchNorm over ``channels`` features."""
    return isinstance(norm, _BatchNorm) and norm.num_features == channels


def fold_bias(norm: _BatchNorm, bias: torch.Tensor) -> None:
    """Fold a bias that used to come before ``norm`` into it (module
    docstring): ``running_mean -= bias``; nothing for a BN without running
    statistics.

    Args:
        norm: the BatchNorm directly after the conv.
        bias: (C,), any float dtype.
    """
    if norm.running_mean is None:
        return
    with torch.no_grad():
        norm.running_mean.sub_(bias.to(norm.running_mean.dtype))


def _child(parent: nn.Module, name: str) -> Optional[nn.Module]:
    module = getattr(parent, name, None) if name else None
    return module if isinstance(module, nn.Module) else None


def _by_convention(parent: nn.Module, attr: str) -> Optional[str]:
    """The sibling norm's attribute name by the naming conventions of
    mmcv's ConvModule (``conv`` -> ``norm_name``, when ``order`` puts the norm
    right after the conv), mmlab ResNets (``conv1`` -> ``norm1_name``, e.g.
    ``bn1``) and torchvision (``conv1`` -> ``bn1``)."""
    order = getattr(parent, 'order', None)
    if attr == 'conv' and isinstance(order, (tuple, list)) and 'conv' in order:
        if getattr(parent, 'with_norm', False) and 'norm' in order and \
                order.index('norm') == order.index('conv') + 1:
            return getattr(parent, 'norm_name', None)
        return None
    if not attr.startswith('conv'):
        return None
    suffix = attr[len('conv'):]
    name = getattr(parent, f'norm{suffix}_name', None)
    if isinstance(name, str) and is_norm(_child(parent, name)):
        return name
    for candidate in (f'bn{suffix}', f'norm{suffix}'):
        if is_norm(_child(parent, candidate)):
            return candidate
    return None


def _in_sequence(parent: nn.Module, attr: str) -> Optional[str]:
    if not isinstance(parent, nn.Sequential):
        return None
    names = [n for n, _ in parent.named_children()]
    i = names.index(attr)
    if i + 1 < len(names) and is_norm(parent[i + 1]):
        return names[i + 1]
    return None


def following_norm(model: nn.Module, conv_name: str) -> Optional[str]:
    """The module name of the norm that takes ``conv_name``'s output, found
    by convention (see :func:`_by_convention`) or as the next module of an
    ``nn.Sequential``; None when none is recognised.

    Args:
        model: the model.
        conv_name: the conv's module name in ``model``.
    """
    parent_name, _, attr = conv_name.rpartition('.')
    parent = model.get_submodule(parent_name) if parent_name else model
    found = _by_convention(parent, attr) or _in_sequence(parent, attr)
    if found is None:
        return None
    return f'{parent_name}.{found}' if parent_name else found


def following_norms(model: nn.Module, conv_names, explicit: Optional[Dict[str, Optional[str]]]
                    ) -> Dict[str, Optional[str]]:
    """``{conv name: norm name or None}``: ``explicit`` entries first (None
    there means "no norm"), else :func:`following_norm`.

    Args:
        model: the model.
        conv_names: the convs to look up.
        explicit: the user's mapping (names in ``model``).

    Raises:
        ValueError: an explicit norm name is not a module of ``model``.
    """
    explicit = dict(explicit or {})
    modules = dict(model.named_modules())
    out = {}
    for name in conv_names:
        if name in explicit:
            norm = explicit[name]
            if norm is not None and norm not in modules:
                raise ValueError(f'to_branches: norms[{name!r}] = {norm!r} is not a module '
                                 'of the model')
            out[name] = norm
        else:
            out[name] = following_norm(model, name)
    return out
