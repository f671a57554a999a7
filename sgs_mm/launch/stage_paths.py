"""Paths in a pipeline's state files: stored relative to the work root, so a
copied or moved work root stays self-contained."""
import os
import os.path as osp
from typing import Optional

__all__ = ['to_root', 'from_root', 'resolve_stored', 'result_path']


def _inside(root: str, path: str) -> bool:
    rel = osp.relpath(osp.abspath(path), osp.abspath(root))
    return rel != '..' and not rel.startswith('..' + os.sep)


def to_root(root: str, path: Optional[str]) -> Optional[str]:
    """``path`` as stored in ``train_done.json`` / ``stage_result.json``:
    relative to the work root when it lies inside it (so a copied or moved
    work root stays self-contained), else absolute."""
    if not path:
        return path
    if _inside(root, path):
        return osp.relpath(osp.abspath(path), osp.abspath(root))
    return osp.abspath(path)


def from_root(root: str, path: Optional[str]) -> Optional[str]:
    """A stored path made usable from the current folder (relative paths
    are relative to the work root)."""
    if not path or osp.isabs(path):
        return path
    return osp.join(root, path)


def resolve_stored(root: str, path: Optional[str], stage_dir: str,
                   what: str, log=None) -> Optional[str]:
    """A checkpoint path read from a stage's state files, resolved inside the
    work root ``root``. Relative paths (this version) are joined to ``root``.
    An absolute path (older versions) outside ``root`` -- a copied or moved
    work root -- is replaced by the file of the same name in ``stage_dir``
    when that exists, and named in the log either way."""
    if not path:
        return path
    if not osp.isabs(path):
        return osp.join(root, path)
    if _inside(root, path):
        return path
    local = osp.join(stage_dir, osp.basename(path))
    say = log or (lambda m: print(m, flush=True))
    if osp.isfile(local):
        say(f'[pipeline] note: {what} was recorded as {path}, outside the '
            f'work root {root} (a copied or moved work root?): using '
            f'{local} instead')
        return local
    say(f'[pipeline] WARNING: {what} {path} lies outside the work root '
        f'{root}')
    return path


def result_path(results: dict, result: dict, key: str) -> Optional[str]:
    """An absolute/cwd-relative path from a results entry (``key`` =
    ``tested_checkpoint``, ``sgs_history``, ...) of ``results`` (as returned
    by :func:`run_pipeline` or read from ``results.json``)."""
    return from_root(results['work_root'], result.get(key))
