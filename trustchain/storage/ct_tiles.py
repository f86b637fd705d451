"""The static-ct-api files of one log, written to a directory any web server can serve.

::

    <dir>/checkpoint                 replaced atomically after each new head
    <dir>/tile/<L>/<N>[.p/<W>]       Merkle tiles, written once
    <dir>/tile/data/<N>[.p/<W>]      data tiles, written once
    <dir>/issuer/<sha256 hex>        issuers, written once

Partial tiles of an index are deleted once its full tile is written (the
spec allows it, and at one entry per head they would otherwise add up).
Tiles and issuers go first and the checkpoint last, so a reader never sees
a checkpoint whose tiles are missing; every file is written to a temporary
name and renamed.  The files are public (0644, directories 0755): they hold
nothing the HTTP API does not already serve.
"""

from __future__ import annotations

import os
from pathlib import Path

from trustchain.ct import tiles
from trustchain.ct.log import Log

PUBLIC_FILE = 0o644
PUBLIC_DIR = 0o755


def _write(path: Path, data: bytes, *, replace: bool) -> bool:
    """Write ``data`` atomically; an existing immutable file is left alone."""
    if not replace and path.exists():
        return False
    path.parent.mkdir(mode=PUBLIC_DIR, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, PUBLIC_FILE)
    os.replace(tmp, path)
    return True


def _remove_tree(directory: Path) -> None:
    if not directory.is_dir():
        return
    for child in directory.iterdir():
        child.unlink()
    directory.rmdir()


class TileDirectory:
    def __init__(self, root: Path, log: Log) -> None:
        self.root = root
        self.log = log
        self._written_size = 0
        self._issuers: set[bytes] = set()

    def publish(self) -> int:
        """Bring the directory up to the log's signed head; return files written."""
        size = self.log.tree_size
        written = 0
        level = 0
        while level <= tiles.MAX_LEVEL and size >> (8 * level):
            covered = size >> (8 * level)
            first = (self._written_size >> (8 * level)) // tiles.TILE_WIDTH
            names = ["data", "0"] if level == 0 else [str(level)]
            for index in range(first, covered // tiles.TILE_WIDTH + 1):
                width = min(tiles.TILE_WIDTH, covered - index * tiles.TILE_WIDTH)
                if width <= 0:
                    continue
                suffix = tiles.format_index(index) + ("" if width == tiles.TILE_WIDTH
                                                      else f".p/{width}")
                for name in names:
                    path = f"{name}/{suffix}"
                    target = self.root / "tile" / path
                    if not target.exists():
                        written += _write(target, self.log.tile(path), replace=False)
                    if width == tiles.TILE_WIDTH:  # partials are only for before the full tile
                        _remove_tree(target.with_name(target.name + ".p"))
            level += 1
        for fingerprint, der in self.log.issuers().items():
            if fingerprint not in self._issuers:
                written += _write(self.root / "issuer" / fingerprint.hex(), der, replace=False)
                self._issuers.add(fingerprint)
        _write(self.root / "checkpoint", self.log.checkpoint().encode(), replace=True)
        self._written_size = size
        return written + 1
