"""A minimal HTTP/3 client on aioquic's H3Connection (the protocol engine is aioquic's)."""

from __future__ import annotations

import asyncio
from typing import Any

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.events import QuicEvent
from cryptography import x509

from transport.tls import client_configuration
from trustchain.identity import TlsIdentity


class _H3Client(QuicConnectionProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.done: dict[int, asyncio.Future[None]] = {}
        self.headers: dict[int, dict[bytes, bytes]] = {}
        self.body: dict[int, bytes] = {}

    def quic_event_received(self, event: QuicEvent) -> None:
        for h3_event in self.h3.handle_event(event):
            if isinstance(h3_event, HeadersReceived):
                self.headers[h3_event.stream_id] = dict(h3_event.headers)
            elif isinstance(h3_event, DataReceived):
                self.body[h3_event.stream_id] = self.body.get(h3_event.stream_id, b"") + h3_event.data
            if isinstance(h3_event, (HeadersReceived, DataReceived)) and h3_event.stream_ended:
                self.done[h3_event.stream_id].set_result(None)


async def h3_get(host: str, port: int, path: str, *, root: x509.Certificate,
                 authority: str, method: str = "GET", body: bytes | None = None,
                 identity: TlsIdentity | None = None) -> tuple[int, dict[bytes, bytes], bytes]:
    config = client_configuration(root=root, server_name=authority, alpn="h3",
                                  identity=identity)
    async with connect(host, port, configuration=config, create_protocol=_H3Client) as client:
        assert isinstance(client, _H3Client)
        stream_id = client._quic.get_next_available_stream_id()
        client.done[stream_id] = asyncio.get_running_loop().create_future()
        client.h3.send_headers(stream_id, [
            (b":method", method.encode()), (b":scheme", b"https"),
            (b":authority", authority.encode()), (b":path", path.encode()),
            *([(b"content-type", b"application/json")] if body is not None else []),
        ], end_stream=body is None)
        if body is not None:
            client.h3.send_data(stream_id, body, end_stream=True)
        client.transmit()
        await asyncio.wait_for(client.done[stream_id], 10)
        headers = client.headers[stream_id]
        return int(headers[b":status"]), headers, client.body.get(stream_id, b"")
