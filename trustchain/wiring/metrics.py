"""The node's metrics wired to what it runs: ``GET /metrics`` on the plain-HTTP port.

The names, labels and buckets are :mod:`trustchain.metrics`'; here each edge is given
the hook that counts into them (the cores stay as they are: pure, uncounted), and the
scrape-time collector is told where to read the state it reports:

* DNS: the node's handlers wrapped (:class:`DnsCounting`), one count per query on every
  transport, with the zone of its name when this node serves it; the answer cache's
  and rate limiting's own counts read when scraped;
* QUIC and stoq/1: the endpoint's counts, and an observer of each stoq/1 answer;
* CT: the log runner's observer of each submission; tree sizes, head times and the
  cosignatures held read when scraped;
* CA: the runner's observer of each issuance; the CRL and OCSP methods wrapped;
* consensus: the runner's observer of operations committed; height, round and peers
  read when scraped.
"""

from __future__ import annotations

import bisect
import inspect
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from time import perf_counter
from typing import TypeVar

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from transport.ca import CaRunner
from transport.consensus import ConsensusRunner
from transport.ct import LogRunner
from transport.dns import DnsListener, StreamDnsHandler
from transport.methods import Answer, Call, Handler, Method, Service
from transport.peers import Peers
from transport.problem import problem_response
from transport.quic import QuicEndpoint
from trustchain.ca.errors import CaError
from trustchain.ca.issuance import IssuanceError
from trustchain.ca.lint import LintError
from trustchain.ca.policy import NotAuthorised, PolicyError
from trustchain.ca.ratelimit import RateLimited
from trustchain.ca.steps import IssuedChain
from trustchain.dns.engine import ZoneSet
from trustchain.dns.handler import DnsHandler, QueryContext
from trustchain.dns.service import DnsService
from trustchain.errors import BadRequest
from trustchain.metrics import (
    DNS_TIMED_EVERY,
    NO_ANSWER,
    OTHER,
    ConsensusState,
    CtLogState,
    DnsState,
    DnsTally,
    NodeMetrics,
    NodeState,
    QuicState,
    Snapshot,
)
from trustchain.problem import Problem
from trustchain.stoq.permissions import PERMISSIONS
from trustchain.wiring.witness import Cosigning

R = TypeVar("R")


class DnsCounting:
    """Wraps the node's DNS handlers: each query counted by transport, rcode and zone, one
    in :data:`~trustchain.metrics.DNS_TIMED_EVERY` timed (see
    :class:`~trustchain.metrics.DnsTally` for how it stays cheap)."""

    def __init__(self, tally: DnsTally, service: DnsService) -> None:
        self._tally = tally
        self._server = service.server
        self._zoneset = self._server.zoneset
        self._origins = _origins(self._zoneset)

    def handler(self, inner: DnsHandler) -> DnsHandler:
        """``inner``, counted: the hot path (UDP), so the counting is inlined, each name
        it uses bound here."""
        server, slot_for, slots = self._server, self._slot, self._tally.slots
        timed = self._timer()
        countdown = DNS_TIMED_EVERY

        def handle(query: bytes, context: QueryContext) -> bytes | None:
            nonlocal countdown
            countdown -= 1
            if countdown:
                response = inner(query, context)
            else:
                countdown = DNS_TIMED_EVERY
                response = timed(inner, query, context)
            table = slots.get(context.transport)
            slot = table.get(query[12:]) if table is not None else None
            if slot is None or server.zoneset is not self._zoneset:
                slot = slot_for(query, context.transport)
            slot[response[3] & 0xF if response is not None and len(response) > 3
                 else NO_ANSWER] += 1
            return response

        return handle

    def stream(self, inner: StreamDnsHandler) -> StreamDnsHandler:
        """``inner`` (the stream transports' handler), counted by its first message."""
        timed = self._timer()
        countdown = DNS_TIMED_EVERY

        def handle(query: bytes, context: QueryContext) -> list[bytes]:
            nonlocal countdown
            countdown -= 1
            if countdown:
                responses = inner(query, context)
            else:
                countdown = DNS_TIMED_EVERY
                responses = timed(inner, query, context)
            slot = self._slot(query, context.transport)
            slot[responses[0][3] & 0xF if responses and len(responses[0]) > 3
                 else NO_ANSWER] += 1
            return responses

        return handle

    def _timer(self) -> Callable[[Callable[[bytes, QueryContext], R], bytes, QueryContext], R]:
        tally, bisect_left = self._tally, bisect.bisect_left

        def timed(inner: Callable[[bytes, QueryContext], R], query: bytes,
                  context: QueryContext) -> R:
            start = perf_counter()
            answer = inner(query, context)
            seconds = perf_counter() - start
            latency = tally.latency(context.transport)
            latency.counts[bisect_left(tally.bounds, seconds)] += 1
            latency.total += seconds
            return answer

        return timed

    def _slot(self, query: bytes, transport: str) -> list[int]:
        """The slot that counts ``query`` over ``transport`` (made if new)."""
        zoneset = self._server.zoneset
        if zoneset is not self._zoneset:  # a new version: perhaps other zones
            self._zoneset = zoneset
            origins = _origins(zoneset)
            if origins != self._origins:
                self._tally.fold()  # counted under the zones as they were
                self._origins = origins
        return self._tally.slot(transport, query[12:], lambda: self._zone(query))

    def _zone(self, query: bytes) -> str:
        """The zone served here that holds the query's name, else ``other``."""
        end = _name_end(query)
        if end is None:
            return OTHER
        labels = _labels(query[12:end])
        origins = self._origins
        return next((origins[labels[i:]] for i in range(len(labels))
                     if labels[i:] in origins), OTHER)


def _origins(zoneset: ZoneSet) -> dict[tuple[bytes, ...], str]:
    """The zones served, by their lower-case labels (root last, as on the wire)."""
    return {tuple(label.lower() for label in origin.labels): origin.to_text().lower()
            for origin in zoneset.zones}


def _name_end(query: bytes) -> int | None:
    """Where the question's name ends in ``query`` (after its root label), if it has one
    that is uncompressed and complete."""
    if len(query) < 13 or query[4:6] == b"\0\0":
        return None
    at = 12
    while at < len(query) and at < 12 + 255:
        size = query[at]
        if size == 0:
            return at + 1
        if size & 0xC0:
            return None
        at += 1 + size
    return None


def _labels(wire: bytes) -> tuple[bytes, ...]:
    """A name's labels in lower case, root included (as dnspython's ``Name.labels``)."""
    labels, at = [], 0
    while True:
        size = wire[at]
        labels.append(wire[at + 1:at + 1 + size].lower())
        if size == 0:
            return tuple(labels)
        at += 1 + size


# --- the services' edges ---------------------------------------------------------------


def observe_stoq(metrics: NodeMetrics) -> Callable[[str, str, int | None], None]:
    """Counts each stoq/1 answer; a method not in the permission table is ``other``."""
    counter = metrics.stoq_requests

    def observe(service: str, method: str, status: int | None) -> None:
        if (service, method) not in PERMISSIONS:
            service = method = OTHER
        counter.labels(service, method, "reset" if status is None else str(int(status))).inc()

    return observe


def refusal_reason(error: Exception) -> str:
    """The class of reason a certificate request was refused for (a bounded label)."""
    if isinstance(error, NotAuthorised):
        return "not_authorised"
    if isinstance(error, PolicyError):
        return "policy"
    if isinstance(error, RateLimited):
        return "rate_limited"
    if isinstance(error, BadRequest):
        return "bad_request"
    if isinstance(error, (CaError, IssuanceError, LintError)):
        return "ca"
    return OTHER


def observe_issuance(metrics: NodeMetrics) -> Callable[[IssuedChain | Exception], None]:
    def observe(outcome: IssuedChain | Exception) -> None:
        if isinstance(outcome, IssuedChain):
            metrics.ca_issuances.labels(outcome.profile, outcome.network).inc()
            return
        metrics.ca_refusals.labels(refusal_reason(outcome)).inc()
        if isinstance(outcome, RateLimited):
            metrics.ca_rate_limited.labels(outcome.name).inc()

    return observe


def observe_rate_limit(metrics: NodeMetrics) -> Callable[[RateLimited], None]:
    """Counts a request ACME's own limits refused (new accounts, orders, failed
    validations); the CA's are counted by :func:`observe_issuance`."""
    return lambda refused: metrics.ca_rate_limited.labels(refused.name).inc()


