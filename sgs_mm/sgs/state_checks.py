"""Checks of a saved G before it is applied (a damaged checkpoint must never
train with it)."""
from typing import Dict, List, Optional

import torch


class InvalidSGSState(ValueError):
    """A saved SGS state holds a G that no method gives: non-finite, negative
    or all zero.

    Attributes:
        layers: the saved layer names whose G is refused.
    """

    def __init__(self, message: str, layers: List[str]):
        super().__init__(message)
        self.layers = list(layers)


def g_fault(g: torch.Tensor) -> Optional[str]:
    """What is wrong with one saved G, or None when it can be applied.

    Every method gives a finite G >= 0 with a positive centre tap; single
    zero taps are legitimate (``nmi`` where a displacement carries no
    information, ``reparam`` outside every branch's mask), an all-zero G is
    not (it would freeze the conv).

    Args:
        g: one layer's G (kh, kw).

    Returns:
        A short description naming the value found, or None.
    """
    g = torch.as_tensor(g).detach().to('cpu', torch.float64)
    bad = ~torch.isfinite(g)
    if bool(bad.any()):
        where = tuple(int(i) for i in bad.nonzero()[0])
        return f'non-finite value {float(g[where])} at tap {where}'
    if bool((g < 0).any()):
        where = tuple(int(i) for i in (g < 0).nonzero()[0])
        return f'negative value {float(g[where]):.4g} at tap {where}'
    if not bool(g.ne(0).any()):
        return 'all zero (the conv would not train)'
    return None


def check_saved_scales(scales: Dict[str, torch.Tensor]) -> None:
    """Refuse a state in which any saved G cannot be applied.

    Args:
        scales: saved G per layer name.

    Raises:
        InvalidSGSState: naming every refused layer and the value found.
    """
    faults = {name: fault for name, g in scales.items() if (fault := g_fault(g)) is not None}
    if faults:
        listed = '; '.join(f'{name!r}: {fault}' for name, fault in faults.items())
        raise InvalidSGSState(
            f'SGS state refused: the saved G of {len(faults)} layer(s) is damaged ({listed}). '
            'No method gives a non-finite, negative or all-zero G; nothing was restored.',
            list(faults))
