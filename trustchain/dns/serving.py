"""Answering DNS queries from the zones as published: the answer cache and zone transfers.

Queries go to :func:`trustchain.dns.engine.respond` over the current
:class:`~trustchain.dns.engine.ZoneSet`, which is replaced whole after every
accepted change, so readers never see a half-applied one.  Zone transfers
(AXFR, IXFR) go only to a zone's secondaries, proven by their TSIG keys.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

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
from trustchain.dns.engine import EDNS_PAYLOAD, TSIG_ERRORS, ZoneSet, question_type, respond
from trustchain.dns.handler import QueryContext, header_only_response
from trustchain.dns.records import DnsRequestError
from trustchain.dns.xfr import Journal, transfer
from trustchain.dns.zone import Secondary, Zone

log = logging.getLogger("trustchain.dns")

#: Pre-rendered answers kept per zone version (the cache is emptied when full).
ANSWER_CACHE_SIZE = 100_000
#: Queries longer than this are answered but not cached (keys stay small).
ANSWER_CACHE_MAX_QUERY = 512

#: A zone's change journal for IXFR (the zone store's), oldest change first.
JournalOf = Callable[[dns.name.Name], Journal]


class ZoneServer:
    """The published zones, answered from a cache of rendered responses."""

    def __init__(self, zoneset: ZoneSet, journal: JournalOf) -> None:
        self.zoneset = zoneset
        self._journal = journal
        self._cache: dict[tuple[bool, bytes], bytes | None] = {}
        self._secondaries: list[Secondary] = []
        self._keyring: dict[dns.name.Name, dns.tsig.Key] = {}

    def publish(self, zones: Mapping[dns.name.Name, Zone],
                signed: Mapping[dns.name.Name, SignedZone]) -> None:
        """Serve these zone versions from now on (cached answers are dropped)."""
        self.zoneset = ZoneSet(zones, self.zoneset.version + 1, signed)
        self._cache = {}

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
        key and only the ID is patched in.  The cache is replaced with
        every zone change.  (The question keeps the client's letter case,
        so 0x20-randomised queries are answered right, just less often
        from the cache.)
        """
        key = (context.transport == "udp", query[2:])
        try:
            cached = self._cache[key]
        except KeyError:
            pass
        else:
            return None if cached is None else query[:2] + cached[2:]
        response, cacheable = respond(query, self.zoneset, context, self._keyring)
        if cacheable and len(query) <= ANSWER_CACHE_MAX_QUERY and len(query) >= 2:
            if len(self._cache) >= ANSWER_CACHE_SIZE:
                self._cache = {}
            self._cache[key] = response
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
