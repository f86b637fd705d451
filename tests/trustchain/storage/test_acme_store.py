"""The ACME store's contract: a nonce is good once, across connections and after a
reopen, and not after it expires; one account per key; a key change to a key in use is
refused."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from trustchain.ca.acme.store import KeyInUse
from trustchain.storage.acme import ACME_SCHEMA, SqliteAcmeStore
from trustchain.storage.database import Database
from trustchain.storage.migrations import migrate

NOW = datetime(2026, 12, 3, tzinfo=UTC)


def open_store(path: Path) -> tuple[Database, SqliteAcmeStore]:
    db = Database(path / "node.db")
    migrate(db, ACME_SCHEMA)
    return db, SqliteAcmeStore(db)


def test_a_nonce_is_good_once_across_connections_and_reopens(tmp_path: Path) -> None:
    db, store = open_store(tmp_path)
    other_db, other = open_store(tmp_path)
    store.add_nonce("n1", 200, 100)
    store.add_nonce("n2", 200, 100)
    store.add_nonce("old", 150, 100)
    assert other.use_nonce("n1", 120) and not store.use_nonce("n1", 120)  # once, anywhere
    assert not store.use_nonce("old", 150)  # expired
    assert not store.use_nonce("never", 120)
    db.close()
    other_db.close()
    db, store = open_store(tmp_path)  # a restart
    assert not store.use_nonce("n1", 121) and store.use_nonce("n2", 121)
    db.close()


def test_one_account_per_key_and_no_key_taken_twice(tmp_path: Path) -> None:
    db, store = open_store(tmp_path)
    first, created = store.create_account("t1", {"kty": "EC"}, ["mailto:a@example.com"],
                                          True, NOW)
    again, created_again = store.create_account("t1", {"kty": "EC"}, [], False, NOW)
    assert created and not created_again and again == first
    second, _ = store.create_account("t2", {"kty": "EC"}, [], False, NOW)
    with pytest.raises(KeyInUse):
        store.change_key(second.id, "t1", {"kty": "EC"})
    assert store.change_key(second.id, "t3", {"kty": "OKP"}).thumbprint == "t3"
    assert store.account_by_key("t2") is None
    assert store.update_account(first.id, status="deactivated").status == "deactivated"
    db.close()
