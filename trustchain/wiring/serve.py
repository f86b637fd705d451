"""``trustchain serve``: start a node's listeners and run until SIGINT or SIGTERM.

On SIGINT or SIGTERM the listeners stop accepting, in-flight requests get
the configured grace period, the run is recorded as cleanly stopped, and
the database is checkpointed and closed before the process exits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import dns.name

from bootstrap.enrolment import EnrolmentService
from bootstrap.init import CONSENSUS_ED25519_PURPOSE
from transport import methods
from transport.ca import CaRunner
from transport.ct import LogRunner
from transport.dns import DnsListener, Notifier
from transport.group_commit import GroupCommit
from transport.h3 import H3Limits, LimitedApp
from transport.http import HttpLimits, HttpListener
from transport.methods import Service
from transport.problem import problem_for
from transport.quic import QuicEndpoint, QuicServices
from transport.sockets import format_address
from transport.tls import https_context
from transport.workers import InlineWork, Work, WorkerPool
from trustchain.ca.federation import FederationCa
from trustchain.config import load_config
from trustchain.consensus.tendermint import Committed
from trustchain.ct.federation import FederationLogs
from trustchain.datadir import DataDir
from trustchain.dns.engine import ZoneSet
from trustchain.dns.federation import FederationZones
from trustchain.dns.handler import DnsHandler
from trustchain.dns.service import DnsService
from trustchain.identity import Peer
from trustchain.logformat import apply_format
from trustchain.metrics import NodeMetrics
from trustchain.sdnotify import notify
from trustchain.stoq.router import Router
from trustchain.storage.acme import SqliteAcmeStore
from trustchain.storage.dns import SqliteZoneStore
from trustchain.storage.node import NodeStore
from trustchain.storage.ratelimit import RateLimiter
from trustchain.wiring.acme import (
    Acme,
    acme_admin_service,
    acme_eab_service,
    acme_routes,
    build_acme,
    caa_identities,
)
from trustchain.wiring.admission import Admissions, admission_services
from trustchain.wiring.ca import build_ca, ca_limiter, ca_service, reconcile_at_start
from trustchain.wiring.consensus import build_consensus, consensus_service, membership_hook
from trustchain.wiring.console import console_routes
from trustchain.wiring.ct import build_ct_logs, ct_service, ct_tiles_root, log_prefix
from trustchain.wiring.dns import build_dns, zone_service
from trustchain.wiring.federation import (
    FederationApplication,
    FederationDns,
    NodeOperations,
    federation_keys,
    leave_service,
    node_signing_key,
)
from trustchain.wiring.federation_ca import FederationCaNode, intermediate_service
from trustchain.wiring.federation_ct import FederationCtNode
from trustchain.wiring.federation_ct import wire as wire_ct
from trustchain.wiring.gossip import Gossip, gossip_service
from trustchain.wiring.http import ACCESS, create_app, with_access_log
from trustchain.wiring.metrics import (
    DnsCounting,
    counted_services,
    instrument,
    observe_rate_limit,
    with_metrics,
)
from trustchain.wiring.node import (
    OpenNode,
    dns_query_service,
    enrolment_for,
    https_peer,
    node_services,
    open_node,
    utcnow,
)
from trustchain.wiring.registry import Registry, registry_service
from trustchain.wiring.witness import build_witnessing, witness_service

log = logging.getLogger("trustchain.node")

#: How often the node looks for signatures nearing expiry and idle rate-limit buckets.
MAINTENANCE_SECONDS = 600.0


def build_router(services: Iterable[Service]) -> Router:
    """The stoq/1 methods of ``services`` (permissions: trustchain.stoq.permissions)."""
    router = Router(problem_for)
    methods.register(router, services)
    return router


def base_services(node: OpenNode, dns_handler: DnsHandler,
                  enrolment: EnrolmentService | None = None) -> list[Service]:
    """What every node serves over stoq/1 before its DNS, CT and CA services."""
    enrolment = enrolment or enrolment_for(node, utcnow, secrets.token_bytes)
    return [dns_query_service(dns_handler), *node_services(node, enrolment)]


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
    limiter = ca_limiter(node)
    authority = build_ca(node, limiter)
    reconcile_at_start(authority)  # before the listeners open
    workers = config.worker_count()
    work: Work = (WorkerPool(workers, authority.signer) if workers
                  else InlineWork(authority.signer))
    ct = LogRunner(build_ct_logs(node), tile_root=ct_tiles_root(node), work=work)
    public = config.local_address()
    ct.base_url = f"http://{format_address(public, config.http_port)}"
    ca = CaRunner(authority, ct, clock=utcnow, commits=GroupCommit(node.db), work=work)
    if config.ca_lint:
        log.info("CA: every precertificate is linted with pkilint before it is logged")
    notifier = Notifier()
    dns_service = build_dns(node, notifier)
    metrics = NodeMetrics()  # GET /metrics on the plain-HTTP port
    dns_counting = DnsCounting(metrics.dns, dns_service)
    dns_handler: DnsHandler = dns_counting.handler(dns_service.handle)
    dns_stream = dns_counting.stream(dns_service.handle_stream)
    founders = frozenset(v.node_id for v in node.genesis.body.validators)
    federation_zones = FederationZones(dns.name.from_text(node.identity.origin), founders)
    federation_ca = FederationCa(node.genesis.root_certificate, node.identity.origin.lower())
    federation_logs = FederationLogs()
    federation = build_consensus(node, wall=utcnow, application=FederationApplication(
        federation_zones, federation_ca, federation_logs))
    consensus, peers = federation.runner, federation.peers
    zsk, ksk = federation_keys(node.keystore, node.identity.node_id in founders, utcnow())
    operations = NodeOperations(
        consensus, node_id=node.identity.node_id, chain_id=node.identity.genesis_sha256,
        node_key=node_signing_key(node.keystore, CONSENSUS_ED25519_PURPOSE))
    zones_here = FederationDns(federation_zones, dns_service, operations, zsk=zsk, ksk=ksk,
                               addresses=config.advertised(), founders=founders, clock=utcnow,
                               serve=config.serve_federation_zones)
    if not config.serve_federation_zones:
        log.info("not answering DNS for the federation's zones (serve_federation_zones = "
                 "false); they are kept, signed and read by ACME as ever")
    ca_here = FederationCaNode(federation_ca, authority, operations, peers, clock=utcnow)
    witness_here, cosigning = build_witnessing(node, ct, federation_logs, peers, operations)
    gossip = Gossip(federation_logs, operations, peers)
    witness_here.suspect = gossip.suspect
    logs_here = FederationCtNode(federation_logs, ct, operations, peers,
                                 {name: log_prefix(node, name) for name in ct.logs},
                                 mmd=1,  # sequenced every 0.2 s: within a second
                                 witness=witness_here.signer.verifier().vkey())
    wire_ct(ca, logs_here)
    authority.credential_elsewhere = lambda peer: federation_ca.credential_refusal(
        peer.name, peer.issuer, peer.serial)
    registry = Registry(consensus, SqliteZoneStore(node.db), zones_here, utcnow)
    membership = membership_hook(peers, federation.endorsements.policy)

    def committed(block: Committed) -> None:
        registry.committed(block)
        membership(block)
        zones_here.after_commit()
        ca_here.after_commit()
        logs_here.after_commit()

    consensus.on_commit = committed
    registry.catch_up()  # networks committed while this node did not record them
    enrolment = enrolment_for(node, utcnow, secrets.token_bytes)
    acme_store = SqliteAcmeStore(node.db)
    admissions = Admissions(consensus, federation.endorsements, enrolment)

    def network_zone(peer: Peer) -> str:
        """A network credential's zone, once the CA found the credential good."""
        authority.authorise(peer, peer.name, utcnow())
        return authority.networks()[peer.name].zone

    services = [*base_services(node, dns_handler, enrolment),
                zone_service(dns_service, zones_here, network_zone=network_zone),
                ct_service(ct, logs_here.log_list, cosigning.checkpoint,
                           logs_here.witness_policy),
                witness_service(witness_here), gossip_service(gossip), ca_service(ca, ca_here),
                intermediate_service(authority, utcnow),
                consensus_service(consensus, federation.endorsements, lambda: {
                    "zones": {o.to_text(): z.serial
                              for o, z in sorted(federation_zones.zones.items())},
                    "intermediates": {n: sorted(nodes) for n, nodes
                                      in sorted(federation_ca.intermediates.items())},
                    "witnesses": dict(sorted(federation_logs.witnesses.items())),
                    "untrusted_logs": dict(sorted(federation_logs.untrusted.items())),
                    "log_forks": {log_id: {"checkpoints": [first, second], "height": height}
                                  for log_id, (first, second, height)
                                  in sorted(federation_logs.forks.items())},
                    "final_checkpoints": {origin: {"size": size, "height": height}
                                          for origin, (size, _, height)
                                          in sorted(federation_logs.final.items())},
                    "log_note_keys": {origin: lg.note_key for origin, lg
                                      in sorted(federation_logs.by_origin().items())}}),
                registry_service(registry, consensus), *admission_services(admissions),
                leave_service(zones_here), acme_admin_service(acme_store),
                acme_eab_service(acme_store, authority, utcnow)]
    services = counted_services(services, metrics)

    def acme_zones() -> ZoneSet:
        """The zones ACME reads (dns-01, CAA, http-01's addresses): the served ones, and
        the federation's whether answered for or not."""
        served = dns_service.zoneset
        if config.serve_federation_zones:
            return served
        return ZoneSet({**served.zones, **federation_zones.zones}, served.version)

    acme = Acme(build_acme(node, limiter, acme_store, authority, observe_rate_limit(metrics)),
                ca, acme_zones,
                node.identity.network_name,
                (config.acme_http01_port, config.acme_tls_alpn01_port), caa_identities(node),
                ca_here.announce)
    app = create_app(genesis_bytes=node.genesis_bytes, services=services,
                     extra=[*acme_routes(acme), *console_routes(node.db, ct, authority.store,
                                                                dns_service, services)])
    limits = HttpLimits.from_config(config)
    http = HttpListener(with_access_log(with_metrics(app, metrics), "http"), config.listen,
                        config.http_port, config.shutdown_grace_seconds, limits=limits)
    infra_cas = list(node.credentials.node.chain)
    https = HttpListener(
        with_access_log(app, "https"), config.listen, config.https_port,
        config.shutdown_grace_seconds, limits=limits,
        tls=https_context(node.credentials.node, [node.credentials.root, *infra_cas]),
        identify=https_peer(
            node.credentials.root,
            lambda: [*infra_cas, *(i.certificate for i in authority.store.issuers()),
                     *federation_ca.certificates()],
            node.identity.network_name),
    )
    dns_listener = DnsListener(
        dns_handler, dns_stream, config.listen, config.dns_port,
        rate_limit=config.dns_rate_limit, slip=config.dns_rate_limit_slip,
        idle_timeout=config.dns_tcp_idle_timeout_seconds,
    )
    quic = QuicEndpoint(
        QuicServices(
            dns=dns_handler,
            dns_stream=dns_stream,
            router=build_router(services),
            root=node.credentials.root,
            network=node.identity.network_name,
            clock=utcnow,
            max_message=config.stoq_max_message_bytes,
            max_queries_in_flight=config.quic_max_streams_in_flight,
            app=LimitedApp(with_access_log(app, "h3"), H3Limits.from_config(config)),
        ),
        node.credentials.node,
        config.listen,
        config.quic_port,
        idle_timeout=config.quic_idle_timeout_seconds,
        retry_above_per_second=config.quic_retry_above_per_second,
        max_connections_per_address=config.quic_max_connections_per_address,
    )
    instrument(metrics, dns_service=dns_service, dns_listener=dns_listener, quic=quic, ct=ct,
               cosigning=cosigning, ca=ca, consensus=consensus, peers=peers)
    try:
        ct.start()
        await dns_listener.start()
        await http.start()
        await https.start()
        await quic.start()
        consensus.start()
        zones_here.after_commit()  # serve the federation zones as replayed; announce this node
        ca_here.after_commit()
        logs_here.after_commit()
        peers.start()
        cosigning.start()
        gossip.start()
        log.info("node ready")
        notify("READY=1", "STATUS=serving")
        maintenance = asyncio.ensure_future(_maintain(dns_service, limiter, stop))
        await stop.wait()
        log.info("shutting down")
        notify("STOPPING=1", "STATUS=shutting down")
        await maintenance
    finally:
        await cosigning.stop()
        await gossip.stop()
        consensus.stop()
        await peers.stop()
        await quic.stop()
        await https.stop()
        await http.stop()
        await dns_listener.stop()
        await notifier.stop()
        await ct.stop()
        await work.close()
        store.stop_run(run_id, utcnow())
    log.info("stopped cleanly")


async def _maintain(service: DnsService, limiter: RateLimiter, stop: asyncio.Event) -> None:
    """Until the node stops: re-sign zones whose signatures near expiry, take the DNSSEC
    rollover steps that are due, and forget rate-limit buckets that are full again (they
    would otherwise accumulate one row per requester for ever)."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), MAINTENANCE_SECONDS)
        except TimeoutError:
            count = service.resign_due()
            if count:
                log.info("re-signed %d zone(s) whose signatures neared expiry", count)
            for step in service.advance_rollovers():
                log.info("DNSSEC rollover: %s", step)
            limiter.prune(utcnow())


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
        ACCESS.setLevel(logging.INFO if config.access_log else logging.WARNING)
        apply_format(config.log_format)
        node = open_node(layout, config, passphrase)
        node.db.checkpoint_in_background()  # no commit pays for a checkpoint
        try:
            with asyncio.Runner(loop_factory=loop_factory()) as runner:
                runner.run(_main(node))
        finally:
            node.db.close()


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
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
