"""Queries on streams (TCP, DoQ) that are not plain zone-transfer requests: a protocol
answer or silence, never an exception, never a transfer (issue 14)."""

from __future__ import annotations

import asyncio
import logging

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.tsig
import pytest

from tests.fuzz.dns import KEY, KEY_NAME, zone_server
from transport.dns import TcpDnsProtocol
from trustchain.dns.handler import QueryContext

TCP = QueryContext("tcp", ("192.0.2.99", 5353))


def axfr(*, signed: bool = True, rdclass: str = "IN") -> dns.message.Message:
    query = dns.message.make_query("example.net.", "AXFR", rdclass)
    if signed:
        query.use_tsig({KEY_NAME: KEY}, keyname=KEY_NAME, algorithm=dns.tsig.HMAC_SHA256)
    return query


def rcodes(answers: list[bytes]) -> list[int]:
    return [answer[3] & 0x0F for answer in answers]


def test_a_signed_transfer_request_still_transfers() -> None:
    query = axfr()
    (answer,) = zone_server().handle_stream(query.to_wire(), TCP)
    response = dns.message.from_wire(answer, keyring={KEY_NAME: KEY}, request_mac=query.mac,
                                     xfr=True)
    assert response.rcode() == dns.rcode.NOERROR and len(response.answer) > 2


@pytest.mark.parametrize("signed", [True, False])
def test_a_response_asking_for_a_transfer_gets_no_answer(signed: bool) -> None:
    """Issue 14: a message with QR=1 and an AXFR question raised FormError (no answer,
    a traceback in the log).  A response is never answered, as on UDP."""
    message = axfr(signed=signed)
    message.flags |= dns.flags.QR
    assert zone_server().handle_stream(message.to_wire(), TCP) == []


def test_other_opcodes_classes_and_edns_versions_get_the_engines_answer() -> None:
    """Not a transfer: NOTIFY or UPDATE with an AXFR question, an AXFR in class CH, and
    EDNS version 1 (the zone was sent for each, whatever the opcode or class)."""
    server = zone_server()
    notify = axfr(signed=False)
    notify.set_opcode(dns.opcode.NOTIFY)
    chaos = axfr(rdclass="CH")
    future = dns.message.make_query("example.net.", "AXFR", use_edns=1)
    future.use_tsig({KEY_NAME: KEY}, keyname=KEY_NAME, algorithm=dns.tsig.HMAC_SHA256)
    for query, rcode in ((notify, dns.rcode.NOTIMP), (chaos, dns.rcode.REFUSED)):
        assert rcodes(server.handle_stream(query.to_wire(), TCP)) == [rcode]
    (answer,) = server.handle_stream(future.to_wire(), TCP)
    response = dns.message.from_wire(answer, keyring={KEY_NAME: KEY}, request_mac=future.mac)
    assert response.rcode() == dns.rcode.BADVERS and not response.answer


def test_malformed_and_badly_signed_transfer_requests() -> None:
    server = zone_server()
    wire = axfr().to_wire()
    assert rcodes(server.handle_stream(wire[:-3], TCP)) == [dns.rcode.FORMERR]
    forged = bytearray(wire)
    forged[-20] ^= 1  # inside the MAC (32 bytes, then 6 of ID, error and other length)
    assert rcodes(server.handle_stream(bytes(forged), TCP)) == [dns.rcode.NOTAUTH]


class _Transport:
    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def get_extra_info(self, name: str) -> object:
        return None

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True


async def test_tcp_closes_quietly_after_a_response_with_a_transfer_question(
        caplog: pytest.LogCaptureFixture) -> None:
    """The TCP adapter over the same handler: no ERROR, no traceback; the connection is
    closed, as for any message it has nothing to say to."""
    message = axfr(signed=False)
    message.flags |= dns.flags.QR
    wire = message.to_wire()
    transport = _Transport()
    protocol = TcpDnsProtocol(zone_server().handle_stream, idle_timeout=10.0)
    with caplog.at_level(logging.INFO, logger="trustchain.dns"):
        protocol.connection_made(transport)  # type: ignore[arg-type]
        protocol.data_received(len(wire).to_bytes(2, "big") + wire)
        protocol.connection_lost(None)
    assert transport.closed and transport.written == b""
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    await asyncio.sleep(0)
