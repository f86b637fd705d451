"""``trustchain init``: create a node and a new network's genesis.

Everything is built in a staging directory inside the data directory and
moved into place at the end, ``genesis.json`` last, so an interrupted init
leaves either no node or a whole one (a later init clears the staging
directory and reports any half-moved entries instead of guessing).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bootstrap.genesis import (
    GenesisDocument,
    ProofParameters,
    ValidatorKeys,
    create_genesis,
    genesis_pin,
)
from bootstrap.root import build_root_certificate
from bootstrap.transport_certs import ensure_transport_credentials
from trustchain.config import default_config_text
from trustchain.datadir import DataDir
from trustchain.fsutil import FILE_MODE, ensure_private_dir, fsync_dir, write_private_file
from trustchain.keystore import KdfParams, KeyRecord, KeyStore, KeyType
from trustchain.storage.database import Database
from trustchain.storage.migrations import migrate
from trustchain.storage.node import NODE_SCHEMA, NodeIdentity, NodeStore

#: Key-store purposes of the keys init creates.
ROOT_KEY_PURPOSE = "genesis-root"
CONSENSUS_ED25519_PURPOSE = "consensus-ed25519"
CONSENSUS_ML_DSA_PURPOSE = "consensus-ml-dsa-65"

#: Stake of the founding validator of a single-node network.
DEFAULT_FOUNDER_STAKE = 100


@dataclass(frozen=True)
class InitResult:
    pin: str
    node_id: str
    genesis: GenesisDocument
    keys: list[KeyRecord]


def init_node(
    data_dir: Path,
    passphrase: str,
    *,
    network_name: str,
    origin: str,
    now: datetime,
    root_key_type: KeyType = KeyType.ECDSA_P384,
    parameters: ProofParameters | None = None,
    kdf: KdfParams | None = None,
    progress: Callable[[str], None] = lambda _msg: None,
) -> InitResult:
    """Create a node with a fresh genesis in ``data_dir`` (created if missing).

    :raises AlreadyInitialisedError: if ``data_dir`` already holds a node.
    :raises DataDirLockedError: if another process is using ``data_dir``.
    """
    if root_key_type not in (KeyType.ECDSA_P256, KeyType.ECDSA_P384):
        raise ValueError("the genesis root key must be ECDSA P-256 or P-384")
    origin = origin.lower() if origin.endswith(".") else origin.lower() + "."
    layout = DataDir(data_dir)
    ensure_private_dir(data_dir)
    with layout.lock():
        layout.require_uninitialised()
        staging = DataDir(layout.staging_dir)
        shutil.rmtree(staging.path, ignore_errors=True)  # debris of an interrupted init
        ensure_private_dir(staging.path)

        progress("deriving the key-encryption key from the passphrase (Argon2id)")
        keystore = KeyStore.create(staging.keys_dir, passphrase, kdf)
        progress(f"generating the genesis root key ({root_key_type})")
        root_record = keystore.generate(root_key_type, ROOT_KEY_PURPOSE, now)
        progress("generating the consensus identity (Ed25519 + ML-DSA-65)")
        ed_record = keystore.generate(KeyType.ED25519, CONSENSUS_ED25519_PURPOSE, now)
        ml_record = keystore.generate(KeyType.ML_DSA_65, CONSENSUS_ML_DSA_PURPOSE, now)

        root_key = keystore.private_key(root_record.id)
        founder = ValidatorKeys(
            keystore.private_key(ed_record.id),  # type: ignore[arg-type]
            keystore.private_key(ml_record.id),  # type: ignore[arg-type]
            stake=DEFAULT_FOUNDER_STAKE,
        )
        progress("self-signing the genesis root and signing the genesis document")
        root_cert = build_root_certificate(root_key, network_name, now)  # type: ignore[arg-type]
        genesis = create_genesis(
            network_name=network_name,
            origin=origin,
            root_key=root_key,  # type: ignore[arg-type]
            root_certificate=root_cert,
            validators=[founder],
            parameters=parameters or ProofParameters(),
            now=now,
        )
        genesis_bytes = genesis.to_bytes()
        pin = genesis_pin(genesis_bytes)

        progress("issuing the infrastructure intermediate and transport certificates")
        with Database(staging.database_file) as db:
            migrate(db, NODE_SCHEMA)
            store = NodeStore(db)
            ensure_transport_credentials(
                keystore, store, root=root_cert, root_key_purpose=ROOT_KEY_PURPOSE,
                network=network_name, origin=origin, node_id=founder.node_id, now=now,
            )
            store.set_identity(
                NodeIdentity(
                    genesis_sha256=pin,
                    node_id=founder.node_id,
                    network_name=network_name,
                    origin=origin,
                    initialised_at=now.isoformat(),
                )
            )
        if not layout.config_file.exists():
            write_private_file(staging.config_file, default_config_text().encode())
        else:  # the operator's own file: private like every other (it may name secrets' paths)
            os.chmod(layout.config_file, FILE_MODE)
        write_private_file(staging.genesis_file, genesis_bytes)

        for name in DataDir.INIT_ENTRIES:  # genesis.json last: it marks the node complete
            if (staging.path / name).exists():
                (staging.path / name).rename(data_dir / name)
        fsync_dir(data_dir)
        staging.path.rmdir()
        return InitResult(pin=pin, node_id=founder.node_id, genesis=genesis,
                          keys=keystore.records())
