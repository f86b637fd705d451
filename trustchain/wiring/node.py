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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509

from bootstrap.enrolment import EnrolmentService
from bootstrap.genesis import GenesisDocument, verify_genesis
from bootstrap.init import CONSENSUS_ED25519_PURPOSE, ROOT_KEY_PURPOSE
from bootstrap.transport_certs import (
    TransportCredentials,
    ensure_transport_credentials,
)
from transport.methods import Call, Method, Service, message_method
from trustchain.config import NodeConfig
from trustchain.datadir import DataDir
from trustchain.dns.handler import DnsHandler, QueryContext
from trustchain.errors import (
    BadRequest,
    DataDirError,
    GenesisError,
    KeyStoreError,
)
from trustchain.identity import Peer, PeerCertificateError, identify_peer
from trustchain.keystore import KeyStore, key_id_for
from trustchain.storage.acme import ACME_SCHEMA
from trustchain.storage.audit import AUDIT_SCHEMA
from trustchain.storage.ca import CA_SCHEMA
from trustchain.storage.consensus import CONSENSUS_SCHEMA
from trustchain.storage.ct import CT_SCHEMA
from trustchain.storage.ct_search import CTSEARCH_SCHEMA
from trustchain.storage.database import Database, open_database
from trustchain.storage.dns import DNS_SCHEMA
from trustchain.storage.migrations import migrate
from trustchain.storage.node import NODE_SCHEMA, NodeIdentity, NodeStore
from trustchain.storage.ratelimit import RATELIMIT_SCHEMA
from trustchain.storage.witness import WITNESS_SCHEMA
from trustchain.wiring.status import node_status

log = logging.getLogger("trustchain.node")

#: Every schema the node applies at start; later services add theirs here.
SCHEMAS = (NODE_SCHEMA, DNS_SCHEMA, CT_SCHEMA, CA_SCHEMA, RATELIMIT_SCHEMA, AUDIT_SCHEMA,
           CONSENSUS_SCHEMA, WITNESS_SCHEMA, ACME_SCHEMA, CTSEARCH_SCHEMA)
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


def dns_query_service(handler: DnsHandler) -> Service:
    def query(call: Call) -> bytes:
        response = handler(call.body, QueryContext("stoq"))
        if response is None:
            raise BadRequest("not a DNS query")
        return response

    return Service("dns", (Method(query, stoq="query", raw=True),))


def node_services(node: OpenNode, enrolment: EnrolmentService) -> list[Service]:
    """Validators, status and enrolment: what every node serves."""

    def validators(call: Call) -> list[object]:
        return [v.model_dump(mode="json") for v in node.genesis.body.validators]

    def status(call: Call) -> dict[str, object]:
        return node_status(node.layout.path)

    return [
        Service("consensus", (Method(validators, stoq="validators"),)),
        Service("ca", (message_method("enrol-challenge", enrolment.challenge),
                       message_method("enrol-request", enrolment.request),
                       message_method("enrol-status", enrolment.status))),
        Service("admin", (Method(status, stoq="status"),
                          message_method("enrolments", enrolment.list),
                          message_method("approve", enrolment.approve),
                          message_method("reject", enrolment.reject))),
    ]


def enrolment_for(node: OpenNode, clock: Callable[[], datetime],
                  random_bytes: Callable[[int], bytes]) -> EnrolmentService:
    return EnrolmentService(
        NodeStore(node.db), network=node.identity.network_name, origin=node.identity.origin,
        issuer=node.credentials.issuer, now=clock, random_bytes=random_bytes,
    )
