from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dns.exception
import dns.message
import dns.rcode
import dns.rrset
import pytest

from bootstrap.init import InitResult
from bootstrap.transport_certs import TransportCredentials
from tests.support import PASSPHRASE
from transport.quic import QuicEndpoint, QuicServices
from transport.tls import pem
from trustchain.config import NodeConfig
from trustchain.datadir import DataDir
from trustchain.dns.handler import DnsHandler, QueryContext
from trustchain.wiring.node import OpenNode, open_node
from trustchain.wiring.serve import base_services, build_router

ORIGIN = "trust.example.net"
#: The test double of the DNS issue's engine (the edge this issue tests is the transport).
RECORDS = {("www.trust.example.net.", "AAAA"): "2001:db8::53", ("www.trust.example.net.", "A"): "192.0.2.53"}


def fixed_records(query: bytes, context: QueryContext) -> bytes | None:
    try:
        message = dns.message.from_wire(query)
    except dns.exception.DNSException:
        return None
    response = dns.message.make_response(message)
    question = message.question[0]
    key = (question.name.to_text().lower(), dns.rdatatype.to_text(question.rdtype))
    if key in RECORDS:
        response.answer.append(dns.rrset.from_text(question.name, 300, "IN", key[1], RECORDS[key]))
    else:
        response.set_rcode(dns.rcode.NXDOMAIN)
    return response.to_wire()


@dataclass
class RunningServer:
    host: str
    port: int
    node: OpenNode
    root_file: Path

    @property
    def credentials(self) -> TransportCredentials:
        return self.node.credentials


@pytest.fixture
async def quic_server(node: InitResult, data_dir: Path, tmp_path: Path) -> AsyncIterator[RunningServer]:
    opened = open_node(DataDir(data_dir), NodeConfig(), lambda: PASSPHRASE)
    handler: DnsHandler = fixed_records
    services = QuicServices(
        dns=handler, router=build_router(base_services(opened, handler)), root=opened.credentials.root,
        network="testnet", clock=lambda: datetime.now(UTC),
    )
    endpoint = QuicEndpoint(services, opened.credentials.node, ["::1"], 0)
    ((host, port),) = await endpoint.start()
    root_file = tmp_path / "root.pem"
    root_file.write_bytes(pem(opened.credentials.root))
    try:
        yield RunningServer(host, port, opened, root_file)
    finally:
        await endpoint.stop()
        opened.db.close()
