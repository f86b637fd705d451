"""Answering DNS queries from the zones as published: the answer cache and zone transfers.

Queries go to :func:`trustchain.dns.engine.respond` over the current
:class:`~trustchain.dns.engine.ZoneSet`, which is replaced whole after every
accepted change, so readers never see a half-applied one.  Zone transfers
(AXFR, IXFR) go only to a zone's secondaries, proven by their TSIG keys.

Rendered answers are cached with what they were made from
(:class:`~trustchain.dns.engine.Dependencies`).  A new version of a zone
drops the answers that hold its SOA (the serial moved: every negative
answer), those about a name whose RRsets or existence changed or that lies
below one (delegations, closest enclosers, wildcards), and those holding an
NSEC/NSEC3 record that was re-signed.  When a version cannot say what
changed (built whole, signed whole, signed or unsigned anew), every answer
that touched the zone goes; when the set of zones changes, all of them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.tsig

from trustchain.dns.dnssec import SignedZone
from trustchain.dns.engine import (
    EDNS_PAYLOAD,
    TSIG_ERRORS,
    Dependencies,
    ZoneSet,
    question_type,
    respond,
)
from trustchain.dns.handler import QueryContext, header_only_response
from trustchain.dns.records import DnsRequestError
from trustchain.dns.xfr import Journal, transfer
from trustchain.dns.zone import SOA, Secondary, Zone

log = logging.getLogger("trustchain.dns")

#: Pre-rendered answers kept (the cache is emptied when full).
ANSWER_CACHE_SIZE = 100_000
#: Queries longer than this are answered but not cached (keys stay small).
ANSWER_CACHE_MAX_QUERY = 512

#: A zone's change journal for IXFR (the zone store's), oldest change first.
JournalOf = Callable[[dns.name.Name], Journal]
#: A cached answer's key: over UDP or not, and the query after its message ID.
CacheKey = tuple[bool, bytes]


class ZoneServer:
    """The published zones, answered from a cache of rendered responses."""

    def __init__(self, zoneset: ZoneSet, journal: JournalOf) -> None:
        self.zoneset = zoneset
        self._journal = journal
        self._cache: dict[CacheKey, bytes | None] = {}
        #: What each cached answer depends on, and the answers by what they depend on.
        self._depends: dict[CacheKey, Dependencies] = {}
        self._by_name: dict[dns.name.Name, set[CacheKey]] = {}
        self._by_nsec: dict[dns.name.Name, set[CacheKey]] = {}
        self._by_zone: dict[dns.name.Name, set[CacheKey]] = {}
        #: Publishing and caching a fresh answer exclude each other, so that an answer made
        #: from the version being replaced is never cached after the replacement (a
        #: version may be published from another thread than the one answering).
        self._lock = threading.Lock()
        self._secondaries: list[Secondary] = []
        self._keyring: dict[dns.name.Name, dns.tsig.Key] = {}
        #: Queries answered from the cache, and by the engine, ever (the node's metrics).
        self.cache_hits = 0
        self.cache_misses = 0

    def publish(self, zones: Mapping[dns.name.Name, Zone],
                signed: Mapping[dns.name.Name, SignedZone]) -> None:
        """Serve these zone versions from now on, dropping the cached answers they may
        change (all of them if the set of zones changes)."""
        with self._lock:
            old = self.zoneset
            self.zoneset = ZoneSet(zones, old.version + 1, signed)
            if zones.keys() != old.zones.keys():
                self._clear()
                return
            for origin, zone in zones.items():
                before, signed_before = old.zones[origin], old.signed.get(origin)
                if zone is before and signed.get(origin) is signed_before:
                    continue
                changed = _changed(before, zone, signed_before, signed.get(origin))
                self._drop(self._by_zone.pop(origin, ()))
                if changed is None:
                    self._drop(self._by_name.pop(origin, ()))
                    continue
                names, nsec = changed
                for name in names:
                    self._drop(self._by_name.pop(name, ()))
                for name in nsec:
                    self._drop(self._by_nsec.pop(name, ()))

    def _clear(self) -> None:
        self._cache, self._depends = {}, {}
        self._by_name, self._by_nsec, self._by_zone = {}, {}, {}

    def _drop(self, keys: Iterable[CacheKey]) -> None:
        """Forget these answers, and them in the indexes of what they depend on."""
        for key in list(keys):
            self._cache.pop(key, None)
            depends = self._depends.pop(key, None)
            if depends is None:
                continue
            for index, names in ((self._by_name, depends.names), (self._by_nsec, depends.nsec),
                                 (self._by_zone, depends.whole)):
                for name in names:
                    entries = index.get(name)
                    if entries is not None:
                        entries.discard(key)
                        if not entries:
                            del index[name]

    def _remember(self, key: CacheKey, response: bytes | None, depends: Dependencies) -> None:
        if len(self._cache) >= ANSWER_CACHE_SIZE:
            self._clear()
        self._cache[key] = response
        self._depends[key] = depends
        for index, names in ((self._by_name, depends.names), (self._by_nsec, depends.nsec),
                             (self._by_zone, depends.whole)):
            for name in names:
                index.setdefault(name, set()).add(key)

    def allow_transfers(self, secondaries: list[Secondary],
                        keyring: Mapping[dns.name.Name, dns.tsig.Key]) -> None:
        """Who may transfer which zone from now on, and the TSIG keys that prove it."""
        self._secondaries = secondaries
        self._keyring = dict(keyring)

    def zone(self, origin: dns.name.Name) -> Zone:
        """The zone served at ``origin``.

        :raises DnsRequestError: no such zone here.
        """
        zone = self.zoneset.zones.get(origin)
        if zone is None:
            raise DnsRequestError(f"no zone {origin}")
        return zone

    def handle(self, query: bytes, context: QueryContext) -> bytes | None:
        """Answer ``query``; the hot path never re-encodes.

        The engine's answer is a function of the query bytes after the
        message ID, the zone version and whether the transport is UDP
        (truncation), so rendered answers are cached under exactly that
        key and only the ID is patched in.  A zone change drops the
        answers it can affect (see the module's description).  (The question keeps the client's letter case,
        so 0x20-randomised queries are answered right, just less often
        from the cache.)
        """
        key = (context.transport == "udp", query[2:])
        try:
            cached = self._cache[key]
        except KeyError:
            self.cache_misses += 1
        else:
            self.cache_hits += 1
            return None if cached is None else query[:2] + cached[2:]
        zoneset = self.zoneset
        depends = Dependencies()
        response, cacheable = respond(query, zoneset, context, self._keyring, depends)
        if cacheable and len(query) <= ANSWER_CACHE_MAX_QUERY and len(query) >= 2:
            with self._lock:
                if self.zoneset is zoneset:  # else made from a version already replaced
                    self._remember(key, response, depends)
        return response

    def handle_stream(self, query: bytes, context: QueryContext) -> list[bytes]:
        """Answer a query on a stream (TCP): zone transfers give several messages.

        AXFR and IXFR need a TSIG signature by a key of one of the zone's
        secondaries; anything else is refused (EDE 18, prohibited).  Over DoQ
        the message IDs are 0, so signatures made here stay valid there.

        Whatever the bytes, the answer is a protocol answer or nothing, never
        an exception: malformed is FORMERR, a bad signature NOTAUTH, another
        opcode, class or EDNS version the engine's NOTIMP, REFUSED or BADVERS.
        A response (QR=1) gets nothing, on every transport, as the engine
        does: RFC 1035 section 4.1.1 makes QR=1 a response, and answering
        responses is how reflection loops start; the TCP adapter then closes
        the connection.
        """
        if question_type(query) not in (dns.rdatatype.AXFR, dns.rdatatype.IXFR):
            response = self.handle(query, context)
            return [] if response is None else [response]
        try:
            message = dns.message.from_wire(query, keyring=self._keyring or None)
        except TSIG_ERRORS:
            refusal = header_only_response(query, dns.rcode.NOTAUTH)
            return [refusal] if refusal else []
        except Exception:  # malformed: FORMERR, as for any query
            refusal = header_only_response(query, dns.rcode.FORMERR)
            return [refusal] if refusal else []
        if message.flags & dns.flags.QR:
            return []
        question = message.question[0]
        if (message.opcode() != dns.opcode.QUERY or message.edns > 0
                or question.rdclass != dns.rdataclass.IN):
            response = self.handle(query, context)  # NOTIMP, BADVERS or REFUSED
            return [] if response is None else [response]
        zone = self.zoneset.zones.get(question.name)
        allowed = {dns.name.from_text(s.key_name) for s in self._secondaries
                   if zone is not None and s.zone == zone.origin}
        if zone is None or not message.had_tsig or message.keyname not in allowed:
            refused = dns.message.make_response(message)
            refused.set_rcode(dns.rcode.NOTAUTH if zone is None else dns.rcode.REFUSED)
            if refused.edns >= 0:
                refused.use_edns(0, 0, EDNS_PAYLOAD,
                                 options=[dns.edns.EDEOption(dns.edns.EDECode.PROHIBITED)])
            return [refused.to_wire()]
        messages = transfer(message, zone, self._journal(zone.origin),
                            self.zoneset.signed.get(zone.origin))
        log.info("%s of %s (serial %d) to %s with key %s: %d messages%s",
                 dns.rdatatype.to_text(question.rdtype), zone.origin, zone.serial,
                 context.client, message.keyname, len(messages),
                 " (signed zone: sent in full)" if zone.origin in self.zoneset.signed else "")
        return messages


def _changed(before: Zone, after: Zone, signed_before: SignedZone | None,
             signed_after: SignedZone | None
             ) -> tuple[set[dns.name.Name], frozenset[dns.name.Name]] | None:
    """The names whose data or existence changed between two versions of a zone, and the
    NSEC/NSEC3 owners re-signed; None if that is unknown (drop the zone's answers)."""
    if (signed_before is None) != (signed_after is None):
        return None
    names: set[dns.name.Name] = set()
    if after is not before:
        keys = after.changes_since(before)
        if keys is None or after.delta is None:
            return None
        names = {name for name, rdtype in keys if (name, rdtype) != (after.origin, SOA)}
        names.update(after.delta.names)
    nsec: frozenset[dns.name.Name] = frozenset()
    if signed_after is not None and signed_after is not signed_before:
        if signed_after.resigned is None or signed_before is None \
                or signed_after.base is not signed_before.token:
            return None
        nsec = signed_after.resigned
    return names, nsec
