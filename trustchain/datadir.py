"""The layout of a node's data directory, and the lock that keeps it to one process.

::

    DIR/                  0700
      trustchain.toml     configuration (see trustchain.config)
      genesis.json        the signed genesis document, canonical JSON bytes
      node.db             the node database (SQLite, WAL)
      keys/               the encrypted key store (see trustchain.keystore)
      ct-tiles/<log>/     each CT log's static-ct-api files (public, 0644)

A node is *initialised* when ``genesis.json`` exists: ``trustchain init``
moves it into place last.  The lock is an exclusive ``flock`` on the
directory itself, so taking it writes nothing, and the kernel releases it
when the process dies, so a crash never leaves a stale lock.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from trustchain.config import CONFIG_FILE_NAME
from trustchain.errors import (
    AlreadyInitialisedError,
    DataDirError,
    DataDirLockedError,
    NotInitialisedError,
)
from trustchain.storage.database import DATABASE_FILE_NAME

GENESIS_FILE_NAME = "genesis.json"
KEYS_DIR_NAME = "keys"
CT_TILES_DIR_NAME = "ct-tiles"
STAGING_DIR_NAME = ".init.tmp"


@dataclass(frozen=True)
class DataDir:
    path: Path

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE_NAME

    @property
    def genesis_file(self) -> Path:
        return self.path / GENESIS_FILE_NAME

    @property
    def keys_dir(self) -> Path:
        return self.path / KEYS_DIR_NAME

    @property
    def ct_tiles_dir(self) -> Path:
        return self.path / CT_TILES_DIR_NAME

    @property
    def database_file(self) -> Path:
        return self.path / DATABASE_FILE_NAME

    @property
    def staging_dir(self) -> Path:
        return self.path / STAGING_DIR_NAME

    #: Entries that ``init`` creates, in the order it moves them into place.
    #: (``trustchain.toml`` may be written by the operator before init; init
    #: keeps it and writes the commented default only where there is none.)
    INIT_ENTRIES = (KEYS_DIR_NAME, DATABASE_FILE_NAME, CONFIG_FILE_NAME, GENESIS_FILE_NAME)
    _NODE_ENTRIES = (KEYS_DIR_NAME, DATABASE_FILE_NAME)

    def is_initialised(self) -> bool:
        return self.genesis_file.is_file()

    def require_initialised(self) -> None:
        """:raises NotInitialisedError: with a message naming the directory."""
        if not self.path.exists():
            raise NotInitialisedError(
                f"data directory {self.path} does not exist (create a node with "
                f"`trustchain init --data-dir {self.path}`)"
            )
        if not self.path.is_dir():
            raise DataDirError(f"{self.path} is not a directory")
        if not self.is_initialised():
            raise NotInitialisedError(
                f"{self.path} holds no initialised node (no {GENESIS_FILE_NAME}; "
                f"run `trustchain init --data-dir {self.path}`)"
            )

    def require_uninitialised(self) -> None:
        """:raises AlreadyInitialisedError: if a node, or the debris of a failed init, is here."""
        if self.is_initialised():
            raise AlreadyInitialisedError(f"{self.path} already holds a node")
        leftovers = [name for name in self._NODE_ENTRIES if (self.path / name).exists()]
        if leftovers:
            raise AlreadyInitialisedError(
                f"{self.path} holds {', '.join(leftovers)} but no {GENESIS_FILE_NAME}: "
                "it is not a node this version can use; move those aside and run init again"
            )

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the exclusive lock on the directory for the duration of the block.

        :raises DataDirLockedError: if another process holds it.
        """
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            raise NotInitialisedError(f"data directory {self.path} does not exist") from None
        except OSError as exc:
            raise DataDirError(f"cannot open data directory {self.path}: {exc.strerror}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DataDirLockedError(
                    f"data directory {self.path} is in use by another trustchain process"
                ) from None
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock
