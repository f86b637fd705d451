"""The node's Prometheus metrics: their names, labels and buckets, in one registry a node.

One :class:`NodeMetrics` per node, made by the wiring (``trustchain/wiring/metrics.py``)
and served at ``GET /metrics`` on the plain-HTTP port in the Prometheus text format
(``prometheus_client``).  The registry is the node's own, never the library's global
default, so two nodes in one process (tests, the simulation) count apart.

Three kinds of metric, chosen by how often their event happens:

* counters and histograms of ``prometheus_client`` for events at request rate
  (CA issuances, CT submissions, stoq/1 requests, consensus commits), incremented at
  the edges by hooks the wiring sets;
* :class:`DnsTally` for DNS queries, the hot path: a dictionary lookup and increments
  per query (a ``prometheus_client`` child would take its lock twice a query, and the
  labels would be looked up each time), turned into counter and histogram families
  when scraped;
* :class:`Snapshot` collectors for what the node already knows (a log's tree size, the
  consensus height, QUIC connections open, counts the transports keep): read at scrape
  time through a function, so nothing is updated on the way.

Labels are small and bounded: transports, rcodes, zones this node serves (any other
name is ``other``), stoq/1 methods of the permission table (any other is ``other``),
log names, profiles, networks, rate-limit names, reason classes.  Never an address
or a query name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import dns.rcode
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

#: The media type of ``GET /metrics`` unless OpenMetrics is asked for (text format 0.0.4).
CONTENT_TYPE = CONTENT_TYPE_LATEST

#: DNS answer times: the answer cache serves in microseconds, the engine in tens of them.
DNS_BUCKETS = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
               0.01, 0.025, 0.1)
#: CT logs sequence every 0.2 s and answer once the head is signed and the tiles written.
MERGE_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0)
#: From an operation entering this node's pool to the commit of its block.
COMMIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)

#: The label value for a zone this node does not serve, or a method not in the table.
OTHER = "other"


class NodeMetrics:
    """The registry of one node and the metrics its edges count into."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # CPU seconds, memory, file descriptors
        PlatformCollector(registry=self.registry)  # the Python version
        r = self.registry
        self.dns = DnsTally()
        r.register(self.dns)
        self.stoq_requests = Counter(
            "trustchain_stoq_requests", "stoq/1 requests and pushes answered, by service, "
            "method (other: not in the permission table) and status (reset: the stream "
            "was reset by a handler failure)", ["service", "method", "status"], registry=r)
        self.ct_submissions = Counter(
            "trustchain_ct_submissions", "Chains submitted to this node's CT logs (by "
            "the CA here, other nodes, anyone over HTTP), by log and outcome: sequenced "
            "(a new entry covered by a signed head), duplicate (already in the log), "
            "refused (an invalid chain), failed (the log could not store it)",
            ["log", "outcome"], registry=r)
        self.ct_merge_delay = Histogram(
            "trustchain_ct_merge_delay_seconds", "From a new entry's acceptance to its "
            "inclusion under a signed tree head (when its SCT is handed out)", ["log"],
            buckets=MERGE_BUCKETS, registry=r)
        self.ca_issuances = Counter(
            "trustchain_ca_issuances", "Certificates issued (final certificates stored), "
            "by profile and network", ["profile", "network"], registry=r)
        self.ca_refusals = Counter(
            "trustchain_ca_refusals", "Certificate requests refused or failed, by reason "
            "class: not_authorised, policy, rate_limited, bad_request, ca (a step failed: "
            "a log, the linter, a signature), other", ["reason"], registry=r)
        self.ca_rate_limited = Counter(
            "trustchain_ca_rate_limited", "Requests refused by a rate limit (certificate "
            "requests; ACME new accounts, orders and validations), by the limit's name",
            ["limit"], registry=r)
        self.ca_revocation_requests = Counter(
            "trustchain_ca_revocation_requests", "CRL and OCSP requests (HTTP and stoq/1), "
            "by kind (crl, ocsp) and outcome (ok, error)", ["kind", "outcome"], registry=r)
        self.consensus_commit_latency = Histogram(
            "trustchain_consensus_commit_latency_seconds", "From an operation entering this "
            "node's pool (submitted here or gossiped) to the commit of the block that "
            "carries it", buckets=COMMIT_BUCKETS, registry=r)

    def register(self, collector: Collector) -> None:
        self.registry.register(collector)

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """Every metric now and its media type: the Prometheus text format, or OpenMetrics
        when ``accept`` (the request's Accept header) asks for it, as Prometheus does."""
        encode, media_type = choose_encoder(accept or "")
        return encode(self.registry), media_type


@dataclass
class Latency:
    """A histogram's counts by bucket (the last: above every bound) and their sum."""

    counts: list[int]
    total: float = 0.0


#: A DNS response's header rcode (0-15), or NO_ANSWER when nothing was sent.
NO_ANSWER = 16
#: Label values by rcode number; NO_ANSWER is ``none``.
RCODES = (*(dns.rcode.to_text(dns.rcode.Rcode.make(code)) for code in range(16)), "none")
#: Queries a transport's table of slots holds before it is folded into the totals.
DNS_SLOTS = 10_000
#: One DNS query in this many is timed (each handler's every 16th): the histogram is a
#: sample, so that timing costs the hot path next to nothing; the counts are exact.
DNS_TIMED_EVERY = 16


