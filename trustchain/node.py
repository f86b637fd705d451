"""The composition root: open a node's data directory and run its services.

Start-up checks run in an order that makes the failures harmless:

1. the data directory exists and holds a node;
2. the directory lock is taken (a second ``serve`` is refused here);
3. the configuration is loaded and validated;
4. the passphrase unlocks the key store (a wrong one stops here, before
   anything on disk is touched);
5. the database is opened and migrated, the genesis document is verified
   against the pin recorded at init, and the node's consensus key is
   decrypted and matched against the node id;
6. the services are started, one log line per listening socket.

On SIGINT or SIGTERM the listeners stop accepting, in-flight requests get
the configured grace period, the run is recorded as cleanly stopped, and
the database is checkpointed and closed before the process exits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dns.name
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from bootstrap.enrolment import EnrolmentService
from bootstrap.genesis import GenesisDocument, verify_genesis
from bootstrap.init import CONSENSUS_ED25519_PURPOSE, ROOT_KEY_PURPOSE
from bootstrap.transport_certs import (
    TransportCredentials,
    ensure_transport_credentials,
    node_dns_names,
)
from transport.ca import CaRunner
from transport.ct import LogRunner
from transport.dns import DnsListener, Notifier
from transport.http import HttpListener
from transport.quic import QuicEndpoint, QuicServices
from transport.sockets import format_address
from transport.tls import https_context
from transport.workers import InlineWork, Work, WorkerPool, WorkerStopped
from trustchain.api import create_app
from trustchain.ca.authority import CertificateAuthority, NetworkInfo
from trustchain.ca.ratelimit import DEFAULT_LIMITS, Limit
from trustchain.ca.signer import Signer
from trustchain.canonical import canonical_json
from trustchain.config import NodeConfig, load_config
from trustchain.ct.log import BadSubmission, ExpiryRange, Log
from trustchain.datadir import DataDir
from trustchain.dns.dnssec import Role as DnssecRole
from trustchain.dns.dnssec import SigningKey, make_dnskey
from trustchain.dns.handler import DnsHandler, QueryContext
from trustchain.dns.rollover import KeyState as RolloverKey
from trustchain.dns.rollover import State as KeyState
from trustchain.dns.rollover import Step as RolloverStep
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
from trustchain.stoq.router import BadRequest, Handler, Router, Unavailable
from trustchain.storage.audit import AUDIT_SCHEMA, AuditLog
from trustchain.storage.ca import CA_SCHEMA, CaStore
from trustchain.storage.ct import CT_SCHEMA, SqliteLogStore
from trustchain.storage.database import Database, open_database
from trustchain.storage.dns import DNS_SCHEMA, SqliteZoneStore
from trustchain.storage.migrations import migrate
from trustchain.storage.node import NODE_SCHEMA, NodeIdentity, NodeStore
from trustchain.storage.ratelimit import RATELIMIT_SCHEMA, RateLimiter

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


class KeystoreSecrets:
    """TSIG secrets in the node's key store (purpose ``tsig:<name>``)."""

    def __init__(self, keystore: KeyStore) -> None:
        self._keystore = keystore

    def secret(self, name: str) -> bytes | None:
        try:
            return self._keystore.secret(self._keystore.active(f"tsig:{name}").id)
        except KeyNotFoundError:
            return None

    def create_secret(self, name: str) -> bytes:
        secret = secrets.token_bytes(32)
        self._keystore.add_secret(secret, f"tsig:{name}", utcnow())
        return secret


