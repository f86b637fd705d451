"""DNS targets: queries over UDP (the engine behind the answer cache) and over streams
(TCP, DoQ, stoq/1: zone transfers with TSIG).

The rule, for any bytes: an answer or silence, never an exception; an answer
carries the query's ID with QR set, fits the transport (UDP: at most 1,232
bytes, streams: 65,535) and is never sent to a message that is itself a
response.  Inputs are real queries built with dnspython (random names,
types, classes, opcodes, flags, EDNS options and TSIG, with the right key,
a wrong secret or an unknown name) and those queries' bytes mutated.
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsig

from tests.fuzz.engine import Target, mutate
from tests.fuzz.node import at_exit
from tests.trustchain.dns.test_dnssec import NOW, _keys
from tests.trustchain.dns.zonedata import EXAMPLE
from transport.dns import TcpDnsProtocol
from trustchain.dns.dnssec import sign_zone
from trustchain.dns.engine import ZoneSet
from trustchain.dns.handler import QueryContext, Transport
from trustchain.dns.rrl import Action, ResponseRateLimiter, truncated
from trustchain.dns.serving import ZoneServer
from trustchain.dns.zone import Secondary, from_text

KEY_NAME = dns.name.from_text("xfr-key.")
KEY = dns.tsig.Key(KEY_NAME, b"fuzz-secret-fuzz-secret-fuzz-sec", dns.tsig.HMAC_SHA256)
WRONG = dns.tsig.Key(KEY_NAME, b"wrong-secret-wrong-secret-wrong-", dns.tsig.HMAC_SHA256)
UNKNOWN = dns.tsig.Key(dns.name.from_text("nobody."), b"x" * 32, dns.tsig.HMAC_SHA256)
UDP_LIMIT, STREAM_LIMIT = 1232, 65535
_QR = 0x8000

_TYPES = ("A", "AAAA", "NS", "SOA", "CNAME", "MX", "TXT", "DS", "DNSKEY", "NSEC", "NSEC3",
          "NSEC3PARAM", "RRSIG", "ANY", "AXFR", "IXFR", "OPT", "TSIG", "HINFO", "CDS", "TYPE0",
          "TYPE65535", "MAILB")
_LABELS = ("www", "WwW", "alias", "chain", "loop1", "out", "x.wild", "a.b.wc", "sub", "host.sub",
           "ns.sub", "a.b.c.deep", "mail", "big", "nope", "*", "@", "ns1", "\\000", "a" * 63)

DNS_TOKENS = (b"\x00\x00", b"\xc0\x0c", b"\xc0\xff", b"\x00\xfc", b"\x00\xfb", b"\x00\xff",
              b"\x00\x29", b"\x00\xfa", b"\x3f" + b"a" * 63, b"\x00\x01\x00\x01", b"\x80\x00",
              b"\x78\x00", b"\x00\x06")


def _zones() -> tuple[ZoneSet, dict[dns.name.Name, list[tuple[int, int, list[str], list[str]]]]]:
    plain = from_text(EXAMPLE)
    nsec = from_text(EXAMPLE.replace("example.net.", "nsec.example."))
    nsec3 = from_text(EXAMPLE.replace("example.net.", "nsec3.example."))
    signed = {nsec.origin: sign_zone(nsec, _keys(), NOW),
              nsec3.origin: sign_zone(nsec3, _keys(15), NOW, nsec3=True)}
    zones = {z.origin: z for z in (plain, nsec, nsec3)}
    soa = "example.net. 300 IN SOA ns1.example.net. hostmaster.example.net. {} 7200 3600 1209600 60"
    journal = {plain.origin: [(2026112400, 2026112500,
                               [soa.format(2026112400), "old.example.net. 300 IN A 192.0.2.9"],
                               [soa.format(2026112500)])]}
    return ZoneSet(zones, 1, signed), journal


def zone_server() -> ZoneServer:
    """The zones and transfer rights every DNS target answers from."""
    zoneset, journal = _zones()
    server = ZoneServer(zoneset, lambda origin: journal.get(origin, []))
    server.allow_transfers(
        [Secondary(origin, "192.0.2.99", 53, "xfr-key.") for origin in zoneset.zones],
        {KEY_NAME: KEY})
    return server


def build_query(rng: random.Random) -> bytes:
    """A query as a client (or an attacker with dnspython) would send it."""
    origin = rng.choice(("example.net.", "nsec.example.", "nsec3.example.", "elsewhere.org.", "."))
    rdtype = dns.rdatatype.from_text(rng.choice(_TYPES + ("AXFR", "IXFR") * 2))
    transfer = rdtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR)
    label = "@" if transfer and rng.random() < 0.7 else rng.choice(_LABELS)
    text = origin if label == "@" or origin == "." else f"{label}.{origin}"
    rdclass = rng.choice((dns.rdataclass.IN,) * 6 + (dns.rdataclass.CH, dns.rdataclass.ANY, 0))
    use_edns = rng.choice((False, 0, 0, 1))
    options: list[dns.edns.Option] = []
    if use_edns is not False and rng.random() < 0.3:
        options.append(dns.edns.GenericOption(rng.choice((8, 10, 12, 15, 65001)),  # type: ignore[arg-type]
                                              rng.randbytes(rng.randrange(12))))
    query = dns.message.make_query(
        text, rdtype, rdclass, use_edns=use_edns,  # type: ignore[arg-type]
        want_dnssec=rng.random() < 0.4, options=options or None,
        payload=rng.choice((0, 512, 1232, 4096, 65535)) if use_edns is not False else None)
    query.id = rng.choice((0, rng.randrange(65536)))
    if rng.random() < 0.1:
        query.flags |= rng.choice((dns.flags.QR, dns.flags.TC, dns.flags.AA, dns.flags.CD))
    if rng.random() < 0.1:
        query.set_opcode(rng.choice((dns.opcode.NOTIFY, dns.opcode.UPDATE, dns.opcode.IQUERY,
                                     dns.opcode.Opcode.make(3))))
    if rdtype == dns.rdatatype.IXFR or rng.random() < 0.05:
        query.authority.append(dns.rrset.from_text(
            text, 300, "IN", "SOA",
            f"ns1.example.net. h.example.net. {rng.choice((2026112400, 2026112500, 1, 0))} "
            "7200 3600 1209600 60"))
    if rng.random() < 0.05:
        query.question.append(query.question[0])
    if rng.random() < (0.8 if transfer else 0.3):
        key = rng.choice((KEY, KEY, KEY, WRONG, UNKNOWN))
        query.use_tsig({key.name: key}, keyname=key.name,
                       fudge=rng.choice((300, 0)), algorithm=dns.tsig.HMAC_SHA256)
    return query.to_wire()


def _seeds() -> list[bytes]:
    rng = random.Random(53)
    seeds = [build_query(rng) for _ in range(40)]
    # A response (QR=1) asking for a zone transfer (issue 14: an error in the log over TCP).
    axfr = dns.message.make_query("example.net.", "AXFR")
    axfr.flags |= dns.flags.QR
    seeds.append(axfr.to_wire())
    return seeds


def _check(query: bytes, answers: list[bytes], limit: int) -> None:
    for answer in answers:
        assert isinstance(answer, bytes) and 12 <= len(answer) <= limit, len(answer)
        assert answer[:2] == query[:2], "the answer does not carry the query's ID"
        assert struct.unpack_from("!H", answer, 2)[0] & _QR, "an answer without QR"
    if len(query) >= 12 and struct.unpack_from("!H", query, 2)[0] & _QR:
        assert not answers, "a response was answered"


def _structured(rng: random.Random, seed: bytes) -> bytes:
    return build_query(rng) if rng.random() < 0.6 else mutate(rng, seed, DNS_TOKENS)


def udp_target() -> Target:
    """The engine on every transport, then response rate limiting as the UDP adapter does
    it (a limit of one answer per second, so most answers slip: a TC answer from the query)."""
    server = zone_server()
    limiter = ResponseRateLimiter(responses_per_second=1, slip=2)
    transports: tuple[Transport, ...] = ("udp", "udp", "tcp", "doq", "stoq")

    def run(data: bytes) -> None:
        transport = transports[len(data) % len(transports)]
        answer = server.handle(data, QueryContext(transport, ("192.0.2.1", 5353)))
        _check(data, [] if answer is None else [answer],
               UDP_LIMIT if transport == "udp" else STREAM_LIMIT)
        if answer is not None and transport == "udp":
            if limiter.decide("192.0.2.1", data, answer, 0.0) is Action.SLIP:
                slipped = truncated(data)
                _check(data, [] if slipped is None else [slipped], UDP_LIMIT)

    return Target("dns-udp", run, (), _seeds(), DNS_TOKENS, _structured)


class _Transport:
    """What the TCP adapter writes, and whether it closed the connection."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False

    def get_extra_info(self, name: str) -> object:
        return ("192.0.2.99", 5353) if name == "peername" else None

    def write(self, data: bytes) -> None:
        assert not self.closed, "a write after close"
        self.written += data

    def close(self) -> None:
        self.closed = True


