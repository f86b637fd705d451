"""QUIC stream targets: stoq/1 frames, stoq/1 streams and DNS over QUIC.

The cores are sans-I/O over aioquic's ``QuicConnection``, so they are fed
QUIC events decoded from the input (data on a stream, with or without FIN; a
reset; the application answering or aborting the oldest request) over a
stand-in connection that refuses what aioquic refuses (sending on the
peer's unidirectional stream or on a stream it never opened, writing after
FIN or a reset).  The rules: a stream that breaks the framing is reset with
a documented code (docs/stoq.md; DoQ: RFC 9250 section 4.3), a DoQ protocol
error closes the connection with DOQ_PROTOCOL_ERROR, and nothing raises.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, field

from aioquic.quic.connection import stream_is_client_initiated, stream_is_unidirectional
from aioquic.quic.events import QuicEvent, StreamDataReceived, StreamReset

from tests.fuzz.engine import Target
from trustchain.stoq import doq, framing
from trustchain.stoq.connection import RequestReceived, StoqServer, StreamRejected
from trustchain.stoq.framing import ErrorCode, FrameType, MessageReader, StoqError
from trustchain.stoq.permissions import PERMISSIONS

FRAMING_TOKENS = (b"\x00", b"\x01", b"\x02", b"\x03", b"\x40\x00", b"\x7f\xff", b"\x80\x00\x00\x00",
                  b"\xc0\x00\x00\x00\x00\x00\x00\x00", b"\xbf\xff\xff\xff", b"\x00\x40\x80",
                  b"\x03dns\x05query", b"\x02ct\x07get-sth")
MAX_MESSAGE = 4096


def _requests() -> list[bytes]:
    return [framing.encode_request(service, method, b'{"log":"a","start":0,"end":1}')
            for service, method in sorted(PERMISSIONS)[:12]] + [
        framing.encode_request("dns", "query", bytes(12)),
        framing.encode_request("admin", "zone-list", b""),
        framing.encode_request("ct", "add-chain", b"x" * 70_000),  # two DATA frames, over the limit
        framing.encode_frame(FrameType.REQUEST, b"\x02ct\x07get-sth")
        + framing.encode_frame(FrameType.DATA, b"")]


def _responses() -> list[bytes]:
    return [framing.encode_response(status, body) for status, body in
            ((200, b"{}"), (400, b'{"status":400}'), (999, b""), (100, b"x" * 300))]


def _chunks(data: bytes) -> list[bytes]:
    """``data`` cut where the input says (the same cuts for the same bytes)."""
    rng = random.Random(zlib.crc32(data))
    out, at = [], 0
    while at < len(data):
        size = rng.choice((1, 2, 3, 7, 64, len(data)))
        out.append(data[at:at + size])
        at += size
    return out


def framing_target() -> Target:
    """MessageReader: REQUEST streams (and RESPONSE streams, for the client)."""

    def run(data: bytes) -> None:
        expect = FrameType.RESPONSE if data[:1] == b"\x02" else FrameType.REQUEST
        reader = MessageReader(expect=expect, max_message=MAX_MESSAGE)
        try:
            for chunk in _chunks(data):
                reader.feed(chunk)
            result = reader.finish()
        except StoqError as exc:
            assert exc.error_code in (ErrorCode.PROTOCOL_ERROR, ErrorCode.FRAME_TOO_LARGE,
                                      ErrorCode.MESSAGE_TOO_LARGE), exc.error_code
            raise
        assert len(result.message) <= MAX_MESSAGE
        if isinstance(result, framing.Request):
            assert framing.NAME.fullmatch(result.service) and framing.NAME.fullmatch(result.method)
        else:
            assert isinstance(result, framing.Response) and 100 <= result.status <= 999

    return Target("stoq-framing", run, (StoqError,), _requests() + _responses(), FRAMING_TOKENS)


# --- streams over a stand-in QUIC connection ----------------------------------------------


@dataclass
class _Configuration:
    is_client: bool = False


@dataclass
class FakeQuic:
    """The calls a core makes on a server ``QuicConnection``, checked as aioquic checks them."""

    configuration: _Configuration = field(default_factory=_Configuration)
    known: set[int] = field(default_factory=set)
    finished: set[int] = field(default_factory=set)
    resets: list[int] = field(default_factory=list)
    stops: list[int] = field(default_factory=list)
    closed: int | None = None

    def _can_send(self, stream_id: int) -> None:
        if stream_is_unidirectional(stream_id) and stream_is_client_initiated(stream_id):
            raise ValueError("Cannot send data on peer-initiated unidirectional stream")
        if stream_is_client_initiated(stream_id) and stream_id not in self.known:
            raise ValueError("Cannot send data on unknown peer-initiated stream")

    def send_stream_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        self._can_send(stream_id)
        assert stream_id not in self.finished, "write after FIN or reset"
        if end_stream:
            self.finished.add(stream_id)

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        self._can_send(stream_id)
        self.finished.add(stream_id)
        self.resets.append(error_code)

    def stop_stream(self, stream_id: int, error_code: int) -> None:
        if stream_is_unidirectional(stream_id) and not stream_is_client_initiated(stream_id):
            raise ValueError("Cannot stop receiving on a local-initiated unidirectional stream")
        if stream_id not in self.known:
            raise ValueError("Cannot stop receiving on an unknown stream")
        self.stops.append(error_code)

    def close(self, error_code: int = 0, frame_type: int | None = None,
              reason_phrase: str = "") -> None:
        self.closed = error_code


#: kind byte: low two bits the event (data, reset, answer, abort), 0x80 FIN.
DATA, RESET, ANSWER, ABORT, FIN = 0, 1, 2, 3, 0x80


def encode_events(events: list[tuple[int, int, bytes]]) -> bytes:
    """(kind, stream id, payload) records: ``kind, stream id, length, payload``."""
    out = bytearray()
    for kind, stream_id, payload in events:
        for at in range(0, max(len(payload), 1), 255):
            part = payload[at:at + 255]
            last = at + 255 >= len(payload)
            out += bytes([kind if last else kind & ~FIN, stream_id, len(part)]) + part
    return bytes(out)


def decode_events(quic: FakeQuic, data: bytes) -> list[tuple[int, QuicEvent | None]]:
    """The input as QUIC events (None for the application's own moves), in order.

    As aioquic delivers them: nothing on a stream after its FIN or the peer's reset.
    """
    out: list[tuple[int, QuicEvent | None]] = []
    ended: set[int] = set()
    at = 0
    while at + 3 <= len(data):
        kind, stream_id, size = data[at], data[at + 1], data[at + 2]
        payload = data[at + 3:at + 3 + size]
        at += 3 + size
        if kind & 3 in (DATA, RESET) and stream_id in ended:
            continue
        if kind & 3 == DATA:
            quic.known.add(stream_id)
            if kind & FIN:
                ended.add(stream_id)
            out.append((kind, StreamDataReceived(payload, bool(kind & FIN), stream_id)))
        elif kind & 3 == RESET:
            quic.known.add(stream_id)
            ended.add(stream_id)
            out.append((kind, StreamReset(error_code=payload[0] if payload else 0,
                                          stream_id=stream_id)))
        else:
            out.append((kind, None))
    return out


def _stream_seeds(messages: list[bytes]) -> list[bytes]:
    seeds = []
    for i, message in enumerate(messages):
        seeds.append(encode_events([(DATA | FIN, 4 * i % 256, message), (ANSWER, 0, b"")]))
    seeds.append(encode_events([(DATA, 0, messages[0][:5]), (DATA, 4, messages[1]),
                                (RESET, 0, b"\x05"), (DATA | FIN, 2, messages[2]),
                                (ABORT, 0, b""), (DATA | FIN, 4, b"")]))
    return seeds


STOQ_CODES = {int(code) for code in ErrorCode}


def connection_target() -> Target:
    """StoqServer: interleaved streams, resets, answers and aborts."""

    def run(data: bytes) -> None:
        quic = FakeQuic()
        server = StoqServer(quic, max_message=MAX_MESSAGE, max_in_flight=3)  # type: ignore[arg-type]
        open_requests: list[int] = []
        for kind, event in decode_events(quic, data):
            if event is None:
                if open_requests:
                    stream_id = open_requests.pop(0)
                    if kind & 3 == ANSWER:
                        server.send_response(stream_id, 200, b"{}")
                    else:
                        server.abort(stream_id)
                continue
            for received in server.handle_event(event):
                if isinstance(received, RequestReceived):
                    assert not stream_is_unidirectional(received.stream_id)
                    open_requests.append(received.stream_id)
                elif isinstance(received, StreamRejected):
                    assert received.error_code in STOQ_CODES
        assert all(code in STOQ_CODES for code in quic.resets + quic.stops)

    seeds = _stream_seeds(_requests())
    return Target("stoq-streams", run, (), seeds, FRAMING_TOKENS)


DOQ_CODES = {int(code) for code in doq.DoqErrorCode}


def doq_target() -> Target:
    """DoqServer, answering every complete query from the DNS targets' zones."""
    from tests.fuzz.dns import _seeds, zone_server
    from trustchain.dns.handler import QueryContext

    server_zones = zone_server()

    def run(data: bytes) -> None:
        quic = FakeQuic()
        server = doq.DoqServer(quic, max_streams_in_flight=3)  # type: ignore[arg-type]
        pending: list[doq.QueryReceived] = []
        for kind, event in decode_events(quic, data):
            if event is None:
                if pending:
                    query = pending.pop(0)
                    answers = server_zones.handle_stream(query.query, QueryContext("doq"))
                    if kind & 3 == ABORT or not answers:
                        server.cancel(query.stream_id, doq.DoqErrorCode.PROTOCOL_ERROR)
                    else:
                        server.send_responses(query.stream_id, answers)
                continue
            for query in server.handle_event(event):
                assert len(query.query) >= doq.DNS_HEADER_SIZE and query.query[:2] == b"\0\0"
                pending.append(query)
        assert all(code in DOQ_CODES for code in quic.resets)
        assert quic.closed in (None, doq.DoqErrorCode.PROTOCOL_ERROR)

    queries = [b"\0\0" + q[2:] for q in _seeds()[:12]]
    seeds = _stream_seeds([len(q).to_bytes(2, "big") + q for q in queries])
    return Target("doq", run, (), seeds, FRAMING_TOKENS)
