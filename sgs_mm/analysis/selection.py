"""Choosing layers by glob, or the paper's first / middle / last."""
import fnmatch
from typing import List, Optional, Sequence

from .errors import AnalysisInputError


def select_layers(names: Sequence[str], patterns: Optional[Sequence[str]] = None,
                  what: str = 'layers') -> List[str]:
    """The names matching any glob of ``patterns``, in the order of ``names``.

    Args:
        names: the available layer names (model order).
        patterns: ``fnmatch`` globs (``'backbone.layer4.*'``); ``None`` or
            empty selects all.
        what: how the available names are described in the error.

    Raises:
        AnalysisInputError: a pattern matches no name (the message lists the
            available names).
    """
    names = list(names)
    if not patterns:
        return names
    for p in patterns:
        if not any(fnmatch.fnmatchcase(n, p) for n in names):
            raise AnalysisInputError(
                f'layer pattern {p!r} matches none of the {len(names)} {what}: '
                f'{", ".join(names)}')
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]


def first_middle_last(items: Sequence) -> list:
    """First, middle and last item (fewer when there are fewer than 3).

    The middle is ``items[len // 2]``: of VGG-16's 13 convs the seventh, as
    in the paper's Fig. 4 and 6.
    """
    items = list(items)
    if len(items) <= 3:
        return items
    return [items[0], items[len(items) // 2], items[-1]]


def evenly_spaced(items: Sequence, limit: Optional[int]) -> list:
    """At most ``limit`` items, evenly spaced, always keeping the first and last."""
    items = list(items)
    if limit is None or limit <= 0 or len(items) <= limit:
        return items
    if limit == 1:
        return [items[-1]]
    step = (len(items) - 1) / (limit - 1)
    picked = sorted({round(i * step) for i in range(limit)})
    return [items[i] for i in picked]
