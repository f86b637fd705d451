"""The QUIC endpoint on [::1], driven by clients we did not write (dnspython, kdig)
and by our own client for the stoq/1 methods."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.exception
import dns.message
import dns.rcode
import pytest

from bootstrap.init import init_node
from bootstrap.transport_certs import ensure_transport_credentials
from tests.support import PASSPHRASE
from tests.transport.conftest import ORIGIN, RunningServer
from transport.client import ConnectError, StreamError, connect
from trustchain.keystore import KeyStore
from trustchain.stoq import doq
from trustchain.stoq.framing import ErrorCode, Status, encode_frame, encode_request
from trustchain.storage.database import open_database
from trustchain.storage.node import NodeStore


async def test_dnspython_doq_verifies_against_the_genesis_root(quic_server: RunningServer) -> None:
    query = dns.message.make_query("www.trust.example.net", "AAAA")
    response = await dns.asyncquery.quic(
        query, quic_server.host, port=quic_server.port, timeout=10,
        verify=str(quic_server.root_file), server_hostname=ORIGIN,
    )
    assert response.rcode() == dns.rcode.NOERROR
    assert [r.to_text() for r in response.answer[0]] == ["2001:db8::53"]


async def test_dnspython_refuses_a_server_outside_its_pin(
    quic_server: RunningServer, tmp_path: Path
) -> None:
    other = init_node(tmp_path / "other", PASSPHRASE, network_name="othernet",
                      origin=ORIGIN, now=datetime.now(UTC))
    other_root = tmp_path / "other-root.pem"
    from transport.tls import pem

    other_root.write_bytes(pem(other.genesis.root_certificate))
    query = dns.message.make_query("www.trust.example.net", "AAAA")
    with pytest.raises(Exception) as info:  # noqa: B017 - dnspython raises a bare error
        await dns.asyncquery.quic(query, quic_server.host, port=quic_server.port, timeout=10,
                                  verify=str(other_root), server_hostname=ORIGIN)
    print(type(info.value), repr(info.value))
    assert not isinstance(info.value, dns.exception.Timeout)


async def test_kdig_over_quic(quic_server: RunningServer) -> None:
    proc = await asyncio.create_subprocess_exec(
        # +quic after the TLS options: kdig lets the last transport option win.
        "kdig", f"@{quic_server.host}", "-p", str(quic_server.port),
        f"+tls-ca={quic_server.root_file}", f"+tls-hostname={ORIGIN}", "+quic",
        "www.trust.example.net", "A", "+short", "+timeout=5", "+retry=0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert out.decode().split() == ["192.0.2.53"]


async def test_kdig_fails_with_the_wrong_hostname(quic_server: RunningServer) -> None:
    proc = await asyncio.create_subprocess_exec(
        "kdig", f"@{quic_server.host}", "-p", str(quic_server.port),
        f"+tls-ca={quic_server.root_file}", "+tls-hostname=not-us.example", "+quic",
        "www.trust.example.net", "A", "+timeout=5", "+retry=0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode != 0 and "192.0.2.53" not in out.decode()


async def test_doq_nonzero_message_id_closes_with_protocol_error(
    quic_server: RunningServer,
) -> None:
    query = dns.message.make_query("www.trust.example.net", "A")
    query.id = 4711
    async with connect(quic_server.host, quic_server.port, root=quic_server.credentials.root,
                       server_name=ORIGIN, alpn=doq.ALPN) as client:
        with pytest.raises(ConnectError, match=f"error {doq.DoqErrorCode.PROTOCOL_ERROR:#x}"):
            await client.doq_query(query.to_wire())


async def test_doq_many_queries_on_one_connection(quic_server: RunningServer) -> None:
    async with connect(quic_server.host, quic_server.port, root=quic_server.credentials.root,
                       server_name=ORIGIN, alpn=doq.ALPN) as client:
        queries = []
        for name in ("www", "nope", "www"):
            q = dns.message.make_query(f"{name}.trust.example.net", "A")
            q.id = 0
            queries.append(client.doq_query(q.to_wire()))
        answers = [dns.message.from_wire(w) for w in await asyncio.gather(*queries)]
    assert [a.rcode() for a in answers] == [dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.NOERROR]
    assert all(a.id == 0 for a in answers)


async def test_stoq_dns_query_is_public(quic_server: RunningServer) -> None:
    q = dns.message.make_query("www.trust.example.net", "AAAA")
    async with connect(quic_server.host, quic_server.port, root=quic_server.credentials.root,
                       server_name=ORIGIN) as client:
        response = await client.request("dns", "query", q.to_wire())
    assert response.status == Status.OK
    answer = dns.message.from_wire(response.message)
    assert answer.id == q.id and answer.answer[0][0].to_text() == "2001:db8::53"


@pytest.mark.parametrize(
    ("service", "method", "identity", "status"),
    [
        ("admin", "status", None, Status.FORBIDDEN),
        ("admin", "status", "node", Status.FORBIDDEN),
        ("admin", "status", "admin", Status.OK),
        ("consensus", "validators", None, Status.FORBIDDEN),
        ("consensus", "validators", "node", Status.OK),
        ("consensus", "validators", "admin", Status.OK),
        ("dns", "query", None, Status.BAD_REQUEST),  # public, but b"" is not a DNS query
        ("admin", "shutdown", "admin", Status.NOT_FOUND),
        ("ca", "issue", None, Status.NOT_FOUND),
    ],
)
async def test_permission_table_method_by_method(
    quic_server: RunningServer, service: str, method: str, identity: str | None, status: Status
) -> None:
    creds = quic_server.credentials
    ident = {"node": creds.node, "admin": creds.admin, None: None}[identity]
    async with connect(quic_server.host, quic_server.port, root=creds.root, server_name=ORIGIN,
                       identity=ident) as client:
        response = await client.request(service, method, b"")
    assert response.status == status, response.message
    if status == Status.FORBIDDEN:
        problem = json.loads(response.message)
        assert problem["status"] == 403 and "client certificate" in problem["detail"]
    if (service, method, status) == ("admin", "status", Status.OK):
        assert json.loads(response.message)["network_name"] == "testnet"


async def test_wrong_pin_fails_to_connect(quic_server: RunningServer, tmp_path: Path) -> None:
    other = init_node(tmp_path / "other", PASSPHRASE, network_name="othernet",
                      origin=ORIGIN, now=datetime.now(UTC))
    with pytest.raises(ConnectError, match="(?i)certificate"):
        async with connect(quic_server.host, quic_server.port,
                           root=other.genesis.root_certificate, server_name=ORIGIN):
            pass


async def test_client_certificate_of_another_network_is_refused(
    quic_server: RunningServer, tmp_path: Path
) -> None:
    other = init_node(tmp_path / "other", PASSPHRASE, network_name="othernet",
                      origin=ORIGIN, now=datetime.now(UTC))
    keystore = KeyStore.open(tmp_path / "other" / "keys", PASSPHRASE)
    with open_database(tmp_path / "other") as db:
        foreign = ensure_transport_credentials(
            keystore, NodeStore(db), root=other.genesis.root_certificate,
            root_key_purpose="genesis-root", network="othernet", origin=ORIGIN,
            node_id=other.node_id, now=datetime.now(UTC),
        )
    with pytest.raises(ConnectError, match="error 0x12a.*client certificate"):
        async with connect(quic_server.host, quic_server.port,
                           root=quic_server.credentials.root, server_name=ORIGIN,
                           identity=foreign.admin) as client:
            await client.request("admin", "status")


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (encode_frame(0x00, b"data before the request"), ErrorCode.PROTOCOL_ERROR),
        (encode_frame(0x01, b"\x03DNS\x05query"), ErrorCode.PROTOCOL_ERROR),
        (encode_request("dns", "query", b"x")[:-1], ErrorCode.PROTOCOL_ERROR),
        (encode_frame(0x00, b"") [:1] + b"\xbf\xff\xff\xff\xff\xff\xff\xff", ErrorCode.FRAME_TOO_LARGE),
        (encode_request("dns", "query", b"x" * (1024 * 1024 + 1)), ErrorCode.MESSAGE_TOO_LARGE),
    ],
)
async def test_malformed_stream_is_reset_and_the_connection_lives_on(
    quic_server: RunningServer, wire: bytes, code: ErrorCode
) -> None:
    q = dns.message.make_query("www.trust.example.net", "A")
    async with connect(quic_server.host, quic_server.port, root=quic_server.credentials.root,
                       server_name=ORIGIN) as client:
        with pytest.raises(StreamError) as info:
            await raw_request(client, wire)
        assert info.value.error_code == code
        response = await client.request("dns", "query", q.to_wire())
        assert response.status == Status.OK


async def raw_request(client: Any, data: bytes) -> Any:
    """Send pre-framed bytes as a request stream: fault injection from outside the client,
    through its connection, for tests of the server's parser."""
    stream_id = client._quic.get_next_available_stream_id()
    client._quic.send_stream_data(stream_id, data, end_stream=True)
    client._stoq._waiting.add(stream_id)
    return await client._wait(stream_id)


