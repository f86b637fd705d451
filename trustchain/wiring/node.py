"""The composition root: open a node's data directory and build its services.

Start-up checks run in an order that makes the failures harmless (steps 1-3
are :func:`trustchain.wiring.serve.run`'s, 4 and 5 :func:`open_node`'s):

1. the data directory exists and holds a node;
2. the directory lock is taken (a second ``serve`` is refused here);
3. the configuration is loaded and validated;
4. the passphrase unlocks the key store (a wrong one stops here, before
   anything on disk is touched);
5. the database is opened and migrated, the genesis document is verified
   against the pin recorded at init, and the node's consensus key is
   decrypted and matched against the node id;
6. the services are started, one log line per listening socket
   (:mod:`trustchain.wiring.serve`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dns.name
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from bootstrap.genesis import GenesisDocument, verify_genesis
from bootstrap.init import CONSENSUS_ED25519_PURPOSE, ROOT_KEY_PURPOSE
from bootstrap.transport_certs import (
    TransportCredentials,
    ensure_transport_credentials,
    node_dns_names,
)
from transport.dns import Notifier
from trustchain.ca.authority import CertificateAuthority, NetworkInfo
from trustchain.ca.ratelimit import DEFAULT_LIMITS, Limit
from trustchain.ca.signer import Signer
from trustchain.config import NodeConfig
from trustchain.ct.log import ExpiryRange, Log
from trustchain.datadir import DataDir
from trustchain.dns.service import DnsService
from trustchain.errors import (
    ConfigError,
    DataDirError,
    GenesisError,
    KeyNotFoundError,
    KeyStoreError,
)
from trustchain.identity import Peer, PeerCertificateError, identify_peer
from trustchain.keystore import KeyStore, KeyType, key_id_for
from trustchain.storage.audit import AUDIT_SCHEMA, AuditLog
from trustchain.storage.ca import CA_SCHEMA, CaStore
from trustchain.storage.ct import CT_SCHEMA, SqliteLogStore
from trustchain.storage.database import Database, open_database
from trustchain.storage.dns import DNS_SCHEMA, SqliteZoneStore
from trustchain.storage.migrations import migrate
from trustchain.storage.node import NODE_SCHEMA, NodeIdentity, NodeStore
from trustchain.storage.ratelimit import RATELIMIT_SCHEMA, RateLimiter
from trustchain.wiring.keys import KeystoreDnssecKeys, KeystoreSecrets

log = logging.getLogger("trustchain.node")

#: Every schema the node applies at start; later services add theirs here.
SCHEMAS = (NODE_SCHEMA, DNS_SCHEMA, CT_SCHEMA, CA_SCHEMA, RATELIMIT_SCHEMA, AUDIT_SCHEMA)
#: The CT logs every node runs (two, so a certificate can carry SCTs from two logs).


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class OpenNode:
    """Everything a running node holds, checked and unlocked."""

    layout: DataDir
    config: NodeConfig
    keystore: KeyStore
    db: Database
    identity: NodeIdentity
    genesis: GenesisDocument
    genesis_bytes: bytes
    credentials: TransportCredentials


def open_node(
    layout: DataDir, config: NodeConfig, passphrase: Callable[[], str]
) -> OpenNode:
    """Steps 4 and 5 above; the caller holds the lock."""
    keystore = KeyStore.open(layout.keys_dir, passphrase())
    db = open_database(layout.path)
    try:
        for schema in SCHEMAS:
            migrate(db, schema)
        identity = NodeStore(db).identity()
        if identity is None:
            raise DataDirError(f"{layout.database_file} holds no node identity (damaged init?)")
        genesis_bytes = layout.genesis_file.read_bytes()
        try:
            genesis = verify_genesis(genesis_bytes, identity.genesis_sha256)
        except GenesisError as exc:
            raise DataDirError(
                f"{layout.genesis_file} is not the genesis this node was created with: {exc}"
            ) from None
        consensus_key = keystore.private_key(keystore.active(CONSENSUS_ED25519_PURPOSE).id)
        if key_id_for(consensus_key.public_key()) != identity.node_id:
            raise KeyStoreError("the active consensus key does not match this node's id")
        if identity.node_id not in {v.node_id for v in genesis.body.validators}:
            log.info("node %s is not a founding validator of this network", identity.node_id)
        credentials = ensure_transport_credentials(
            keystore, NodeStore(db), root=genesis.root_certificate,
            root_key_purpose=ROOT_KEY_PURPOSE, network=identity.network_name,
            origin=identity.origin, node_id=identity.node_id, now=utcnow(),
        )
    except BaseException:
        db.close()
        raise
    return OpenNode(layout, config, keystore, db, identity, genesis, genesis_bytes, credentials)


def build_ct_logs(node: OpenNode) -> list[Log]:
    """The node's CT logs (``ct_logs`` in the configuration), each with its own
    P-256 key from the key store, generated on first start."""
    logs = []
    # The checkpoint origin: this node's name in its zone, then the log's path.
    host = node_dns_names(node.identity.origin, node.identity.node_id)[1]
    for spec in node.config.ct_logs:
        purpose = f"ct-log:{spec.name}"
        try:
            record = node.keystore.active(purpose)
        except KeyNotFoundError:
            record = node.keystore.generate(KeyType.ECDSA_P256, purpose, utcnow())
        key = node.keystore.private_key(record.id)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        logs.append(Log(spec.name, key, SqliteLogStore(node.db, spec.name),
                        [node.genesis.root_certificate], origin=f"{host}/logs/{spec.name}",
                        expiry=ExpiryRange(spec.not_after_start, spec.not_after_end)))
    return logs


def ca_base_url(node: OpenNode) -> str:
    """``ca_url``, or this node's own name in its zone with its HTTP port."""
    if node.config.ca_url:
        return node.config.ca_url
    host = node_dns_names(node.identity.origin, node.identity.node_id)[1]
    port = node.config.http_port
    return f"http://{host}" if port in (80, 0) else f"http://{host}:{port}"


