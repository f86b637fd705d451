"""stoq/1 and DoQ cores joined in memory: two QuicConnections, a scripted clock,
no sockets (aioquic's own tests work the same way)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, QuicEvent

from tests.pki import node_pki
from transport.tls import client_configuration, server_configuration
from trustchain.identity import TlsIdentity
from trustchain.stoq import doq
from trustchain.stoq.connection import (
    PushReceived,
    RequestFailed,
    RequestReceived,
    ResponseReceived,
    StoqClient,
    StoqServer,
    StreamRejected,
)
from trustchain.stoq.framing import ErrorCode, Request, Response, encode_frame

SERVER_ADDR = ("::1", 4433)
CLIENT_ADDR = ("::1", 1234)
NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def pki() -> tuple[TlsIdentity, object]:
    made = node_pki(now=NOW)
    return made.identity("n1", dns_names=["trust.example.net"]), made.root


@dataclass
class Pair:
    client: QuicConnection
    server: QuicConnection
    now: float = 0.0
    server_events: list[QuicEvent] = field(default_factory=list)
    client_events: list[QuicEvent] = field(default_factory=list)

    def roundtrip(self, rounds: int = 6) -> None:
        """Move datagrams both ways until quiet (bounded)."""
        for _ in range(rounds):
            self.now += 0.01  # let the congestion controller's pacer release data
            moved = 0
            for data, _ in self.client.datagrams_to_send(now=self.now):
                self.server.receive_datagram(data, CLIENT_ADDR, now=self.now)
                moved += 1
            for data, _ in self.server.datagrams_to_send(now=self.now):
                self.client.receive_datagram(data, SERVER_ADDR, now=self.now)
                moved += 1
            self._drain()
            if not moved:
                return

    def client_close_event(self) -> ConnectionTerminated:
        """Run the client's timers until its draining period ends; return why it closed."""
        for _ in range(10):
            timer = self.client.get_timer()
            if timer is None:
                break
            self.now = max(self.now, timer)
            self.client.handle_timer(now=self.now)
            self._drain()
            closed = [e for e in self.client_events if isinstance(e, ConnectionTerminated)]
            if closed:
                return closed[0]
        raise AssertionError("the client connection did not close")

    def _drain(self) -> None:
        for conn, sink in ((self.server, self.server_events), (self.client, self.client_events)):
            while (event := conn.next_event()) is not None:
                sink.append(event)

    def take(self, which: str) -> Iterator[QuicEvent]:
        sink = self.server_events if which == "server" else self.client_events
        events, sink[:] = list(sink), []
        return iter(events)


def make_pair(pki, alpn: str) -> Pair:
    identity, root = pki
    client = QuicConnection(configuration=client_configuration(
        root=root, server_name="trust.example.net", alpn=alpn))
    server = QuicConnection(configuration=server_configuration(
        identity, root=root, alpn_protocols=["doq", "stoq/1"], idle_timeout=60),
        original_destination_connection_id=client.original_destination_connection_id)
    pair = Pair(client, server)
    client.connect(SERVER_ADDR, now=0.0)
    pair.roundtrip()
    pair.take("server"), pair.take("client")
    return pair


def test_stoq_request_response_in_memory(pki) -> None:
    pair = make_pair(pki, "stoq/1")
    server, client = StoqServer(pair.server), StoqClient(pair.client)
    sid = client.send_request("dns", "query", b"\x00" * 30)
    pair.roundtrip()
    received = [r for e in pair.take("server") for r in server.handle_event(e)]
    assert received == [RequestReceived(sid, Request("dns", "query", b"\x00" * 30))]
    server.send_response(sid, 200, b"answer" * 20000)  # several DATA frames
    pair.roundtrip(rounds=60)
    done = [r for e in pair.take("client") for r in client.handle_event(e)]
    assert len(done) == 1 and isinstance(done[0], ResponseReceived)
    assert done[0].response.status == 200 and done[0].response.message == b"answer" * 20000


def test_stoq_bad_stream_is_reset_others_continue(pki) -> None:
    pair = make_pair(pki, "stoq/1")
    server, client = StoqServer(pair.server), StoqClient(pair.client)
    bad = pair.client.get_next_available_stream_id()
    pair.client.send_stream_data(bad, encode_frame(0x00, b"no header"), end_stream=True)
    client._waiting.add(bad)
    good = client.send_request("admin", "status")
    pair.roundtrip()
    received = [r for e in pair.take("server") for r in server.handle_event(e)]
    assert StreamRejected(bad, ErrorCode.PROTOCOL_ERROR,
                          "stream must start with a REQUEST frame, not type 0x0") in received
    assert RequestReceived(good, Request("admin", "status", b"")) in received
    server.send_response(good, 403, b"{}")
    pair.roundtrip()
    done = [r for e in pair.take("client") for r in client.handle_event(e)]
    assert RequestFailed(bad, ErrorCode.PROTOCOL_ERROR, "stream reset by server") in done
    assert ResponseReceived(good, Response(403, b"{}")) in done


