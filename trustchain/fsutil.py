"""Private, crash-safe files in the data directory.

Every file TrustChain writes under a data directory is created ``0600`` and
every directory ``0700``.  Writes are atomic: a temporary file in the same
directory is written, flushed to disk, renamed over the target, and the
directory itself is synced, so a crash leaves either the old or the new
content, never a torn file.
"""

from __future__ import annotations

import os
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) if needed and make it ``0700``."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path, DIR_MODE)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_private_file(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    """Atomically write ``data`` to ``path`` with mode ``0600``.

    :param exclusive: refuse (``FileExistsError``) if ``path`` already exists.
    """
    if exclusive and path.exists():
        raise FileExistsError(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            # link() fails if the target appeared meanwhile; rename() would not.
            os.link(tmp, path)
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
