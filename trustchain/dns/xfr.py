"""Zone transfers (RFC 5936 AXFR, RFC 1995 IXFR), pure: query in, response messages out.

The caller has already authorised the query (TSIG-signed with a key of one of
the zone's secondaries).  :func:`transfer` returns the DNS messages to send
over the stream, each signed in sequence when the query was signed (RFC
8945 section 5.3.1: every message carries a TSIG that chains on the previous
one).

IXFR is answered from the zone's change journal when the journal links the
client's serial to the current one; otherwise (or when the client is
already current) as RFC 1995 allows: the full zone in AXFR form, or just the
current SOA.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import dns.message
import dns.rdatatype
import dns.rrset

from trustchain.dns.dnssec import SignedZone
from trustchain.dns.zone import SOA, Zone

#: RRsets per message: small enough to stay far below 64 KiB for ordinary data.
RRSETS_PER_MESSAGE = 100

Journal = Sequence[tuple[int, int, list[str], list[str]]]


def _rrsets(lines: Iterable[str]) -> list[dns.rrset.RRset]:
    out = []
    for line in lines:
        name, ttl, rdclass, rdtype, data = line.split(None, 4)
        out.append(dns.rrset.from_text(name, int(ttl), rdclass, rdtype, data))
    return out


def _soa_of(lines: list[str]) -> tuple[list[dns.rrset.RRset], list[dns.rrset.RRset]]:
    rrsets = _rrsets(lines)
    return ([r for r in rrsets if r.rdtype == SOA], [r for r in rrsets if r.rdtype != SOA])


def ixfr_sequence(zone: Zone, journal: Journal, client_serial: int) -> list[dns.rrset.RRset] | None:
    """The RFC 1995 incremental answer, or None if the journal cannot link the serials."""
    start = next((i for i, entry in enumerate(journal) if entry[0] == client_serial), None)
    if start is None:
        return None
    answer: list[dns.rrset.RRset] = [zone.soa]
    expected = client_serial
    for serial_from, serial_to, removed, added in journal[start:]:
        if serial_from != expected:
            return None  # a gap (e.g. a replaced zone): fall back to a full transfer
        old_soa, deletions = _soa_of(removed)
        new_soa, additions = _soa_of(added)
        if len(old_soa) != 1 or len(new_soa) != 1:
            return None
        answer += old_soa + deletions + new_soa + additions
        expected = serial_to
    if expected != zone.serial:
        return None
    answer.append(zone.soa)
    return answer


def transfer(query: dns.message.Message, zone: Zone, journal: Journal,
             signed: SignedZone | None = None) -> list[bytes]:
    """The wire messages answering an AXFR or IXFR ``query`` for ``zone``.

    A signed zone is transferred with its DNSKEY, RRSIG and NSEC records.  Its
    journal holds only the unsigned changes, so IXFR of a signed zone is
    answered in full (RFC 1995 allows it) until signed changes are journalled.
    """
    qtype = query.question[0].rdtype
    sequence: list[dns.rrset.RRset] | None = None
    if qtype == dns.rdatatype.IXFR:
        client = [r for r in query.authority if r.rdtype == SOA]
        if client:
            serial = int(client[0][0].serial)
            if serial == zone.serial:
                sequence = [zone.soa]
            elif signed is None:
                sequence = ixfr_sequence(zone, journal, serial)
    if sequence is None:
        body = [r for r in zone.sorted_rrsets() if r.rdtype != SOA]
        if signed is not None:
            body += [signed.dnskey, *signed.extra.values(), *signed.nsec.values(),
                     *signed.nsec3.values(),
                     *signed.rrsigs.values()]
        sequence = [zone.soa, *body, zone.soa]
    wires = []
    context = None
    for start in range(0, len(sequence), RRSETS_PER_MESSAGE):
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        for rrset in sequence[start : start + RRSETS_PER_MESSAGE]:
            response.answer.append(rrset)
        wires.append(response.to_wire(max_size=65535, multi=True, tsig_ctx=context))
        context = response.tsig_ctx
    return wires
