"""The witness's SQLite state: compare-and-swap, durability, and no second root per size."""

from __future__ import annotations

import base64
import hashlib
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import REPO
from trustchain.ct import merkle, note
from trustchain.ct.note import Checkpoint, CosignatureV1Signer, Ed25519Signer
from trustchain.ct.witness import LogState, Witness
from trustchain.errors import StorageError
from trustchain.storage.database import Database
from trustchain.storage.migrations import current_version, migrate
from trustchain.storage.witness import WITNESS_SCHEMA, WitnessStore

H1, H2, H3 = (hashlib.sha256(bytes([i])).digest() for i in range(3))


def open_store(path: Path) -> tuple[Database, WitnessStore]:
    db = Database(path / "node.db")
    migrate(db, WITNESS_SCHEMA)
    return db, WitnessStore(db)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[WitnessStore]:
    db, store = open_store(tmp_path)
    yield store
    db.close()


def test_schema_applies_once(tmp_path: Path) -> None:
    with Database(tmp_path / "node.db") as db:
        assert migrate(db, WITNESS_SCHEMA) == 1
        assert migrate(db, WITNESS_SCHEMA) == 0
        assert current_version(db, "witness") == 1


def test_first_sight_then_growth(store: WitnessStore) -> None:
    assert store.get("log") is None
    assert store.compare_and_swap("log", 0, 5, H1)
    assert store.get("log") == LogState(5, H1)
    assert store.compare_and_swap("log", 5, 9, H2)
    assert store.get("log") == LogState(9, H2)
    assert store.compare_and_swap("log", 9, 9, H2)  # a re-cosign of the same checkpoint
    assert store.get("other") is None


def test_a_second_swap_from_the_same_old_size_loses(store: WitnessStore) -> None:
    assert store.compare_and_swap("log", 0, 5, H1)
    assert not store.compare_and_swap("log", 0, 7, H2)  # first sight, raced
    assert store.compare_and_swap("log", 5, 9, H2)
    assert not store.compare_and_swap("log", 5, 12, H3)  # growth, raced
    assert store.get("log") == LogState(9, H2)


def test_one_size_never_gets_a_second_hash(store: WitnessStore) -> None:
    assert store.compare_and_swap("log", 0, 5, H1)
    assert not store.compare_and_swap("log", 5, 5, H2)
    assert store.get("log") == LogState(5, H1)
    with pytest.raises(ValueError):
        store.compare_and_swap("log", 5, 4, H2)  # never backwards
    with pytest.raises(ValueError):
        store.compare_and_swap("log", 5, 6, H2[:31])


def test_the_empty_tree_then_growth(store: WitnessStore) -> None:
    assert store.compare_and_swap("log", 0, 0, merkle.EMPTY_ROOT)
    assert store.compare_and_swap("log", 0, 3, H1)  # old size 0, an existing row
    assert not store.compare_and_swap("log", 0, 4, H2)
    assert store.get("log") == LogState(3, H1)


def test_the_trigger_refuses_a_rollback_behind_the_stores_back(store: WitnessStore) -> None:
    assert store.compare_and_swap("log", 0, 5, H1)
    for sql, args in [("UPDATE witness_logs SET tree_size = 4", ()),
                      ("UPDATE witness_logs SET tree_hash = ?", (H2,))]:
        with pytest.raises(sqlite3.IntegrityError, match="never rolled back"):
            store.db.conn.execute(sql, args)
    assert store.get("log") == LogState(5, H1)


def test_a_swap_refuses_to_run_inside_an_open_transaction(store: WitnessStore) -> None:
    store.db.conn.execute("BEGIN")
    try:
        with pytest.raises(StorageError, match="no transaction"):
            store.compare_and_swap("log", 0, 1, H1)
    finally:
        store.db.conn.execute("ROLLBACK")


#: Swap in a fresh process that then dies at once: no close, no WAL checkpoint, no reply.
_SWAP_AND_DIE = """
import os, sys
from pathlib import Path
from trustchain.storage.database import Database
from trustchain.storage.migrations import migrate
from trustchain.storage.witness import WITNESS_SCHEMA, WitnessStore
path, origin, old, new, digest = sys.argv[1:]
db = Database(Path(path))
migrate(db, WITNESS_SCHEMA)
won = WitnessStore(db).compare_and_swap(origin, int(old), int(new), bytes.fromhex(digest))
os._exit(0 if won else 3)
"""


def swap_and_die(tmp_path: Path, origin: str, old: int, new: int, digest: bytes) -> bool:
    done = subprocess.run([sys.executable, "-c", _SWAP_AND_DIE, str(tmp_path / "node.db"), origin,
                           str(old), str(new), digest.hex()], cwd=REPO, timeout=60, check=False)
    assert done.returncode in (0, 3)
    return done.returncode == 0


