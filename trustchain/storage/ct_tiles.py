"""The static-ct-api files of one log, written to a directory any web server can serve.

::

    <dir>/checkpoint                 replaced atomically after each new head, and
                                     again once witnesses have cosigned it
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
from dataclasses import dataclass, field
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


@dataclass
class TilePlan:
    """What one publish writes, computed from the log; writing it needs no log access,
    so it can run on another thread while the log goes on (file I/O and fsync)."""

    files: list[tuple[Path, bytes, bool]] = field(default_factory=list)  # path, data, replace
    obsolete: list[Path] = field(default_factory=list)  # partial-tile directories

    def apply(self) -> int:
        """Write tiles and issuers, remove replaced partials, the checkpoint last."""
        written = 0
        for path, data, replace in self.files:
            written += _write(path, data, replace=replace)
        for directory in self.obsolete:
            _remove_tree(directory)
        return written


class TileDirectory:
    def __init__(self, root: Path, log: Log) -> None:
        self.root = root
        self.log = log
        self._written_size = 0
        self._issuers: set[bytes] = set()
        #: The checkpoint the last plan wrote (the log's own signatures only), and the
        #: cosigned one written over it since, if any.
        self._plain = b""
        self._cosigned = b""

    def publish(self) -> int:
        """Bring the directory up to the log's signed head; return files written."""
        return self.plan().apply()

    def plan(self) -> TilePlan:
        """The files that bring the directory up to the log's signed head (checkpoint last).

        If applying it fails, call :meth:`forget` so that the next plan starts over.
        """
        plan = TilePlan()
        size = self.log.tree_size
        level = 0
        while level <= tiles.MAX_LEVEL and size >> (8 * level):
            covered = size >> (8 * level)
            first = (self._written_size >> (8 * level)) // tiles.TILE_WIDTH
            names = ["data", "0"] if level == 0 else [str(level)]
            for index in range(first, covered // tiles.TILE_WIDTH + 1):
                width = min(tiles.TILE_WIDTH, covered - index * tiles.TILE_WIDTH)
                if width <= 0:
                    continue
                suffix = tiles.tile_suffix(index, width)
                for name in names:
                    path = f"{name}/{suffix}"
                    target = self.root / "tile" / path
                    if not target.exists():
                        plan.files.append((target, self.log.tile(path), False))
                    if width == tiles.TILE_WIDTH:  # partials are only for before the full tile
                        plan.obsolete.append(target.with_name(target.name + ".p"))
            level += 1
        for fingerprint, der in self.log.issuers().items():
            if fingerprint not in self._issuers:
                plan.files.append((self.root / "issuer" / fingerprint.hex(), der, False))
                self._issuers.add(fingerprint)
        self._plain = self._cosigned = self.log.checkpoint().encode()
        plan.files.append((self.root / "checkpoint", self._plain, True))
        self._written_size = size
        return plan

    def plan_cosigned(self, text: str) -> TilePlan | None:
        """The checkpoint file again, with cosignatures: ``text`` is the last planned
        checkpoint with cosignature lines added (None if it is another checkpoint, the
        log having moved on, or what the file holds already).  Applied in order after
        the plan that wrote the plain one, so an older cosigned checkpoint never
        replaces a newer one."""
        data = text.encode()
        if not self._plain or not data.startswith(self._plain) or data == self._cosigned:
            return None
        self._cosigned = data
        return TilePlan(files=[(self.root / "checkpoint", data, True)])

    def forget(self) -> None:
        """After a failed write: the next plan rewrites everything not on disk."""
        self._written_size = 0
        self._issuers.clear()
