"""Tables owned by the consensus: this validator's own signed messages, and committed blocks.

Contract (every write is one transaction, committed with ``synchronous=FULL``
before the call returns, so what a call stored survives a crash or power cut
the moment it returns):

* ``record_own`` stores a message this validator signed, with the block a
  non-nil vote is for when known.  The node calls it *before* sending the
  message, so every signature anyone can hold is on disk, and the
  :class:`~trustchain.consensus.signer.SigningGuard` and
  :meth:`~trustchain.consensus.tendermint.Tendermint.restore` rebuilt from
  ``own_messages``/``own_blocks`` after a restart never contradict it.
  Recording the same message again does nothing; a *different* one for the
  same height, round and kind raises :class:`~trustchain.errors.DoubleSignError`.
* ``add_block`` stores a committed block with its commit certificate (round,
  Ed25519 and ML-DSA signatures) and the wall-clock time of commit the
  caller passes.  The same block again does nothing; a different block at a
  stored height, or one that does not link to a stored neighbour, raises
  :class:`~trustchain.errors.ForkError`: a fork is never stored silently.
  A node stores a decided block before any message of the next height.

Messages and blocks are kept in their wire form (:mod:`trustchain.consensus.codec`).
"""

from __future__ import annotations

import json
from typing import Any

from trustchain.consensus.codec import (
    decode_bare_block,
    decode_message,
    encode_bare_block,
    encode_message,
)
from trustchain.consensus.messages import NIL, Block, Decision, Proposal, Signed, Vote
from trustchain.consensus.signer import STEPS, kind_of
from trustchain.errors import (
    ConsensusCodecError,
    DoubleSignError,
    ForkError,
    StorageError,
)
from trustchain.storage.database import Database
from trustchain.storage.migrations import Migration, Schema

CONSENSUS_SCHEMA = Schema(
    "consensus",
    (
        Migration(
            1,
            "own signed messages, their blocks, committed blocks",
            """
            CREATE TABLE consensus_own_messages (
                height INTEGER NOT NULL CHECK (height >= 0),
                round INTEGER NOT NULL CHECK (round >= 0),
                kind TEXT NOT NULL CHECK (kind IN ('proposal', 'prevote', 'precommit')),
                step INTEGER NOT NULL,
                message BLOB NOT NULL,
                PRIMARY KEY (height, round, kind)
            ) STRICT;
            CREATE TABLE consensus_own_blocks (
                height INTEGER NOT NULL,
                hash BLOB NOT NULL,
                block BLOB NOT NULL,
                PRIMARY KEY (height, hash)
            ) STRICT;
            CREATE TABLE consensus_blocks (
                height INTEGER PRIMARY KEY CHECK (height >= 0),
                hash BLOB NOT NULL UNIQUE,
                previous BLOB NOT NULL,
                round INTEGER NOT NULL CHECK (round >= 0),
                block BLOB NOT NULL,
                signatures TEXT NOT NULL,
                pq_signatures TEXT NOT NULL,
                sender TEXT NOT NULL,
                committed_at TEXT NOT NULL
            ) STRICT;
            """,
        ),
    ),
)


def _own(data: bytes) -> Signed:
    try:
        message = decode_message(data)
    except ConsensusCodecError as exc:
        raise StorageError(f"a stored consensus message is damaged: {exc}") from None
    if not isinstance(message, Vote | Proposal):
        raise StorageError("a stored own message is not a vote or proposal")
    return message


def _pairs(text: str) -> tuple[tuple[str, bytes], ...]:
    return tuple((node, bytes.fromhex(sig)) for node, sig in json.loads(text))


def _pairs_json(pairs: tuple[tuple[str, bytes], ...]) -> str:
    return json.dumps([[node, sig.hex()] for node, sig in pairs])