class KeystoreDnssecKeys:
    """DNSSEC keys in the node's key store, their states in ``dns_keys``.

    A zone's first signing creates its keys as its policy says: a KSK and a
    ZSK (or one CSK), algorithm 13 (or 15).
    """

    def __init__(self, keystore: KeyStore, store: SqliteZoneStore) -> None:
        self._keystore = keystore
        self._store = store
        self._cache: dict[str, SigningKey] = {}

    def _rows(self, origin: dns.name.Name) -> list[dict[str, object]]:
        rows = self._store.keys(origin)
        if not rows:
            _, csk, _ = self._store.dnssec_policy(origin)
            roles = ["csk"] if csk else ["ksk", "zsk"]
            self.apply(origin, [RolloverStep(role, KeyState.ACTIVE) for role in roles])
            rows = self._store.keys(origin)
        return rows

    def managed(self, origin: dns.name.Name) -> list[tuple[RolloverKey, SigningKey | None]]:
        """Every key of the zone with its state, and its signing key unless removed."""
        def seconds(value: object) -> int:
            return int(datetime.fromisoformat(str(value)).timestamp())

        out: list[tuple[RolloverKey, SigningKey | None]] = []
        for row in self._rows(origin):
            key_id = str(row["key_id"])
            state = RolloverKey(key_id, str(row["role"]), KeyState(str(row["state"])),
                                seconds(row["changed_at"]),
                                seconds(row["ds_published_at"]) if row["ds_published_at"]
                                else None)
            if state.state is KeyState.REMOVED:
                out.append((state, None))
                continue
            cached = self._cache.get(key_id)
            if cached is None:
                role = DnssecRole(state.role)
                private = self._keystore.private_key(key_id)
                cached = SigningKey(role, private, make_dnskey(private, int(str(row["algorithm"])),
                                                                role))
                self._cache[key_id] = cached
            out.append((state, SigningKey(cached.role, cached.private_key, cached.dnskey,
                                          active=state.state is KeyState.ACTIVE)))
        return out

    def apply(self, origin: dns.name.Name, steps: list[RolloverStep]) -> None:
        now = utcnow()
        algorithm, _, _ = self._store.dnssec_policy(origin)
        key_type = KeyType.ED25519 if algorithm == 15 else KeyType.ECDSA_P256
        for step in steps:
            if step.key_id is None:
                record = self._keystore.generate(
                    key_type, f"dnssec:{origin.to_text()}:{step.role}", now)
                self._store.add_key(origin, record.id, step.role, algorithm, step.state.value,
                                    now)
            else:
                self._store.set_key_state(origin, step.key_id, step.state.value, now)

    def mark_ds_published(self, origin: dns.name.Name, key_id: str) -> None:
        self._store.set_ds_published(origin, key_id, utcnow())


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
        secrets=KeystoreSecrets(node.keystore), notifier=notifier, origin=origin,
        keys=KeystoreDnssecKeys(node.keystore, store),
    )


def register_ct(router: Router, runner: LogRunner) -> None:
    """The RFC 6962 methods on stoq/1 ``ct``: JSON ``{"log": NAME, ...}`` in, RFC 6962 JSON out."""

    def request(message: bytes) -> tuple[Log, dict[str, Any]]:
        try:
            body = json.loads(message or b"{}")
            target = runner.logs[body["log"]]
        except (ValueError, KeyError, TypeError):
            raise BadRequest('the message must be {"log": NAME, ...} naming a log of this node') \
                from None
        return target, body

    def read(method: Callable[[Log, dict[str, Any]], dict[str, object]]) -> Handler:
        def handler(message: bytes, peer: Peer | None) -> bytes:
            target, body = request(message)
            try:
                return canonical_json(method(target, body))
            except (BadSubmission, KeyError, TypeError) as exc:
                raise BadRequest(str(exc)) from None
        return handler

    def submit(precert: bool) -> Handler:
        async def handler(message: bytes, peer: Peer | None) -> bytes:
            target, body = request(message)
            try:
                return canonical_json(
                    await runner.add_chain(target.name, body.get("chain") or [], precert))
            except BadSubmission as exc:
                raise BadRequest(str(exc)) from None
            except WorkerStopped as exc:
                raise Unavailable(f"{exc}; retry") from None
        return handler

    def log_list(message: bytes, peer: Peer | None) -> bytes:
        return canonical_json(runner.log_list(runner.base_url))

    router.register("ct", "logs", log_list)
    router.register("ct", "add-chain", submit(False))
    router.register("ct", "add-pre-chain", submit(True))
    router.register("ct", "get-sth", read(lambda lg, b: lg.get_sth()))
    router.register("ct", "get-sth-consistency",
                    read(lambda lg, b: lg.get_sth_consistency(int(b["first"]), int(b["second"]))))
    router.register("ct", "get-proof-by-hash",
                    read(lambda lg, b: lg.get_proof_by_hash(b["hash"], int(b["tree_size"]))))
    router.register("ct", "get-entries",
                    read(lambda lg, b: lg.get_entries(int(b["start"]), int(b["end"]))))
    router.register("ct", "get-entry-and-proof", read(
        lambda lg, b: lg.get_entry_and_proof(int(b["leaf_index"]), int(b["tree_size"]))))
    router.register("ct", "get-roots", read(lambda lg, b: lg.get_roots()))


