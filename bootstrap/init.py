"""``trustchain init``: create a node and a new network's genesis.

Everything is built in a staging directory inside the data directory and
moved into place at the end, ``genesis.json`` last, so an interrupted init
leaves either no node or a whole one (a later init clears the staging
directory and reports any half-moved entries instead of guessing).

The steps are separate functions (:func:`stage_node`, :func:`found_network`,
:func:`finish_node`) because a local federation (:mod:`bootstrap.devnet`)
creates several nodes that share one genesis the same way.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from bootstrap.genesis import (
    GenesisDocument,
    ProofParameters,
    ValidatorKeys,
    create_genesis,
    genesis_pin,
)
from bootstrap.root import build_root_certificate
from bootstrap.transport_certs import (
    INFRA_CA_PURPOSE,
    build_intermediate,
    ensure_transport_credentials,
)
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

Progress = Callable[[str], None]


@dataclass(frozen=True)
class InitResult:
    pin: str
    node_id: str
    genesis: GenesisDocument
    keys: list[KeyRecord]


@dataclass(frozen=True)
class StagedNode:
    """A node being created: its key store and consensus keys, still in the staging directory."""

    layout: DataDir
    staging: DataDir
    keystore: KeyStore
    founder: ValidatorKeys


@dataclass(frozen=True)
class Founding:
    """A new network: its genesis and the root key that signs the nodes' intermediates."""

    genesis: GenesisDocument
    genesis_bytes: bytes
    pin: str
    root_key: ec.EllipticCurvePrivateKey

    @property
    def root_certificate(self) -> x509.Certificate:
        return self.genesis.root_certificate


def normalise_origin(origin: str) -> str:
    """Origins are stored lower-case with their trailing dot."""
    return origin.lower() if origin.endswith(".") else origin.lower() + "."


def check_root_key_type(root_key_type: KeyType) -> None:
    """Refuse before anything is written: the genesis root signs with ECDSA only."""
    if root_key_type not in (KeyType.ECDSA_P256, KeyType.ECDSA_P384):
        raise ValueError("the genesis root key must be ECDSA P-256 or P-384")


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
    progress: Progress = lambda _msg: None,
    serve_zones: bool = True,
) -> InitResult:
    """Create a node with a fresh genesis in ``data_dir`` (created if missing);
    ``serve_zones=False`` writes ``serve_federation_zones = false`` into its
    ``trustchain.toml`` (``init --no-zone``).

    :raises AlreadyInitialisedError: if ``data_dir`` already holds a node.
    :raises DataDirLockedError: if another process is using ``data_dir``.
    """
    check_root_key_type(root_key_type)
    layout = DataDir(data_dir)
    ensure_private_dir(data_dir)
    with layout.lock():
        node = stage_node(layout, passphrase, now=now, kdf=kdf, progress=progress)
        founding = found_network(
            node.keystore, [node.founder], network_name=network_name, origin=origin, now=now,
            root_key_type=root_key_type, parameters=parameters, progress=progress,
        )
        config_text = None if serve_zones else default_config_text(
            serve_federation_zones=False)
        finish_node(node, founding, config_text=config_text, now=now, progress=progress)
        return InitResult(pin=founding.pin, node_id=node.founder.node_id,
                          genesis=founding.genesis, keys=node.keystore.records())


def stage_node(
    layout: DataDir, passphrase: str, *, now: datetime, kdf: KdfParams | None = None,
    stake: int = DEFAULT_FOUNDER_STAKE, progress: Progress = lambda _msg: None,
) -> StagedNode:
    """Begin a node in ``layout``'s staging directory: its key store and consensus identity.

    The caller holds ``layout``'s lock until :func:`finish_node` returns.

    :raises AlreadyInitialisedError: if ``layout`` already holds a node.
    """
    layout.require_uninitialised()
    staging = DataDir(layout.staging_dir)
    shutil.rmtree(staging.path, ignore_errors=True)  # debris of an interrupted init
    ensure_private_dir(staging.path)

    progress("deriving the key-encryption key from the passphrase (Argon2id)")
    keystore = KeyStore.create(staging.keys_dir, passphrase, kdf)
    progress("generating the consensus identity (Ed25519 + ML-DSA-65)")
    ed_record = keystore.generate(KeyType.ED25519, CONSENSUS_ED25519_PURPOSE, now)
    ml_record = keystore.generate(KeyType.ML_DSA_65, CONSENSUS_ML_DSA_PURPOSE, now)
    founder = ValidatorKeys(
        keystore.private_key(ed_record.id),  # type: ignore[arg-type]
        keystore.private_key(ml_record.id),  # type: ignore[arg-type]
        stake=stake,
    )
    return StagedNode(layout, staging, keystore, founder)