def test_state_survives_a_process_that_dies_after_the_swap(tmp_path: Path) -> None:
    assert swap_and_die(tmp_path, "log", 0, 5, H1)
    assert (tmp_path / "node.db-wal").stat().st_size > 0  # still only in the WAL
    db, store = open_store(tmp_path)
    assert store.get("log") == LogState(5, H1)
    assert not store.compare_and_swap("log", 0, 5, H2)
    db.close()


@pytest.mark.parametrize("old_size", [0, 5])
def test_racing_writers_on_separate_connections_one_wins(tmp_path: Path, old_size: int) -> None:
    db, store = open_store(tmp_path)
    if old_size:
        assert store.compare_and_swap("log", 0, old_size, H1)
    db.close()
    writers = 6
    barrier = threading.Barrier(writers)
    results: list[bool] = []
    lock = threading.Lock()

    def race(i: int) -> None:
        db, store = open_store(tmp_path)
        try:
            barrier.wait()
            won = store.compare_and_swap("log", old_size, old_size + 1 + i,
                                         hashlib.sha256(bytes([i, 9])).digest())
            with lock:
                results.append(won)
        finally:
            db.close()

    threads = [threading.Thread(target=race, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * (writers - 1) + [True]


# --- the store behind the witness core ---------------------------------------------

ORIGIN = "example.com/log"
LOG_KEY = Ed25519Signer.from_seed(ORIGIN, bytes([1]) * 32)
W1 = CosignatureV1Signer.from_seed("witness.example/w1", bytes([3]) * 32)
LEAVES = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(20)]
FORK = [merkle.leaf_hash(b"fork")] + LEAVES[1:]


def request(old: int, leaves: list[bytes], size: int) -> bytes:
    cp = Checkpoint(ORIGIN, size, merkle.root(leaves[:size]))
    proof = "".join(base64.b64encode(p).decode() + "\n"
                    for p in merkle.consistency_proof(old, leaves[:size]))
    return f"old {old}\n{proof}\n{note.sign_note(cp.text(), [LOG_KEY])}".encode()


def test_a_witness_that_stored_but_died_before_replying_never_cosigns_a_fork(tmp_path: Path) -> None:
    witness = Witness({ORIGIN: [LOG_KEY.verifier()]}, [W1])
    db, store = open_store(tmp_path)
    first = witness.add_checkpoint(request(0, LEAVES, 3), store.get, 1000)
    assert first.status == 200 and first.update is not None
    assert store.compare_and_swap(first.update.origin, first.update.old_size,
                                  first.update.new_size, first.update.new_hash)
    answer = witness.add_checkpoint(request(3, LEAVES, 8), store.get, 1001)
    assert answer.status == 200 and answer.update is not None
    db.close()
    # Another process persists the update and dies: the cosignature for size 8 is never sent.
    update = answer.update
    assert swap_and_die(tmp_path, update.origin, update.old_size, update.new_size, update.new_hash)

    db, store = open_store(tmp_path)
    # The log (or a fork of it) retries from what it believes is the last cosigned size.
    retry = witness.add_checkpoint(request(3, FORK, 8), store.get, 1002)
    assert (retry.status, retry.body) == (409, b"8\n")
    # Told the size, it asks for a different root at size 8.
    fork = witness.add_checkpoint(request(8, FORK, 8), store.get, 1003)
    assert fork.status == 422 and fork.update is None
    # Even a caller that skips the core's check cannot store it.
    assert not store.compare_and_swap(ORIGIN, 8, 8, merkle.root(FORK[:8]))
    # The honest checkpoint at size 8 is cosigned again.
    honest = witness.add_checkpoint(request(8, LEAVES, 8), store.get, 1004)
    assert honest.status == 200 and honest.update is not None
    assert store.compare_and_swap(honest.update.origin, honest.update.old_size,
                                  honest.update.new_size, honest.update.new_hash)
    db.close()


def test_a_lost_race_is_caught_before_the_reply(tmp_path: Path) -> None:
    """Two requests decided on the same state: only the one whose swap wins may reply."""
    witness = Witness({ORIGIN: [LOG_KEY.verifier()]}, [W1])
    db, store = open_store(tmp_path)
    a = witness.add_checkpoint(request(0, LEAVES, 10), store.get, 1000)
    b = witness.add_checkpoint(request(0, LEAVES, 4), store.get, 1000)
    assert a.update is not None and b.update is not None
    assert store.compare_and_swap(a.update.origin, a.update.old_size, a.update.new_size,
                                  a.update.new_hash)
    # B lost: it must not send its cosignature (that would roll the witness back to 4).
    assert not store.compare_and_swap(b.update.origin, b.update.old_size, b.update.new_size,
                                      b.update.new_hash)
    again = witness.add_checkpoint(request(0, LEAVES, 4), store.get, 1001)
    assert (again.status, again.body) == (409, b"10\n")
    db.close()