def build_router(
    node: OpenNode, dns_handler: DnsHandler, dns_service: DnsService | None = None
) -> Router:
    """The stoq/1 methods this node serves (permissions: trustchain.stoq.permissions)."""
    from trustchain.status import node_status

    router = Router()

    def dns_query(message: bytes, peer: Peer | None) -> bytes:
        response = dns_handler(message, QueryContext("stoq"))
        if response is None:
            raise BadRequest("not a DNS query")
        return response

    def validators(message: bytes, peer: Peer | None) -> bytes:
        return canonical_json(
            [v.model_dump(mode="json") for v in node.genesis.body.validators]
        )

    def status(message: bytes, peer: Peer | None) -> bytes:
        return canonical_json(node_status(node.layout.path))

    enrolment = EnrolmentService(
        NodeStore(node.db), network=node.identity.network_name, origin=node.identity.origin,
        issuer=node.credentials.issuer, now=utcnow, random_bytes=secrets.token_bytes,
    )
    router.register("dns", "query", dns_query)
    router.register("consensus", "validators", validators)
    router.register("admin", "status", status)
    router.register("ca", "enrol-challenge", enrolment.challenge)
    router.register("ca", "enrol-request", enrolment.request)
    router.register("ca", "enrol-status", enrolment.status)
    router.register("admin", "enrolments", enrolment.list)
    router.register("admin", "approve", enrolment.approve)
    router.register("admin", "reject", enrolment.reject)
    if dns_service is not None:
        for method, handler in (
            ("zone-create", dns_service.zone_create),
            ("zone-delete", dns_service.zone_delete),
            ("zone-list", dns_service.zone_list),
            ("zone-export", dns_service.zone_export),
            ("zone-import", dns_service.zone_import),
            ("records-list", dns_service.records_list),
            ("records-change", dns_service.records_change),
            ("secondary-add", dns_service.secondary_add),
            ("secondary-list", dns_service.secondary_list),
            ("secondary-remove", dns_service.secondary_remove),
            ("network-register", dns_service.network_register),
            ("network-list", dns_service.network_list),
            ("dnssec-ds", dns_service.dnssec_ds),
            ("dnssec-status", dns_service.dnssec_status),
            ("dnssec-rollover", dns_service.dnssec_rollover),
            ("dnssec-ds-published", dns_service.dnssec_ds_published),
        ):
            router.register("admin", method, handler)
    return router