def found_network(
    root_keystore: KeyStore, founders: Sequence[ValidatorKeys], *, network_name: str,
    origin: str, now: datetime, root_key_type: KeyType = KeyType.ECDSA_P384,
    parameters: ProofParameters | None = None, progress: Progress = lambda _msg: None,
) -> Founding:
    """Generate the genesis root key in ``root_keystore`` and sign the genesis document
    with it and with every founder's keys."""
    check_root_key_type(root_key_type)
    progress(f"generating the genesis root key ({root_key_type})")
    root_record = root_keystore.generate(root_key_type, ROOT_KEY_PURPOSE, now)
    root_key = root_keystore.private_key(root_record.id)
    assert isinstance(root_key, ec.EllipticCurvePrivateKey)
    progress("self-signing the genesis root and signing the genesis document")
    root_cert = build_root_certificate(root_key, network_name, now)
    genesis = create_genesis(
        network_name=network_name,
        origin=normalise_origin(origin),
        root_key=root_key,
        root_certificate=root_cert,
        validators=founders,
        parameters=parameters or ProofParameters(),
        now=now,
    )
    genesis_bytes = genesis.to_bytes()
    return Founding(genesis, genesis_bytes, genesis_pin(genesis_bytes), root_key)


def finish_node(
    node: StagedNode, founding: Founding, *, config_text: str | None, now: datetime,
    progress: Progress = lambda _msg: None,
) -> None:
    """Issue the node's transport credentials from the genesis root, record its identity,
    and move it into place, ``genesis.json`` last.

    :param config_text: the node's ``trustchain.toml``; ``None`` keeps the operator's
        file if there is one and writes the commented default otherwise.
    """
    body = founding.genesis.body
    node_id = node.founder.node_id
    staging = node.staging
    progress("issuing the infrastructure intermediate and transport certificates")
    with Database(staging.database_file) as db:
        migrate(db, NODE_SCHEMA)
        store = NodeStore(db)
        # Issued here rather than by ensure_transport_credentials, which does so only
        # when this key store holds the root key: in a federation one node holds it.
        infra = node.keystore.generate(KeyType.ECDSA_P256, INFRA_CA_PURPOSE, now).load_public_key()
        assert isinstance(infra, ec.EllipticCurvePublicKey)
        store.add_certificate(INFRA_CA_PURPOSE, build_intermediate(
            founding.root_key, founding.root_certificate, infra, body.network_name, node_id, now,
        ))
        ensure_transport_credentials(
            node.keystore, store, root=founding.root_certificate,
            root_key_purpose=ROOT_KEY_PURPOSE, network=body.network_name, origin=body.origin,
            node_id=node_id, now=now,
        )
        store.set_identity(
            NodeIdentity(
                genesis_sha256=founding.pin,
                node_id=node_id,
                network_name=body.network_name,
                origin=body.origin,
                initialised_at=now.isoformat(),
            )
        )
    layout = node.layout
    if config_text is not None or not layout.config_file.exists():
        write_private_file(staging.config_file,
                           (config_text or default_config_text()).encode())
    else:  # the operator's own file: private like every other (it may name secrets' paths)
        os.chmod(layout.config_file, FILE_MODE)
    write_private_file(staging.genesis_file, founding.genesis_bytes)

    for name in DataDir.INIT_ENTRIES:  # genesis.json last: it marks the node complete
        if (staging.path / name).exists():
            (staging.path / name).rename(layout.path / name)
    fsync_dir(layout.path)
    staging.path.rmdir()
