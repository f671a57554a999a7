"""The arguments of SGS, checked once where the user gives them."""
from dataclasses import asdict, dataclass, field
from typing import List, Optional, Sequence, Tuple, Union

import torch

from .static_scalings import fixed_scaling

METHODS = ('nmi', 'autocorr', 'fixed', 'reparam')
DYNAMIC_METHODS = ('nmi', 'autocorr')
MODES = ('grad', 'update')

# the arguments that determine the value of G: a saved G is only restored
# into a scaler whose arguments agree on all of them
G_DEFINING = ('method', 'k', 'diag_removal', 'respect_dilation', 'alpha', 'beta', 'branches',
              'normalize')


def is_positive_number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and value > 0


def positive_int(owner: str, name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f'{owner}: {name} must be an integer >= {minimum}, got {value!r}')
    return value


def _patterns(owner: str, name: str, value) -> List[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError(f'{owner}: {name} must be a glob string or a list of them, got {value!r}')


def _branches(owner: str, method: str, branches) -> Optional[List[Tuple[int, int]]]:
    if method != 'reparam':
        return [tuple(b) for b in branches] if branches else None
    if not branches or not all(
            isinstance(b, (list, tuple)) and len(b) == 2 and
            all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in b)
            for b in branches):
        raise ValueError(f"{owner}: method='reparam' needs branches, a list of (kh, kw) kernel "
                         f'shapes, e.g. [(3, 3), (1, 3), (3, 1)]; got {branches!r}')
    return [tuple(b) for b in branches]


@dataclass
class SGSOptions:
    """Validated SGS arguments (see :class:`~sgs_mm.sgs.SpatialGradScaler`).

    Raises ``ValueError`` naming the argument, prefixed by ``owner`` (the
    class the user configured), as soon as it is constructed.
    """
    method: str = 'nmi'
    k: float = 5.0
    diag_removal: bool = False
    respect_dilation: bool = True
    mode: str = 'grad'
    include: Union[str, Sequence[str], None] = None
    exclude: Union[str, Sequence[str], None] = None
    alpha: Optional[float] = None
    beta: Optional[float] = None
    branches: Optional[Sequence[Tuple[int, int]]] = None
    normalize: bool = True
    max_chunk_elems: Optional[int] = None
    owner: str = field(default='SpatialGradScaler', repr=False, compare=False)

    def __post_init__(self):
        owner = self.owner
        if self.method not in METHODS:
            raise ValueError(f'{owner}: method must be one of {METHODS}, got {self.method!r}')
        if self.mode not in MODES:
            raise ValueError(f'{owner}: mode must be one of {MODES}, got {self.mode!r}')
        if not is_positive_number(self.k):
            raise ValueError(f'{owner}: k must be a number > 0, got {self.k!r}')
        if self.diag_removal and self.method != 'nmi':
            raise ValueError(f"{owner}: diag_removal applies to method='nmi' only, got "
                             f'method={self.method!r}')
        if self.max_chunk_elems is not None:
            positive_int(owner, 'max_chunk_elems', self.max_chunk_elems)
        if self.method == 'fixed':
            for name in ('alpha', 'beta'):
                if not is_positive_number(getattr(self, name)):
                    raise ValueError(f"{owner}: method='fixed' needs {name} > 0, got "
                                     f'{getattr(self, name)!r}')
        self.k = float(self.k)
        self.diag_removal = bool(self.diag_removal)
        self.respect_dilation = bool(self.respect_dilation)
        self.normalize = bool(self.normalize)
        self.include = _patterns(owner, 'include', self.include)
        self.exclude = _patterns(owner, 'exclude', self.exclude)
        self.branches = _branches(owner, self.method, self.branches)

    @property
    def dynamic(self) -> bool:
        """G is re-estimated from the data (``nmi``, ``autocorr``)."""
        return self.method in DYNAMIC_METHODS

    def static_scaling(self) -> Optional[torch.Tensor]:
        """The 3x3 G of ``method='fixed'`` (None for other methods)."""
        return fixed_scaling(self.alpha, self.beta) if self.method == 'fixed' else None

    def g_config(self) -> dict:
        """The arguments that define G, as plain JSON-able values."""
        values = asdict(self)
        out = {name: values[name] for name in G_DEFINING}
        out['branches'] = [list(b) for b in self.branches] if self.branches else None
        return out