async def serve_node(node: OpenNode, stop: asyncio.Event) -> None:
    """Run the node's services until ``stop`` is set."""
    store = NodeStore(node.db)
    run_id, previous = store.start_run(os.getpid(), utcnow())
    if previous is not None and previous.stopped_at is None:
        log.warning(
            "the previous run (pid %d, started %s) did not shut down cleanly",
            previous.pid, previous.started_at,
        )
    log.info(
        "node %s of network %s (origin %s), genesis sha256:%s",
        node.identity.node_id, node.identity.network_name, node.identity.origin,
        node.identity.genesis_sha256,
    )
    config = node.config
    authority = build_ca(node)
    workers = config.worker_count()
    work: Work = (WorkerPool(workers, authority.signer) if workers
                  else InlineWork(authority.signer))
    ct = LogRunner(build_ct_logs(node), tile_root=ct_tiles_root(node), work=work)
    public = config.local_address()
    ct.base_url = f"http://{format_address(public, config.http_port)}"
    ca = CaRunner(authority, ct, clock=utcnow, work=work)
    if config.ca_lint:
        log.info("CA: every precertificate is linted with pkilint before it is logged")
    app = create_app(genesis_bytes=node.genesis_bytes, logs=ct, ca=ca)
    http = HttpListener(app, config.listen, config.http_port, config.shutdown_grace_seconds)
    infra_cas = list(node.credentials.node.chain)
    https = HttpListener(
        app, config.listen, config.https_port, config.shutdown_grace_seconds,
        tls=https_context(node.credentials.node, [node.credentials.root, *infra_cas]),
        identify=https_peer(
            node.credentials.root,
            lambda: [*infra_cas, *(i.certificate for i in authority.store.issuers())],
            node.identity.network_name),
    )
    notifier = Notifier()
    dns_service = build_dns(node, notifier)
    dns_handler: DnsHandler = dns_service.handle
    router = build_router(node, dns_handler, dns_service)
    register_ct(router, ct)
    ca.register(router)
    dns_listener = DnsListener(
        dns_handler, dns_service.handle_stream, config.listen, config.dns_port,
        rate_limit=config.dns_rate_limit, slip=config.dns_rate_limit_slip,
        idle_timeout=config.dns_tcp_idle_timeout_seconds,
    )
    quic = QuicEndpoint(
        QuicServices(
            dns=dns_handler,
            dns_stream=dns_service.handle_stream,
            router=router,
            root=node.credentials.root,
            network=node.identity.network_name,
            clock=utcnow,
            max_message=config.stoq_max_message_bytes,
            max_queries_in_flight=config.quic_max_streams_in_flight,
            app=app,
        ),
        node.credentials.node,
        config.listen,
        config.quic_port,
        idle_timeout=config.quic_idle_timeout_seconds,
        retry_above_per_second=config.quic_retry_above_per_second,
        max_connections_per_address=config.quic_max_connections_per_address,
    )
    try:
        ct.start()
        await dns_listener.start()
        await http.start()
        await https.start()
        await quic.start()
        log.info("node ready")
        resigner = asyncio.ensure_future(_resign_periodically(dns_service, stop))
        await stop.wait()
        log.info("shutting down")
        await resigner
    finally:
        await quic.stop()
        await https.stop()
        await http.stop()
        await dns_listener.stop()
        await notifier.stop()
        await ct.stop()
        await work.close()
        store.stop_run(run_id, utcnow())
    log.info("stopped cleanly")


#: How often the node looks for signatures nearing expiry.
RESIGN_CHECK_SECONDS = 600.0


async def _resign_periodically(service: DnsService, stop: asyncio.Event) -> None:
    """Re-sign zones whose signatures near expiry, until the node stops."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), RESIGN_CHECK_SECONDS)
        except TimeoutError:
            count = service.resign_due()
            if count:
                log.info("re-signed %d zone(s) whose signatures neared expiry", count)
            for step in service.advance_rollovers():
                log.info("DNSSEC rollover: %s", step)


def run(
    data_dir: Path,
    passphrase: Callable[[], str],
    overrides: Mapping[str, Any] | None = None,
) -> None:
    """``trustchain serve``: run the node in ``data_dir`` until SIGINT/SIGTERM."""
    layout = DataDir(data_dir)
    layout.require_initialised()
    with layout.lock():
        config = load_config(data_dir, overrides)
        logging.getLogger("trustchain").setLevel(config.log_level.upper())
        node = open_node(layout, config, passphrase)
        try:
            with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                runner.run(_main(node))
        finally:
            node.db.close()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where installed (Linux), else asyncio's default."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def _main(node: OpenNode) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await serve_node(node, stop)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
