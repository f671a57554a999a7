"""Atomic file writes: a reader (or a resumed run) sees the old file or the new
one, complete, never a half-written one.

Every writer goes the same way: write to a temporary file in the destination's
folder (same file system, so the rename is atomic), flush and ``fsync`` it,
``os.replace`` it over the destination, then ``fsync`` the folder (so the
rename itself survives a power loss where the file system allows it). A
failure or a kill at any moment leaves the previous file untouched; the
temporary file is removed on any error the process survives (``BaseException``
included: ``KeyboardInterrupt``, ``SystemExit`` from a SIGTERM handler).

Torch only for :func:`atomic_torch_save`; the rest is the standard library.
"""
import contextlib
import json
import os
import tempfile
from typing import Any, BinaryIO, Callable, Iterator, TextIO, Union


def _fsync_dir(folder: str) -> None:
    """Make a rename in ``folder`` durable (best effort: not every OS or file
    system lets a folder be opened or synced)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: Union[str, os.PathLike], mode: str = 'w',
                encoding: str = 'utf-8') -> Iterator[Union[TextIO, BinaryIO]]:
    """Open a temporary file next to ``path``; on a clean exit of the block it
    is flushed, synced and renamed over ``path``.

    Args:
        path: the destination file (its folder must exist).
        mode: ``'w'`` (text) or ``'wb'`` (binary).
        encoding: text encoding (text mode only).

    Yields:
        The open temporary file.

    Raises:
        ValueError: ``mode`` is not ``'w'`` or ``'wb'``.
        OSError: the write, sync or rename failed; ``path`` is unchanged.
    """
    if mode not in ('w', 'wb'):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', got {mode!r}")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f'.{os.path.basename(path)}.', suffix='.tmp',
                               dir=folder)
    try:
        with os.fdopen(fd, mode, **({} if 'b' in mode else {'encoding': encoding})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file 0600; give it the mode a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)


def atomic_write_text(path: Union[str, os.PathLike], text: str,
                      encoding: str = 'utf-8') -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_open`).

    Args:
        path: the destination file.
        text: its whole new content.
        encoding: text encoding.
    """
    with atomic_open(path, 'w', encoding) as f:
        f.write(text)


def atomic_write_bytes(path: Union[str, os.PathLike], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`).

    Args:
        path: the destination file.
        data: its whole new content.
    """
    with atomic_open(path, 'wb') as f:
        f.write(data)


def atomic_write_json(path: Union[str, os.PathLike], obj: Any, **dump_kwargs) -> None:
    """``json.dump(obj)`` to ``path`` atomically (see :func:`atomic_open`).

    Args:
        path: the destination file.
        obj: what to serialize (serialized completely before the file is
            touched, so a value JSON cannot hold leaves ``path`` as it was).
        **dump_kwargs: passed to ``json.dumps`` (``indent=1``, ``default=``...).
    """
    atomic_write_text(path, json.dumps(obj, **dump_kwargs))


def atomic_write_with(path: Union[str, os.PathLike], write: Callable[[BinaryIO], Any]) -> None:
    """Call ``write(f)`` with a binary temporary file, then replace ``path``
    with it atomically (for writers that take a file object).

    Args:
        path: the destination file.
        write: fills the open binary file.
    """
    with atomic_open(path, 'wb') as f:
        write(f)


def atomic_torch_save(obj: Any, path: Union[str, os.PathLike], **save_kwargs) -> None:
    """``torch.save(obj, path)``, atomically: a kill during the write leaves
    the previous checkpoint at ``path`` complete.

    Args:
        obj: what to save (a checkpoint dict).
        path: the destination file.
        **save_kwargs: passed to ``torch.save``.
    """
    import torch
    atomic_write_with(path, lambda f: torch.save(obj, f, **save_kwargs))