class DnsTally(Collector):
    """DNS queries answered, counted on the hot path without building a label tuple.

    A query repeats (clients ask the same questions; the answer cache is built on it),
    so each transport keeps a table from the query's bytes after the header to its
    counts by rcode (a plain list, indexed by the rcode, then :data:`NO_ANSWER`), and
    beside it the zone label of each: a query already seen costs a dictionary lookup
    and an increment.  One query in :data:`DNS_TIMED_EVERY`
    is timed (two clock reads and a bucket's increment would double that cost).  The table is folded into
    :attr:`queries` when it holds :data:`DNS_SLOTS` queries and when the zones served
    change (the zone labels may have); a scrape adds what it holds to those totals.
    """

    def __init__(self, buckets: Sequence[float] = DNS_BUCKETS) -> None:
        #: The buckets' upper bounds, ascending.
        self.bounds = tuple(buckets)
        #: (transport, rcode, zone) -> queries, folded from the tables.
        self.queries: dict[tuple[str, str, str], int] = {}
        #: transport -> the query after its header -> its counts by rcode.
        self.slots: dict[str, dict[bytes, list[int]]] = {}
        #: transport -> the query after its header -> its zone label.
        self.zones: dict[str, dict[bytes, str]] = {}
        #: transport -> the times of its queries.
        self.latencies: dict[str, Latency] = {}

    def slot(self, transport: str, key: bytes, zone: Callable[[], str]) -> list[int]:
        """The counts of the query ``key`` over ``transport`` (``zone``: its zone label,
        asked when the query is new)."""
        table = self.slots.get(transport)
        if table is None or len(table) >= DNS_SLOTS:
            if table is not None:
                self._fold(transport)
            table = self.slots[transport] = {}
            self.zones[transport] = {}
        slot = table.get(key)
        if slot is None:
            slot = table[key] = [0] * (NO_ANSWER + 1)
            self.zones[transport][key] = zone()
        return slot

    def fold(self) -> None:
        """Move every table's counts into :attr:`queries` (the zones served changed)."""
        for transport in list(self.slots):
            self._fold(transport)
        self.slots.clear()
        self.zones.clear()

    def _fold(self, transport: str) -> None:
        _add(self.queries, transport, self.slots[transport], self.zones[transport])

    def totals(self) -> dict[tuple[str, str, str], int]:
        """(transport, rcode, zone) -> queries answered, ever."""
        totals = dict(self.queries)
        for transport, table in self.slots.items():
            _add(totals, transport, table, self.zones[transport])
        return totals

    def latency(self, transport: str) -> Latency:
        """The histogram of ``transport``'s query times (made empty on first use)."""
        latency = self.latencies.get(transport)
        if latency is None:
            latency = self.latencies[transport] = Latency([0] * (len(self.bounds) + 1))
        return latency

    def collect(self) -> Iterator[Metric]:
        queries = CounterMetricFamily(
            "trustchain_dns_queries", "DNS queries answered, by transport (udp, tcp, doq, "
            "stoq), response code (none: no answer, as for a response or a runt) and zone "
            "(other: a name in no zone served here)", labels=["transport", "rcode", "zone"])
        for (transport, rcode, zone), count in sorted(self.totals().items()):
            queries.add_metric([transport, rcode, zone], count)
        yield queries
        latency = HistogramMetricFamily(
            "trustchain_dns_query_duration_seconds", "Time to answer a DNS query once read "
            "(the handler: answer cache or engine), by transport; a sample: one query in "
            f"{DNS_TIMED_EVERY} is timed", labels=["transport"])
        for transport, seen in sorted(self.latencies.items()):
            cumulative, buckets = 0, []
            for bound, count in zip([*map(_le, self.bounds), "+Inf"], seen.counts,
                                    strict=True):
                cumulative += count
                buckets.append((bound, float(cumulative)))
            latency.add_metric([transport], buckets, seen.total)
        yield latency


def _add(into: dict[tuple[str, str, str], int], transport: str,
         table: Mapping[bytes, list[int]], zones: Mapping[bytes, str]) -> None:
    for query, slot in table.items():
        zone = zones[query]
        for rcode, count in enumerate(slot):
            if count:
                key = (transport, RCODES[rcode], zone)
                into[key] = into.get(key, 0) + count


def _le(bound: float) -> str:
    return repr(float(bound))


# --- what the node knows, read at scrape time ------------------------------------------


@dataclass(frozen=True)
class DnsState:
    cache_hits: int
    cache_misses: int
    rrl_dropped: int
    rrl_slipped: int
    udp_queue_dropped: int
    zones: int


@dataclass(frozen=True)
class QuicState:
    accepted: int
    open: int
    retries: int
    refused: int
    dropped: int
    #: ALPN -> client-initiated bidirectional streams opened.
    streams: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class CtLogState:
    name: str
    tree_size: int
    #: The latest signed tree head's timestamp, Unix milliseconds (0: none signed yet).
    head_timestamp_ms: int
    #: Witness cosignatures held for the log's current checkpoint.
    cosignatures: int
    #: Entries accepted and waiting to be sequenced.
    pending: int = 0


