"""The authoritative query engine: query wire in, response wire out.

Pure and synchronous: ``answer(query, zones, context)`` reads an immutable
:class:`ZoneSet` and returns the response bytes, or ``None`` when nothing must
be sent (a response, or bytes too short to answer).  The algorithm is RFC
1034 section 4.3.2 with RFC 4592 wildcards, RFC 2308 negative answers,
RFC 6891 EDNS, RFC 8482 for ANY and RFC 8914 extended errors:

* not our zone: REFUSED (EDE 20, not authoritative);
* below a delegation: referral, AA clear, NS in authority, glue in additional;
* the name exists: its RRset, or a CNAME followed through the zones we
  serve (at most 8 links), or NODATA with the SOA;
* it does not exist: a wildcard answer synthesised for the query name, or
  NXDOMAIN with the SOA;
* malformed: FORMERR; other opcodes: NOTIMP; EDNS version > 0: BADVERS;
* over UDP an answer larger than the client's buffer (512 without EDNS) is
  sent truncated (TC) so the client retries over TCP.

Responses are minimal: no NS set or addresses beyond what the answer needs
(glue for referrals).  The question section echoes the query's case, and so
does the owner name of the first answer record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsig

from trustchain.dns.dnssec import SignedZone
from trustchain.dns.handler import QueryContext, header_only_response
from trustchain.dns.zone import CNAME, NS, SOA, Zone

#: The UDP payload size we advertise and never exceed (DNS Flag Day 2020).
EDNS_PAYLOAD = 1232
MAX_CNAME_CHAIN = 8
_STREAM_LIMIT = 65535
_AUTHORITATIVE = dns.flags.AA
#: Failures to verify a TSIG-signed message: answered NOTAUTH (RFC 8945 section 5.2).
TSIG_ERRORS = (dns.message.UnknownTSIGKey, dns.tsig.BadSignature, dns.tsig.BadTime,
               dns.tsig.BadAlgorithm, dns.tsig.BadKey, dns.tsig.PeerError)


@dataclass(frozen=True)
class ZoneSet:
    """The zones a node serves, by origin.  Immutable: replaced whole on every change."""

    zones: Mapping[dns.name.Name, Zone]
    version: int = 0
    #: The DNSSEC data of the signed zones, by origin.
    signed: Mapping[dns.name.Name, SignedZone] = field(default_factory=dict)

    def find(self, name: dns.name.Name) -> Zone | None:
        """The zone with the longest origin that encloses ``name``."""
        while True:
            zone = self.zones.get(name)
            if zone is not None:
                return zone
            if name == dns.name.root or len(name) <= 1:
                return None
            name = name.parent()


@dataclass
class Dependencies:
    """What an answer was made from, so that a cache of answers can drop exactly the
    ones a zone change can affect (:class:`trustchain.dns.serving.ZoneServer`)."""

    #: Names whose data, existence or delegation the answer reflects: the names looked
    #: up, every name above them up to their zone's apex (delegations, closest
    #: enclosers), the wildcards that could have matched, and the glue owners.
    names: set[dns.name.Name] = field(default_factory=set)
    #: Owners of the NSEC and NSEC3 records the answer holds.
    nsec: set[dns.name.Name] = field(default_factory=set)
    #: Apexes of the zones the answer depends on whole: it holds their SOA (whose serial
    #: moves with every version) or something derived from it.
    whole: set[dns.name.Name] = field(default_factory=set)

    def note(self, zone: Zone, name: dns.name.Name) -> None:
        """The answer looked ``name`` up in ``zone``."""
        self.names.add(name)
        while name != zone.origin and len(name) > len(zone.origin):
            name = name.parent()
            self.names.add(name)
            self.names.add(dns.name.Name((b"*", *name.labels)))

    def held(self, response: dns.message.Message) -> None:
        """The SOA and NSEC/NSEC3 records ``response`` holds."""
        for section in (response.answer, response.authority, response.additional):
            for rrset in section:
                rdtype = rrset.covers if rrset.rdtype == dns.rdatatype.RRSIG else rrset.rdtype
                if rdtype == SOA:
                    self.whole.add(rrset.name)
                elif rdtype in (dns.rdatatype.NSEC, dns.rdatatype.NSEC3):
                    self.nsec.add(rrset.name)


def answer(query: bytes, zones: ZoneSet, context: QueryContext,
           keyring: Mapping[dns.name.Name, dns.tsig.Key] | None = None) -> bytes | None:
    """The response to ``query`` (``None``: send nothing).

    :param keyring: TSIG keys; a signed query is verified with them and its
        response signed (RFC 8945), an unverifiable one gets NOTAUTH.
    """
    return respond(query, zones, context, keyring)[0]


def respond(query: bytes, zones: ZoneSet, context: QueryContext,
            keyring: Mapping[dns.name.Name, dns.tsig.Key] | None = None,
            depends: Dependencies | None = None) -> tuple[bytes | None, bool]:
    """Like :func:`answer`, and whether the answer may be cached (not for signed queries).

    :param depends: filled with what the answer was made from.
    """
    try:
        message = dns.message.from_wire(query, keyring=keyring or None)
    except dns.message.ShortHeader:
        return None, True
    except TSIG_ERRORS:
        return header_only_response(query, dns.rcode.NOTAUTH), False
    except Exception:  # every parse failure of untrusted bytes is FORMERR (dnspython raises widely)
        return header_only_response(query, dns.rcode.FORMERR), True
    return _answer(message, zones, context, depends or Dependencies()), not message.had_tsig


def _answer(message: dns.message.Message, zones: ZoneSet, context: QueryContext,
            depends: Dependencies) -> bytes | None:
    if message.flags & dns.flags.QR:
        return None
    if message.opcode() != dns.opcode.QUERY:
        return _render(_error(message, dns.rcode.NOTIMP, dns.edns.EDECode.NOT_SUPPORTED), message,
                       context)
    if len(message.question) != 1:
        return _render(_error(message, dns.rcode.FORMERR), message, context)
    if message.edns > 0:
        return _render(_error(message, dns.rcode.BADVERS), message, context)
    question = message.question[0]
    if question.rdtype == dns.rdatatype.IXFR and context.transport == "udp":
        zone = zones.zones.get(question.name)
        if zone is not None:  # RFC 1995 section 2: "use TCP" is said with the current SOA
            response = _response(message)
            response.flags |= _AUTHORITATIVE
            response.answer.append(zone.soa)
            depends.held(response)
            return _render(response, message, context)
    if question.rdclass != dns.rdataclass.IN or question.rdtype in (
        dns.rdatatype.AXFR, dns.rdatatype.IXFR, dns.rdatatype.OPT,
    ):
        code = dns.rcode.REFUSED if question.rdclass != dns.rdataclass.IN else dns.rcode.NOTIMP
        return _render(_error(message, code, dns.edns.EDECode.NOT_SUPPORTED), message, context)
    zone = zones.find(question.name)
    if zone is not None and question.rdtype == dns.rdatatype.DS and question.name == zone.origin \
            and len(zone.origin) > 1 and (parent := zones.find(zone.origin.parent())) is not None:
        zone = parent  # DS belongs to the parent side of the cut (RFC 4035 section 3.1.4.1)
    if zone is None:
        return _render(
            _error(message, dns.rcode.REFUSED, dns.edns.EDECode.NOT_AUTHORITATIVE), message, context
        )
    response = _response(message)
    response.flags |= _AUTHORITATIVE
    _resolve(response, zones, zone, question.name, question.rdtype, depends)
    depends.held(response)
    return _render(response, message, context)


def question_type(query: bytes) -> int | None:
    """The QTYPE of a one-question query, read without a full parse (None if unclear)."""
    if len(query) < 17 or query[4:6] != b"\x00\x01":
        return None
    offset = 12
    while offset < len(query):
        length = query[offset]
        if length == 0:
            return int.from_bytes(query[offset + 1 : offset + 3], "big") if offset + 3 <= len(
                query) else None
        if length & 0xC0:
            return None
        offset += 1 + length
    return None


def _response(query: dns.message.Message) -> dns.message.Message:
    response = dns.message.make_response(query, our_payload=EDNS_PAYLOAD)
    if query.edns >= 0 and query.ednsflags & dns.flags.DO:
        response.ednsflags |= dns.flags.DO
    return response


def _error(query: dns.message.Message, rcode: dns.rcode.Rcode,
           ede: dns.edns.EDECode | None = None) -> dns.message.Message:
    response = _response(query)
    if rcode == dns.rcode.BADVERS:
        response.use_edns(0, 0, EDNS_PAYLOAD)
    response.set_rcode(rcode)
    if ede is not None and response.edns >= 0:
        response.use_edns(0, response.ednsflags, EDNS_PAYLOAD,
                          options=[dns.edns.EDEOption(ede)])
    return response


def _owned(rrset: dns.rrset.RRset, name: dns.name.Name) -> dns.rrset.RRset:
    """``rrset`` with ``name`` as owner (its case, or a wildcard's expansion)."""
    if rrset.name.to_wire() == name.to_wire():
        return rrset
    copy = dns.rrset.RRset(name, rrset.rdclass, rrset.rdtype)
    copy.update(rrset)
    copy.ttl = rrset.ttl
    return copy


class _Signer:
    """Adds DNSSEC records to a response when the client set DO and the zone is signed.

    Denial of existence uses the zone's NSEC chain, or its NSEC3 chain (closest
    encloser proofs, RFC 5155 section 7.2) when the zone is signed with NSEC3.
    """

    def __init__(self, response: dns.message.Message, signed: SignedZone | None, wanted: bool):
        self.response = response
        self.signed = signed if wanted else None

    def rrsig(self, section: list[dns.rrset.RRset], owner: dns.name.Name, rdtype: int,
              name: dns.name.Name | None = None) -> None:
        if self.signed is None:
            return
        sigs = self.signed.rrsig(owner, rdtype)
        if sigs is not None:
            section.append(_owned(sigs, name or owner))

    def _add(self, record: dns.rrset.RRset) -> None:
        if record not in self.response.authority:
            self.response.authority.append(record)
            self.rrsig(self.response.authority, record.name, record.rdtype)

    def _nsec3(self, name: dns.name.Name, *, match: bool) -> None:
        assert self.signed is not None
        owner = self.signed.hashed(name) if match else self.signed.nsec3_covering(name)
        record = self.signed.nsec3.get(owner)
        if record is not None:
            self._add(record)

    def _closest_encloser(self, zone: Zone, name: dns.name.Name) -> None:
        """NSEC3 matching the closest encloser, and covering the next closer name."""
        encloser, next_closer = name, name
        while encloser not in zone.names:
            next_closer, encloser = encloser, encloser.parent()
        self._nsec3(encloser, match=True)
        self._nsec3(next_closer, match=False)

    def nxdomain(self, zone: Zone, name: dns.name.Name) -> None:
        """Prove ``name`` and the wildcard that could have matched it do not exist."""
        if self.signed is None:
            return
        source = _wildcard_source(zone, name)
        if self.signed.nsec3:
            self._closest_encloser(zone, name)
            self._nsec3(source, match=False)
        else:
            self._add(self.signed.nsec[self.signed.covering(name)])
            self._add(self.signed.nsec[self.signed.covering(source)])

    def wildcard_answer(self, zone: Zone, name: dns.name.Name) -> None:
        """A wildcard answered: prove the exact name does not exist."""
        if self.signed is None:
            return
        if self.signed.nsec3:
            self._closest_encloser(zone, name)
        else:
            self._add(self.signed.nsec[self.signed.covering(name)])

    def nodata(self, zone: Zone, owner: dns.name.Name, name: dns.name.Name) -> None:
        """Prove ``owner`` (``name`` itself, or the wildcard for it) lacks the type."""
        if self.signed is None:
            return
        if self.signed.nsec3:
            if owner != name:  # wildcard NODATA: closest encloser, then the wildcard itself
                self._closest_encloser(zone, name)
            self._nsec3(owner, match=True)
            return
        if owner != name:
            self._add(self.signed.nsec[self.signed.covering(name)])
        if owner in self.signed.nsec:
            self._add(self.signed.nsec[owner])
        else:  # an empty non-terminal: covered, with the names below it next
            self._add(self.signed.nsec[self.signed.covering(owner)])

    def insecure_delegation(self, cut: dns.name.Name) -> None:
        """Prove there is no DS at ``cut``."""
        if self.signed is None:
            return
        if self.signed.nsec3:
            self._nsec3(cut, match=True)
        else:
            self._add(self.signed.nsec[cut])


def _resolve(response: dns.message.Message, zones: ZoneSet, zone: Zone,
             qname: dns.name.Name, qtype: int, depends: Dependencies) -> None:
    want_dnssec = bool(response.ednsflags & dns.flags.DO)
    name = qname
    if qtype in (dns.rdatatype.ANY, dns.rdatatype.NSEC, dns.rdatatype.NSEC3):
        depends.whole.add(zone.origin)  # (RFC 8482's answer has the SOA's minimum as TTL)
    for _ in range(MAX_CNAME_CHAIN + 1):
        depends.note(zone, name)
        signed = zones.signed.get(zone.origin)
        signer = _Signer(response, signed, want_dnssec)
        cut = zone.cut_above(name)
        if cut is not None and not (qtype == dns.rdatatype.DS and name == cut):
            _referral(response, zone, cut, signer)
            depends.names.update(rdata.target for rdata in zone.get(cut, NS) or ())
            return
        owner = name if name in zone.names else _wildcard(zone, name)
        if owner is None:
            _negative(response, zone, signer)
            signer.nxdomain(zone, name)
            response.set_rcode(dns.rcode.NXDOMAIN)
            return
        if qtype == dns.rdatatype.ANY:
            # RFC 8482: a minimal, non-empty answer instead of everything at the name.
            response.answer.append(dns.rrset.from_text(
                name, zone.soa[0].minimum, "IN", "HINFO", '"RFC8482" ""'))
            return
        rrset = _lookup(zone, signed, owner, qtype)
        if rrset is not None:
            response.answer.append(_owned(rrset, name))
            signer.rrsig(response.answer, owner, qtype, name)
            if owner != name:
                signer.wildcard_answer(zone, name)
            return
        cname = zone.get(owner, CNAME)
        if cname is None:
            _negative(response, zone, signer)
            signer.nodata(zone, owner, name)
            return
        response.answer.append(_owned(cname, name))
        signer.rrsig(response.answer, owner, CNAME, name)
        if owner != name:
            signer.wildcard_answer(zone, name)
        name = cname[0].target
        next_zone = zones.find(name)
        if next_zone is None:
            return  # the target is not ours: the resolver follows it
        zone = next_zone


def _lookup(zone: Zone, signed: SignedZone | None, name: dns.name.Name,
            rdtype: int) -> dns.rrset.RRset | None:
    """Zone data, plus the DNSKEY and NSEC records of a signed zone."""
    if signed is not None:
        if rdtype == dns.rdatatype.DNSKEY and name == zone.origin:
            return signed.dnskey
        if rdtype == dns.rdatatype.NSEC:
            return signed.nsec.get(name)
        if (name, rdtype) in signed.extra:
            return signed.extra[(name, rdtype)]
    return zone.get(name, rdtype)


def _wildcard_source(zone: Zone, name: dns.name.Name) -> dns.name.Name:
    encloser = name
    while encloser not in zone.names:
        encloser = encloser.parent()
    return dns.name.Name((b"*", *encloser.labels))


def _wildcard(zone: Zone, name: dns.name.Name) -> dns.name.Name | None:
    """The source of synthesis for a name that does not exist (RFC 4592), if any."""
    source = _wildcard_source(zone, name)
    return source if source in zone.names and zone.types_at(source) else None


def _referral(response: dns.message.Message, zone: Zone, cut: dns.name.Name,
              signer: _Signer) -> None:
    ns = zone.get(cut, NS)
    assert ns is not None
    if not response.answer:
        response.flags &= ~_AUTHORITATIVE
    response.authority.append(ns)
    ds = zone.get(cut, dns.rdatatype.DS)
    if ds is not None and signer.signed is not None:
        response.authority.append(ds)
        signer.rrsig(response.authority, cut, dns.rdatatype.DS)
    else:
        signer.insecure_delegation(cut)
    for rdata in ns:
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            glue = zone.get(rdata.target, rdtype)
            if glue is not None and glue not in response.additional:
                response.additional.append(glue)


def _negative(response: dns.message.Message, zone: Zone, signer: _Signer) -> None:
    soa = zone.soa
    negative_ttl = min(soa.ttl, soa[0].minimum)
    authority = dns.rrset.RRset(soa.name, soa.rdclass, SOA)
    authority.update(soa)
    authority.ttl = negative_ttl
    response.authority.append(authority)
    if signer.signed is not None:
        sigs = signer.signed.rrsig(zone.origin, SOA)
        if sigs is not None:
            copy = dns.rrset.RRset(sigs.name, sigs.rdclass, sigs.rdtype, sigs.covers)
            copy.update(sigs)
            copy.ttl = negative_ttl
            response.authority.append(copy)


def _render(response: dns.message.Message, query: dns.message.Message,
            context: QueryContext) -> bytes:
    if context.transport == "udp":
        limit = max(512, min(query.payload, EDNS_PAYLOAD)) if query.edns >= 0 else 512
    else:
        limit = _STREAM_LIMIT
    try:
        return response.to_wire(max_size=limit)
    except dns.exception.TooBig:
        response.answer.clear()
        response.authority.clear()
        response.additional.clear()
        response.flags |= dns.flags.TC
        return response.to_wire(max_size=limit)