async def _endpoint(quic_server: RunningServer, **limits):
    from transport.quic import QuicEndpoint, QuicServices
    from trustchain.wiring.serve import base_services, build_router

    services = QuicServices(
        dns=lambda q, c: q, router=build_router(base_services(quic_server.node, lambda q, c: q)),
        root=quic_server.credentials.root, network="testnet", clock=lambda: datetime.now(UTC),
    )
    endpoint = QuicEndpoint(services, quic_server.credentials.node, ["::1"], 0, **limits)
    ((_, port),) = await endpoint.start()
    return endpoint, port


async def test_retry_validates_addresses_above_the_threshold(quic_server: RunningServer) -> None:
    endpoint, port = await _endpoint(quic_server, retry_above_per_second=0)
    try:
        for _ in range(2):
            async with connect("::1", port, root=quic_server.credentials.root,
                               server_name=ORIGIN) as client:
                response = await client.request("consensus", "validators")
                assert response.status == Status.FORBIDDEN  # reached the router: handshake done
        assert endpoint._servers[0].retries == 2
    finally:
        await endpoint.stop()


async def test_connections_per_address_are_capped(quic_server: RunningServer) -> None:
    endpoint, port = await _endpoint(quic_server, max_connections_per_address=1)
    try:
        async with connect("::1", port, root=quic_server.credentials.root,
                           server_name=ORIGIN) as first:
            with pytest.raises(ConnectError, match="no answer"):
                async with connect("::1", port, root=quic_server.credentials.root,
                                   server_name=ORIGIN, timeout=1.5):
                    pass
            assert endpoint._servers[0].refused >= 1
            response = await first.request("dns", "query", b"\x00" * 12)
            assert response.status == Status.OK  # the first connection is unaffected
    finally:
        await endpoint.stop()
