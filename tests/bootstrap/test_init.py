from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bootstrap.genesis import genesis_pin, verify_genesis
from bootstrap.init import (
    CONSENSUS_ED25519_PURPOSE,
    CONSENSUS_ML_DSA_PURPOSE,
    ROOT_KEY_PURPOSE,
    InitResult,
    init_node,
)
from tests.support import PASSPHRASE, assert_no_plaintext_private_keys
from trustchain.datadir import DataDir
from trustchain.errors import AlreadyInitialisedError, DataDirLockedError
from trustchain.keystore import KeyStore, KeyType
from trustchain.storage.database import open_database
from trustchain.storage.node import NodeStore


def test_layout_and_permissions(node: InitResult, data_dir: Path) -> None:
    assert sorted(p.name for p in data_dir.iterdir()) == [
        "genesis.json", "keys", "node.db", "trustchain.toml",
    ]
    for path in [data_dir, *data_dir.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path


def test_genesis_matches_keys_and_database(node: InitResult, data_dir: Path) -> None:
    data = (data_dir / "genesis.json").read_bytes()
    assert genesis_pin(data) == node.pin
    document = verify_genesis(data, node.pin)
    keystore = KeyStore.open(data_dir / "keys", PASSPHRASE)
    root = keystore.active(ROOT_KEY_PURPOSE)
    assert root.type is KeyType.ECDSA_P384
    assert document.root_certificate.public_key() == root.load_public_key()
    assert keystore.active(CONSENSUS_ED25519_PURPOSE).id == node.node_id
    assert keystore.active(CONSENSUS_ML_DSA_PURPOSE).type is KeyType.ML_DSA_65
    assert [v.node_id for v in document.body.validators] == [node.node_id]
    with open_database(data_dir, readonly=True) as db:
        identity = NodeStore(db).identity()
    assert identity is not None
    assert (identity.genesis_sha256, identity.node_id, identity.origin) == (
        node.pin, node.node_id, "trust.example.net.",
    )


def test_no_plaintext_private_keys_after_init(node: InitResult, data_dir: Path) -> None:
    assert_no_plaintext_private_keys(data_dir)


def test_second_init_refused(node: InitResult, data_dir: Path) -> None:
    with pytest.raises(AlreadyInitialisedError):
        init_node(data_dir, PASSPHRASE, network_name="x", origin="x.example.",
                  now=datetime.now(UTC))


def test_init_while_locked_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with DataDir(data_dir).lock(), pytest.raises(DataDirLockedError):
        init_node(data_dir, PASSPHRASE, network_name="x", origin="x.example.",
                  now=datetime.now(UTC))
    assert os.listdir(data_dir) == []


def test_interrupted_init_leaves_no_node_and_can_be_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"
    import bootstrap.init as init_module

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # as if the process died while signing

    monkeypatch.setattr(init_module, "create_genesis", crash)
    with pytest.raises(KeyboardInterrupt):
        init_node(data_dir, PASSPHRASE, network_name="x", origin="x.example.", now=datetime.now(UTC))
    assert not DataDir(data_dir).is_initialised()
    assert sorted(os.listdir(data_dir)) == [".init.tmp"]
    monkeypatch.undo()
    result = init_node(data_dir, PASSPHRASE, network_name="x", origin="x.example",
                       now=datetime.now(UTC))
    assert result.genesis.body.origin == "x.example."
    assert not (data_dir / ".init.tmp").exists()


def test_existing_config_file_is_kept(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "trustchain.toml").write_text("http_port = 9999\n")
    (data_dir / "trustchain.toml").chmod(0o644)
    init_node(data_dir, PASSPHRASE, network_name="x", origin="x.example.", now=datetime.now(UTC))
    assert (data_dir / "trustchain.toml").read_text() == "http_port = 9999\n"
    assert stat.S_IMODE((data_dir / "trustchain.toml").stat().st_mode) == 0o600  # as every file


def test_p256_root_option(tmp_path: Path) -> None:
    result = init_node(tmp_path / "d", PASSPHRASE, network_name="x", origin="x.example.",
                       now=datetime.now(UTC), root_key_type=KeyType.ECDSA_P256)
    assert result.genesis.signatures[0].algorithm == "ecdsa-p256-sha256"