class ConsensusStore:
    """The consensus tables of one node database (see the module docstring for what is
    durable when)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # --- own messages --------------------------------------------------------------

    def record_own(self, message: Signed, block: Block | None = None) -> None:
        """Store a message this validator signed (before it is sent).

        ``block`` is the block a non-nil vote is for, when known; a proposal's
        own block is stored with it.

        :raises DoubleSignError: if a different message of this height, round and
            kind is stored.
        :raises ValueError: if ``block`` is not the block the message is for, or the
            message is not signed (it could not be read back).
        """
        blocks: list[Block] = []
        if isinstance(message, Proposal):
            blocks.append(message.block)
        if block is not None:
            target = message.block.hash if isinstance(message, Proposal) else message.block
            if target == NIL or block.hash != target or block.height != message.height:
                raise ValueError("the block is not the one the message is for")
            blocks.append(block)
        kind = kind_of(message)
        encoded = encode_message(message)
        try:  # never store what could not be read back after a restart
            decode_message(encoded)
        except ConsensusCodecError as exc:
            raise ValueError(f"not a signed message this node could restore: {exc}") from None
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT message FROM consensus_own_messages WHERE height = ? AND round = ? "
                "AND kind = ?", (message.height, message.round, kind)).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO consensus_own_messages (height, round, kind, step, message) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (message.height, message.round, kind, STEPS[kind], encoded))
            elif _own(row[0]) != message:
                raise DoubleSignError(
                    f"a different {kind} for height {message.height}, round {message.round} "
                    "is already stored")
            conn.executemany(
                "INSERT INTO consensus_own_blocks (height, hash, block) VALUES (?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                [(b.height, b.hash, encode_bare_block(b)) for b in blocks])

    def own_messages(self, height: int) -> list[Signed]:
        """This validator's messages of ``height``, in the order they were signed."""
        rows = self.db.conn.execute(
            "SELECT message FROM consensus_own_messages WHERE height = ? ORDER BY round, step",
            (height,)).fetchall()
        return [_own(row[0]) for row in rows]

    def own_blocks(self, height: int) -> dict[bytes, Block]:
        """The blocks of ``height`` that this validator proposed or voted for, by hash."""
        rows = self.db.conn.execute(
            "SELECT hash, block FROM consensus_own_blocks WHERE height = ?", (height,)).fetchall()
        return {bytes(h): self._block(data) for h, data in rows}

    def all_own_messages(self) -> list[Signed]:
        """Every stored own message, by height, round and step (for test harnesses)."""
        rows = self.db.conn.execute(
            "SELECT message FROM consensus_own_messages ORDER BY height, round, step").fetchall()
        return [_own(row[0]) for row in rows]

    def prune_own(self, below_height: int) -> None:
        """Forget own messages and blocks of heights below ``below_height`` (decided ones:
        the guard never signs at a height below one it has signed at)."""
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM consensus_own_messages WHERE height < ?", (below_height,))
            conn.execute("DELETE FROM consensus_own_blocks WHERE height < ?", (below_height,))

    # --- committed blocks ---------------------------------------------------------

    def add_block(self, decision: Decision, committed_at: str) -> None:
        """Store a committed block with its commit certificate and time of commit.

        :raises ForkError: if another block is stored at its height, or a stored
            neighbour does not link to it.
        """
        block = decision.block
        with self.db.transaction() as conn:
            row = conn.execute("SELECT hash FROM consensus_blocks WHERE height = ?",
                               (block.height,)).fetchone()
            if row is not None:
                if bytes(row[0]) != block.hash:
                    raise ForkError(f"a different block is already stored at height "
                                    f"{block.height}")
                return
            parent = conn.execute("SELECT hash FROM consensus_blocks WHERE height = ?",
                                  (block.height - 1,)).fetchone()
            if parent is not None and bytes(parent[0]) != block.previous:
                raise ForkError(f"the block at height {block.height} does not extend the "
                                "stored block before it")
            child = conn.execute("SELECT previous FROM consensus_blocks WHERE height = ?",
                                 (block.height + 1,)).fetchone()
            if child is not None and bytes(child[0]) != block.hash:
                raise ForkError(f"the stored block after height {block.height} does not "
                                "extend this one")
            conn.execute(
                "INSERT INTO consensus_blocks (height, hash, previous, round, block, signatures, "
                "pq_signatures, sender, committed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (block.height, block.hash, block.previous, decision.round,
                 encode_bare_block(block), _pairs_json(decision.signatures),
                 _pairs_json(decision.pq_signatures), decision.sender, committed_at))

    def block(self, height: int) -> Decision | None:
        """The committed block at ``height`` with its certificate, if stored."""
        rows = self._decisions("WHERE height = ?", (height,))
        return rows[0] if rows else None

    def blocks(self, start: int, limit: int) -> list[Decision]:
        """Stored blocks from height ``start`` up, ascending, at most ``limit``."""
        return self._decisions("WHERE height >= ? ORDER BY height LIMIT ?",
                               (start, max(0, limit)))

    def height(self) -> int:
        """The highest stored height (0 when none)."""
        row = self.db.conn.execute("SELECT max(height) FROM consensus_blocks").fetchone()
        return int(row[0]) if row[0] is not None else 0

    def committed_at(self, height: int) -> str | None:
        """The wall-clock time of commit stored with the block at ``height``."""
        row = self.db.conn.execute("SELECT committed_at FROM consensus_blocks WHERE height = ?",
                                   (height,)).fetchone()
        return str(row[0]) if row else None

    def last_block_time(self) -> str | None:
        """The time of commit of the highest stored block (None when none)."""
        row = self.db.conn.execute(
            "SELECT committed_at FROM consensus_blocks ORDER BY height DESC LIMIT 1").fetchone()
        return str(row[0]) if row else None

    def _decisions(self, where: str, args: tuple[Any, ...]) -> list[Decision]:
        rows = self.db.conn.execute(
            "SELECT block, round, signatures, pq_signatures, sender FROM consensus_blocks "
            + where, args).fetchall()
        return [Decision(self._block(block), round_, _pairs(sigs), sender, _pairs(pq))
                for block, round_, sigs, pq, sender in rows]

    @staticmethod
    def _block(data: bytes) -> Block:
        try:
            return decode_bare_block(bytes(data))
        except ConsensusCodecError as exc:
            raise StorageError(f"a stored block is damaged: {exc}") from None