class _Errors(logging.Handler):
    """The ERRORs the adapter logs (a handler that raised), for the example to fail on."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def tcp_target() -> Target:
    """The TCP adapter: the bytes of one connection, cut into reads, pipelined queries
    answered through the stream handler (transfers included); nothing may be logged as a
    failure, and what is written is length-prefixed DNS answers."""
    server = zone_server()
    loop = asyncio.new_event_loop()
    at_exit(loop.close)
    logger = logging.getLogger("trustchain.dns")

    async def connection(data: bytes) -> _Transport:
        transport = _Transport()
        protocol = TcpDnsProtocol(server.handle_stream, idle_timeout=60.0)
        protocol.connection_made(transport)  # type: ignore[arg-type]
        for at in range(0, len(data), 97):
            if transport.closed:
                break
            protocol.data_received(data[at:at + 97])
        protocol.connection_lost(None)
        return transport

    def run(data: bytes) -> None:
        errors = _Errors()
        logger.addHandler(errors)
        try:
            written = bytes(loop.run_until_complete(connection(data)).written)
        finally:
            logger.removeHandler(errors)
        assert not errors.messages, errors.messages
        at = 0
        while at < len(written):
            size = int.from_bytes(written[at:at + 2], "big")
            assert 12 <= size and at + 2 + size <= len(written), "a malformed answer frame"
            at += 2 + size

    seeds = [b"".join(len(q).to_bytes(2, "big") + q for q in group)
             for group in zip(*[iter(_seeds())] * 3, strict=False)]
    return Target("dns-tcp", run, (), seeds, DNS_TOKENS + (b"\x00\x00", b"\xff\xff"))


def stream_target() -> Target:
    server = zone_server()

    def run(data: bytes) -> None:
        answers = server.handle_stream(data, QueryContext("tcp", ("192.0.2.99", 5353)))
        assert isinstance(answers, list)
        _check(data, answers, STREAM_LIMIT)

    return Target("dns-stream", run, (), _seeds(), DNS_TOKENS, _structured)
