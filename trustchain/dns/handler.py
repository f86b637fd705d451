"""The interface between DNS transports and the query engine.

Every transport (UDP, TCP, DoQ, stoq/1 ``dns``) hands a query in wire format
and a :class:`QueryContext` to one :data:`DnsHandler` and sends back the wire
bytes it returns (``None`` means: send nothing).  Handlers are synchronous
and pure, so they run inside the adapters' event handlers.

The node's handler is :meth:`trustchain.dns.service.DnsService.handle`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Transport = Literal["udp", "tcp", "doq", "stoq"]


@dataclass(frozen=True)
class QueryContext:
    transport: Transport
    #: Client address as (host, port), when known.
    client: tuple[str, int] | None = None


DnsHandler = Callable[[bytes, QueryContext], bytes | None]

_HEADER = struct.Struct("!HHHHHH")
_QR = 0x8000


def header_only_response(query: bytes, rcode: int) -> bytes | None:
    """A response carrying only a header (no sections), for queries too broken to echo.

    Returns ``None`` for input shorter than a header or that is itself a
    response (never answer a response: that is how reflection loops start).
    """
    if len(query) < _HEADER.size:
        return None
    ident, flags = struct.unpack_from("!HH", query)
    if flags & _QR:
        return None
    opcode_and_rd = flags & 0x7900  # keep opcode and RD
    return _HEADER.pack(ident, _QR | opcode_and_rd | (rcode & 0xF), 0, 0, 0, 0)