@dataclass(frozen=True)
class ConsensusState:
    height: int
    round: int
    peers_connected: int
    validators: int
    evidence: int
    pool: int
    halted: bool


@dataclass(frozen=True)
class NodeState:
    dns: DnsState
    quic: QuicState
    logs: Sequence[CtLogState]
    consensus: ConsensusState
    #: Unix seconds now (checkpoint ages).
    now: float


class Snapshot(Collector):
    """The node's state as metrics, read through ``read`` when scraped."""

    def __init__(self, read: Callable[[], NodeState]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        state = self._read()
        yield from _dns(state.dns)
        yield from _quic(state.quic)
        yield from _ct(state.logs, state.now)
        yield from _consensus(state.consensus)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _dns(dns: DnsState) -> Iterable[Metric]:
    yield _counter("trustchain_dns_answer_cache_hits",
                   "DNS queries answered from the pre-rendered answer cache", dns.cache_hits)
    yield _counter("trustchain_dns_answer_cache_misses",
                   "DNS queries the engine answered (not in the answer cache)",
                   dns.cache_misses)
    rrl = CounterMetricFamily(
        "trustchain_dns_rrl_responses", "UDP answers withheld by response rate limiting "
        "(dns_rate_limit), by action: drop (nothing sent), slip (a truncated answer sent)",
        labels=["action"])
    rrl.add_metric(["drop"], dns.rrl_dropped)
    rrl.add_metric(["slip"], dns.rrl_slipped)
    yield rrl
    yield _counter("trustchain_dns_udp_queue_dropped",
                   "UDP DNS queries dropped unread: their client network had too many "
                   "waiting", dns.udp_queue_dropped)
    yield _gauge("trustchain_dns_zones", "Zones this node serves", dns.zones)


def _quic(quic: QuicState) -> Iterable[Metric]:
    yield _counter("trustchain_quic_connections_accepted",
                   "QUIC connections accepted (a connection state made for a client)",
                   quic.accepted)
    yield _gauge("trustchain_quic_connections_open", "QUIC connections open now", quic.open)
    yield _counter("trustchain_quic_retries_sent",
                   "Retry packets sent (stateless address validation under load)",
                   quic.retries)
    yield _counter("trustchain_quic_connections_refused",
                   "New QUIC connections refused: their address had too many open",
                   quic.refused)
    yield _counter("trustchain_quic_datagrams_dropped",
                   "QUIC datagrams dropped unread: their client network had too many "
                   "waiting", quic.dropped)
    streams = CounterMetricFamily(
        "trustchain_quic_streams", "Client-initiated bidirectional QUIC streams opened, by "
        "ALPN (doq, stoq/1, h3)", labels=["alpn"])
    for alpn, count in sorted(quic.streams.items()):
        streams.add_metric([alpn], count)
    yield streams


def _ct(logs: Sequence[CtLogState], now: float) -> Iterable[Metric]:
    size = GaugeMetricFamily("trustchain_ct_tree_size",
                             "Entries under the log's latest signed tree head", labels=["log"])
    age = GaugeMetricFamily(
        "trustchain_ct_checkpoint_age_seconds", "Seconds since the log signed its latest "
        "tree head (a log signs one only when entries arrive: an idle log ages; absent "
        "until the first)", labels=["log"])
    cosigned = GaugeMetricFamily(
        "trustchain_ct_checkpoint_cosignatures", "Witness cosignatures gathered for the "
        "log's current checkpoint", labels=["log"])
    pending = GaugeMetricFamily(
        "trustchain_ct_pending_entries", "New entries accepted by the log and waiting for "
        "the next sequencing (every 0.2 s)", labels=["log"])
    for state in logs:
        size.add_metric([state.name], state.tree_size)
        pending.add_metric([state.name], state.pending)
        if state.head_timestamp_ms:
            age.add_metric([state.name], max(0.0, now - state.head_timestamp_ms / 1000))
        cosigned.add_metric([state.name], state.cosignatures)
    yield from (size, age, cosigned, pending)


def _consensus(state: ConsensusState) -> Iterable[Metric]:
    yield _gauge("trustchain_consensus_height", "Height of the latest committed block",
                 state.height)
    yield _gauge("trustchain_consensus_round", "Round of the height being decided",
                 state.round)
    yield _gauge("trustchain_consensus_peers_connected",
                 "Other nodes this node holds a connection to", state.peers_connected)
    yield _gauge("trustchain_consensus_validators", "Validators of the current height",
                 state.validators)
    yield _counter("trustchain_consensus_evidence",
                   "Evidence of misbehaviour (double signing) found since the node started",
                   state.evidence)
    yield _gauge("trustchain_consensus_pool_operations",
                 "Operations waiting for a block", state.pool)
    yield _gauge("trustchain_consensus_halted",
                 "1 if the node stopped taking part (two blocks for one height)",
                 1.0 if state.halted else 0.0)