def test_stoq_push_on_unidirectional_stream(pki) -> None:
    pair = make_pair(pki, "stoq/1")
    server, client = StoqServer(pair.server), StoqClient(pair.client)
    sid = client.send_push("gossip", "checkpoint", b"{}")
    pair.roundtrip()
    received = [r for e in pair.take("server") for r in server.handle_event(e)]
    assert received == [PushReceived(sid, Request("gossip", "checkpoint", b"{}"))]


def _doq_query(pair: Pair, wire: bytes) -> int:
    sid = pair.client.get_next_available_stream_id()
    pair.client.send_stream_data(sid, len(wire).to_bytes(2, "big") + wire, end_stream=True)
    pair.roundtrip()
    return sid


QUERY = bytes.fromhex("0000 0100 0001 0000 0000 0000 0377777700 0001 0001".replace(" ", ""))


def test_doq_query_and_response(pki) -> None:
    pair = make_pair(pki, "doq")
    server = doq.DoqServer(pair.server)
    sid = _doq_query(pair, QUERY)
    received = [q for e in pair.take("server") for q in server.handle_event(e)]
    assert received == [doq.QueryReceived(sid, QUERY)]
    server.send_response(sid, b"\x12\x34" + QUERY[2:])  # the ID is forced to 0
    pair.roundtrip()
    data = b"".join(e.data for e in pair.take("client") if hasattr(e, "data"))
    assert data == len(QUERY).to_bytes(2, "big") + QUERY


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\x00\x07" + QUERY[2:], "Message ID is not 0"),
        (QUERY[:8], "too short"),
    ],
)
def test_doq_protocol_errors_close_the_connection(pki, payload: bytes, reason: str) -> None:
    pair = make_pair(pki, "doq")
    server = doq.DoqServer(pair.server)
    _doq_query(pair, payload)
    assert [q for e in pair.take("server") for q in server.handle_event(e)] == []
    pair.roundtrip()
    closed = pair.client_close_event()
    assert closed.error_code == doq.DoqErrorCode.PROTOCOL_ERROR
    assert reason in closed.reason_phrase


def test_doq_length_prefix_must_match_the_stream(pki) -> None:
    pair = make_pair(pki, "doq")
    server = doq.DoqServer(pair.server)
    sid = pair.client.get_next_available_stream_id()
    pair.client.send_stream_data(sid, b"\x00\x40" + QUERY, end_stream=True)  # claims 64 bytes
    pair.roundtrip()
    assert [q for e in pair.take("server") for q in server.handle_event(e)] == []
    pair.roundtrip()
    assert pair.client_close_event().error_code == doq.DoqErrorCode.PROTOCOL_ERROR


def test_doq_unidirectional_stream_is_a_protocol_error(pki) -> None:
    pair = make_pair(pki, "doq")
    server = doq.DoqServer(pair.server)
    sid = pair.client.get_next_available_stream_id(is_unidirectional=True)
    pair.client.send_stream_data(sid, len(QUERY).to_bytes(2, "big") + QUERY, end_stream=True)
    pair.roundtrip()
    assert [q for e in pair.take("server") for q in server.handle_event(e)] == []
    assert server.closed


def test_stoq_requests_in_flight_are_capped(pki) -> None:
    pair = make_pair(pki, "stoq/1")
    server, client = StoqServer(pair.server, max_in_flight=1), StoqClient(pair.client)
    first = client.send_request("dns", "query", b"1")
    pair.roundtrip()
    second = client.send_request("dns", "query", b"2")
    pair.roundtrip()
    received = [r for e in pair.take("server") for r in server.handle_event(e)]
    assert [r.stream_id for r in received] == [first]
    pair.roundtrip()
    done = [r for e in pair.take("client") for r in client.handle_event(e)]
    assert len(done) == 1 and done[0].stream_id == second
    assert done[0].response.status == 429
    server.send_response(first, 200, b"ok")  # the first one is still answered
    pair.roundtrip()
    done = [r for e in pair.take("client") for r in client.handle_event(e)]
    assert done == [ResponseReceived(first, Response(200, b"ok"))]