def rate_limits(config: NodeConfig) -> dict[str, Limit]:
    """The default limits with the operator's ``ca_rate_limits`` over them."""
    limits = dict(DEFAULT_LIMITS)
    for name, override in config.ca_rate_limits.items():
        limits[name] = Limit(name, override.count, timedelta(seconds=override.period_seconds),
                             override.burst, what=DEFAULT_LIMITS[name].what)
    return limits


def build_ca(node: OpenNode) -> CertificateAuthority:
    """The node's CA: its stores, the signing layer over the key store, limits and audit log."""
    zones = SqliteZoneStore(node.db)

    def networks() -> dict[str, NetworkInfo]:
        return {row["name"]: NetworkInfo(row["zone"], tuple(row["prefixes"]))
                for row in zones.networks()}

    def network(name: str) -> NetworkInfo | None:
        row = zones.network(name)
        return NetworkInfo(row["zone"], tuple(row["prefixes"])) if row is not None else None

    return CertificateAuthority(
        keystore=node.keystore, signer=Signer(node.keystore), store=CaStore(node.db),
        audit=AuditLog(node.db), limiter=RateLimiter(node.db, rate_limits(node.config)),
        root=node.genesis.root_certificate, root_key_purpose=ROOT_KEY_PURPOSE,
        own_network=node.identity.network_name, organisation=node.identity.network_name,
        base_url=ca_base_url(node), networks=networks, network=network, lint=node.config.ca_lint,
        crl_shards=node.config.ca_crl_shards,
    )


def ct_tiles_root(node: OpenNode) -> Path:
    """Where the static-ct-api files go (``ct_tiles_dir``, relative to the data directory).

    :raises ConfigError: if the directory cannot be created.
    """
    configured = node.config.ct_tiles_dir
    root = node.layout.path / configured if configured is not None else node.layout.ct_tiles_dir
    try:
        root.mkdir(mode=0o755, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"ct_tiles_dir {root}: {exc.strerror}") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise ConfigError(f"ct_tiles_dir {root}: not writable by this user")
    return root


def https_peer(root: x509.Certificate, intermediates: Callable[[], list[x509.Certificate]],
               network: str) -> Callable[[bytes], Peer | None]:
    """Who an HTTPS client is, from its certificate (DER): this node's admin and node
    certificates, which chain to the genesis root through this node's infrastructure CA,
    and federated networks' credentials, through their intermediates in this node's CA
    (``intermediates`` answers both, read at each handshake).

    Python's ``ssl`` hands over only the client's own certificate (not the chain it
    sent), so certificates under another node's intermediate prove nothing here;
    those peers use HTTP/3 or stoq/1, which see the whole chain.
    """

    def identify(der: bytes) -> Peer | None:
        try:
            leaf = x509.load_der_x509_certificate(der)
            return identify_peer(leaf, intermediates(), root=root, network=network,
                                 now=utcnow())
        except (ValueError, PeerCertificateError) as exc:
            log.info("an HTTPS client certificate proves no identity here: %s", exc)
            return None

    return identify


def build_dns(node: OpenNode, notifier: Notifier | None = None) -> DnsService:
    origin = dns.name.from_text(node.identity.origin)
    store = SqliteZoneStore(node.db)
    return DnsService(
        store, now=utcnow,
        default_ns=dns.name.from_text(f"{node.identity.node_id}.nodes", origin),
        secrets=KeystoreSecrets(node.keystore, utcnow), notifier=notifier, origin=origin,
        keys=KeystoreDnssecKeys(node.keystore, store, utcnow),
    )
