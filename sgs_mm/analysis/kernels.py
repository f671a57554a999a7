"""Average kernel magnitude matrices of conv weights (the paper's appendix A.7, Fig. 6)."""
from collections import OrderedDict
from typing import Dict, List

import numpy as np
import torch

WEIGHT_SUFFIX = '.weight'


def kernel_magnitude(weight) -> np.ndarray:
    """Mean |W| over the output and input channels per spatial position.

    Args:
        weight: a conv weight ``(out, in/groups, kh, kw)``.

    Returns:
        ``(kh, kw)`` float64 matrix normalized to mean 1 (all ones for an
        all-zero weight).
    """
    w = torch.as_tensor(weight).detach().to('cpu', torch.float64)
    if w.dim() != 4:
        raise ValueError(f'expected a 4-D conv weight (out, in, kh, kw), got shape '
                         f'{tuple(w.shape)}')
    m = w.abs().mean(dim=(0, 1)).numpy()
    mean = m.mean()
    return m / mean if mean > 0 else np.ones_like(m)


def conv_weights(state_dict: Dict[str, torch.Tensor]) -> 'OrderedDict[str, torch.Tensor]':
    """KxK conv weights by layer name, in state-dict (model) order.

    A layer is any ``<name>.weight`` tensor of 4 dimensions whose kernel is
    larger than 1 on both sides (the convs SGS can scale; 1x1 left out).
    """
    out: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
    for key, value in state_dict.items():
        if (key.endswith(WEIGHT_SUFFIX) and isinstance(value, torch.Tensor) and value.dim() == 4
                and value.shape[-2] > 1 and value.shape[-1] > 1):
            out[key[:-len(WEIGHT_SUFFIX)]] = value
    return out


def magnitudes(state_dict: Dict[str, torch.Tensor], layers: List[str]
               ) -> 'OrderedDict[str, np.ndarray]':
    """:func:`kernel_magnitude` of the named layers."""
    weights = conv_weights(state_dict)
    return OrderedDict((n, kernel_magnitude(weights[n])) for n in layers)


def centre_edge_corner(m: np.ndarray) -> Dict[str, float]:
    """Centre value, mean of the centre row/column arms, mean of the 4 corners.

    The paper's reading of Fig. 4-6: SGS moves magnitude to the centre and the
    edge (cross) elements, away from the corners.
    """
    m = np.asarray(m, dtype=np.float64)
    kh, kw = m.shape
    ch, cw = kh // 2, kw // 2
    arms = np.concatenate([np.delete(m[ch, :], cw), np.delete(m[:, cw], ch)])
    corners = m[[0, 0, -1, -1], [0, -1, 0, -1]]
    return dict(centre=float(m[ch, cw]), edge=float(arms.mean()), corner=float(corners.mean()))
