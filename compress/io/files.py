"""The one atomic write and the one safe load that every file the library writes or reads goes through.

* :func:`atomic_write`: the bytes go to a hidden temporary file in the target's folder, are flushed to disk and
  renamed over the target, so a crash mid-write never leaves a truncated file under the real name. Temporary
  files that a killed process left behind for the same target are removed by the next write (one that another
  process is still writing is not: a writer holds a lock on its temporary file until the rename).
* :func:`safe_torch_load`: ``torch.load(weights_only=True)`` onto the CPU, so no code in a file can run; every
  failure is a :class:`~compress.errors.CheckpointError` naming the file.

Example:
    >>> import os, tempfile, torch
    >>> folder = tempfile.mkdtemp()
    >>> path = os.path.join(folder, "w.pt")
    >>> with atomic_write(path) as f:
    ...     torch.save({"w": torch.ones(2)}, f)
    >>> safe_torch_load(path)["w"].tolist()
    [1.0, 1.0]
    >>> os.listdir(folder)
    ['w.pt']
"""
from __future__ import annotations

import contextlib
import glob
import os
import pickle
import re
import tempfile
from typing import IO, Any, Iterator, Sequence, Union

import torch

from compress.errors import CheckpointError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["atomic_write", "safe_torch_load", "temporary_prefix"]


def temporary_prefix(path: PathLike) -> str:
    """The name prefix of :func:`atomic_write`'s temporary files for ``path`` (hidden, in the same folder)."""
    return "." + os.path.basename(os.fspath(path)) + "."


def _lock(fd: int, blocking: bool) -> bool:
    """An exclusive ``flock`` on ``fd``: whether it was taken (always, where the platform has no ``fcntl``)."""
    if fcntl is None:  # pragma: no cover - not POSIX: a temporary is taken as stale once its writer is gone
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except OSError:
        return False
    return True


def _remove_stale_temporaries(path: str) -> None:
    # A process killed between mkstemp and os.replace leaves its temporary file. A writer holds a lock on its
    # temporary until the rename (the kernel drops it when the process dies), so a locked one is another
    # writer's save in progress and is left alone.
    folder = os.path.dirname(os.path.abspath(path))
    for stale in glob.glob(os.path.join(glob.escape(folder), glob.escape(temporary_prefix(path)) + "*.tmp")):
        with contextlib.suppress(OSError):
            fd = os.open(stale, os.O_RDONLY)
            try:
                if _lock(fd, blocking=False):
                    os.unlink(stale)
            finally:
                os.close(fd)


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "wb", encoding: str = "utf-8") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; on success rename it over ``path``.

    Args:
        path: the target file.
        mode: ``'wb'`` (binary) or ``'w'`` (text).
        encoding: the text encoding for ``'w'``.

    Raises:
        ValueError: a mode other than ``'wb'`` or ``'w'``.
        OSError: the folder cannot be written; the target is left as it was.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write writes new files: mode must be 'wb' or 'w', got {mode!r}")
    path = os.fspath(path)
    _remove_stale_temporaries(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=temporary_prefix(path), suffix=".tmp")
    held = os.dup(fd)  # keeps the lock until the rename, after the file object is closed
    try:
        _lock(held, blocking=True)
        with os.fdopen(fd, mode, **({} if mode == "wb" else {"encoding": encoding, "newline": ""})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    finally:
        os.close(held)


def safe_torch_load(path: PathLike, what: str = "file", allowed_globals: Sequence[Any] = ()) -> Any:
    """``torch.load(path, map_location='cpu', weights_only=True)`` with every failure as a ``CheckpointError``.

    Args:
        path: the file.
        what: what the file should be, for messages (``'checkpoint'``, ``'quantized model'``).
        allowed_globals: classes the file may name besides tensors and plain data, allowed for this one load
            only (``torch.serialization.safe_globals``; PyTorch >= 2.5, earlier versions refuse them).

    Raises:
        CheckpointError: missing, empty, truncated, not a PyTorch file, or holding objects other than tensors
            and plain data (which are never unpickled).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such {what}")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{path}: empty file, not a {what}")
    scope = getattr(torch.serialization, "safe_globals", None)
    allowed = scope(list(allowed_globals)) if allowed_globals and scope is not None else contextlib.nullcontext()
    try:
        with allowed:
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        named = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        reason = f"it names {named.group(1)}" if named else str(exc).splitlines()[0]
        raise CheckpointError(f"{path}: holds objects other than tensors and plain data; refusing to unpickle "
                              f"it ({reason})") from None
    except Exception as exc:  # torch.load's failures on damaged files are of many types (IndexError, KeyError, ...)
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{path}: truncated or not a PyTorch {what} ({type(exc).__name__}: {first})") from None