def observe_submission(metrics: NodeMetrics) -> Callable[[str, str, float | None], None]:
    def observe(log: str, outcome: str, merged_after: float | None) -> None:
        metrics.ct_submissions.labels(log, outcome).inc()
        if merged_after is not None:
            metrics.ct_merge_delay.labels(log).observe(merged_after)

    return observe


def _revocation_kind(service: str, method: Method) -> str | None:
    """``crl`` or ``ocsp`` for the CA's methods that answer them."""
    if service != "ca":
        return None
    route = method.http or ""
    if method.stoq == "ocsp" or route in ("POST /ocsp", "GET /ocsp/{request:path}"):
        return "ocsp"
    if route.startswith("GET /ca/crl/"):
        return "crl"
    return None


def counted_services(services: Iterable[Service], metrics: NodeMetrics) -> list[Service]:
    """``services`` with the CA's CRL and OCSP methods counted (over HTTP and stoq/1)."""
    out = []
    for service in services:
        methods = []
        for method in service.methods:
            kind = _revocation_kind(service.name, method)
            if kind is not None:
                method = replace(method, handler=_counting(method.handler, metrics, kind))
            methods.append(method)
        out.append(replace(service, methods=tuple(methods)))
    return out


def _counting(handler: Handler, metrics: NodeMetrics, kind: str) -> Handler:
    ok = metrics.ca_revocation_requests.labels(kind, "ok")
    failed = metrics.ca_revocation_requests.labels(kind, "error")

    def handle(call: Call) -> Answer | Awaitable[Answer]:
        try:
            answer = handler(call)
        except Exception:
            failed.inc()
            raise
        if inspect.isawaitable(answer):
            return finish(answer)
        ok.inc()
        return answer

    async def finish(pending: Awaitable[Answer]) -> Answer:
        try:
            answer = await pending
        except Exception:
            failed.inc()
            raise
        ok.inc()
        return answer

    return handle


# --- scraping ---------------------------------------------------------------------------


def instrument(metrics: NodeMetrics, *, dns_service: DnsService, dns_listener: DnsListener,
               quic: QuicEndpoint, ct: LogRunner, cosigning: Cosigning, ca: CaRunner,
               consensus: ConsensusRunner, peers: Peers) -> None:
    """Hook the edges to ``metrics`` and register the collector of the node's state."""
    quic.observe_stoq(observe_stoq(metrics))
    ct.on_submission = observe_submission(metrics)
    ca.on_outcome = observe_issuance(metrics)
    consensus.on_commit_latency = metrics.consensus_commit_latency.observe

    def read() -> NodeState:
        server = dns_service.server
        engine = consensus.engine
        stats = quic.stats
        return NodeState(
            dns=DnsState(server.cache_hits, server.cache_misses, dns_listener.rrl.dropped,
                         dns_listener.rrl.slipped, dns_listener.udp_dropped,
                         len(server.zoneset.zones)),
            quic=QuicState(stats.accepted, quic.open_connections(), quic.retries(),
                           quic.refused(), quic.dropped(), dict(stats.streams)),
            logs=[CtLogState(name, lg.tree_size, _head_timestamp(lg.get_sth()),
                             cosigning.cosignatures(name), lg.pending)
                  for name, lg in ct.logs.items()],
            consensus=ConsensusState(
                height=engine.height - 1, round=engine.round,
                peers_connected=len(peers.connected()), validators=len(engine.validators),
                evidence=consensus.evidence_found, pool=len(consensus.ledger.pool),
                halted=consensus.halted is not None),
            now=time.time())

    metrics.register(Snapshot(read))


def _head_timestamp(sth: dict[str, object]) -> int:
    timestamp = sth["timestamp"]
    return timestamp if isinstance(timestamp, int) else 0


def with_metrics(app: ASGIApp, metrics: NodeMetrics) -> ASGIApp:
    """``app`` with ``GET /metrics`` in front (for the plain-HTTP listener only)."""

    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/metrics":
            await app(scope, receive, send)
            return
        if scope["method"] not in ("GET", "HEAD"):
            response = problem_response(Problem(405, "Method Not Allowed"))
            response.headers["allow"] = "GET, HEAD"
        else:
            accept = next((value.decode("latin-1") for name, value in scope["headers"]
                           if name == b"accept"), None)
            body, media_type = metrics.exposition(accept)
            response = Response(body, media_type=media_type,
                                headers={"cache-control": "no-store"})
        await response(scope, receive, send)

    return serve
