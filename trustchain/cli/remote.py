"""Talking to a running node: where it is, what it must prove, who we are.

A node is found by ``--server [ADDR]:PORT`` (or, for the node in
``--data-dir``, its configuration); its certificate must chain to a genesis
root: a ``--genesis`` file checked against ``--pin``, or the genesis of the
node in ``--data-dir``.  Admin calls present the node's admin certificate
from the data directory, or a federated network's ``--cert``/``--key``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from trustchain.cli.common import (
    add_data_dir,
    add_json,
    add_key_store,
    initialised,
    passphrase,
    read_genesis,
)
from trustchain.cli.genesis import verified_genesis
from trustchain.errors import LocalError, RemoteError

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from cryptography import x509

    from trustchain.datadir import DataDir
    from trustchain.identity import TlsIdentity

T = TypeVar("T")
#: ``call(method, body)`` on a node's stoq/1 ``ct`` service: the decoded JSON answer.
CtCall = Callable[[str, dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class Node:
    """A node to connect to, and what its certificate must chain to and name."""

    host: str
    port: int
    root: x509.Certificate
    server_name: str


# --- options ------------------------------------------------------------------


def add_admin_options(parser: argparse.ArgumentParser, *, json_output: bool = False) -> None:
    """The node in --data-dir, its passphrase (for the admin key) and where it listens."""
    add_key_store(parser)
    parser.add_argument("--server", metavar="[ADDR]:PORT",
                        help="the node's QUIC address (default: from its configuration)")
    if json_output:
        add_json(parser)


def add_credential_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "as a federated network's admin (its network-admin credential; needs --server)")
    group.add_argument("--cert", metavar="FILE", help="PEM: the credential, then its issuer")
    group.add_argument("--key", metavar="FILE", help="PEM private key of the credential")
    group.add_argument("--genesis", metavar="FILE",
                       help="the network's genesis document (default: the node in --data-dir)")
    group.add_argument("--pin", metavar="SHA256", help="the SHA-256 pin of --genesis")


def add_trust_anchor(parser: argparse.ArgumentParser, title: str, *,
                     explained: bool = False) -> None:
    """``--data-dir`` or ``--genesis``/``--pin``, and ``--server-name``, under ``title``.

    ``explained`` gives each a help line (``query`` has them, ``ct`` never had).
    """
    anchor = parser.add_argument_group(title)
    add_data_dir(anchor)
    anchor.add_argument("--genesis", metavar="FILE",
                        help="a genesis document to pin instead" if explained else None)
    anchor.add_argument("--pin", metavar="SHA256",
                        help="the SHA-256 pin of --genesis" if explained else None)
    anchor.add_argument("--server-name", metavar="NAME",
                        help="name the server certificate must carry (default: the zone origin)"
                        if explained else None)


# --- where, and what to trust ---------------------------------------------------


def parse_server(text: str) -> tuple[str, int]:
    """``[ADDR]:PORT``, ``ADDR:PORT`` (IPv4 or name) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if text.startswith("[") and "]:" in text:
        host, _, port = text[1:].partition("]:")
    elif ":" in host or not sep:
        raise LocalError(f"--server {text!r}: write [ADDR]:PORT (IPv6 in brackets)")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise LocalError(f"--server {text!r}: invalid port")
    return host, int(port)


def trust_anchor(genesis: str | Path | None, pin: str | None,
                 data_dir: Path) -> tuple[x509.Certificate, str]:
    """The pinned genesis root and zone origin a client checks the server against:
    from ``genesis`` (which needs its ``pin``), else from the node in ``data_dir``."""
    if genesis is not None:
        if pin is None:
            raise LocalError("--genesis needs --pin SHA256 (the network's trust anchor)")
        document = verified_genesis(read_genesis(genesis), pin)
    else:
        layout = initialised(data_dir)
        identity, _ = _read_node(layout)
        document = verified_genesis(layout.genesis_file.read_bytes(), identity.genesis_sha256)
    return document.root_certificate, document.body.origin.rstrip(".")


def _read_node(layout: DataDir, *purposes: str) -> tuple[Any, list[x509.Certificate | None]]:
    """The node's identity and its latest certificate of each purpose, read without the
    lock (the node may be running)."""
    from trustchain.storage.database import open_database
    from trustchain.storage.node import NodeStore

    with open_database(layout.path, readonly=True) as db:
        store = NodeStore(db)
        identity = store.identity()
        certificates = [store.latest_certificate(purpose) for purpose in purposes]
    if identity is None:
        raise LocalError(f"{layout.path} holds no node identity")
    return identity, certificates


# --- who we are -----------------------------------------------------------------


def file_identity(cert: str, key: str | None, passphrase_file: Path | None) -> TlsIdentity:
    """A client identity from ``cert`` (PEM: the certificate, then its issuer) and ``key``
    (PEM; an encrypted key is opened with the passphrase)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    if key is None:
        raise LocalError("--cert needs --key FILE (the credential's private key)")
    try:
        chain = x509.load_pem_x509_certificates(Path(cert).read_bytes())
        key_pem = Path(key).read_bytes()
    except OSError as exc:
        raise LocalError(f"cannot read {exc.filename}: {exc.strerror}") from None
    except ValueError as exc:
        raise LocalError(f"{cert}: no PEM certificates ({exc})") from None
    try:
        password = passphrase(passphrase_file)().encode() if b"ENCRYPTED" in key_pem else None
        private_key = load_pem_private_key(key_pem, password)
    except (ValueError, TypeError) as exc:
        raise LocalError(f"{key}: cannot load the private key ({exc})") from None
    return _tls_identity(chain[0], chain[1:], private_key)


def _tls_identity(cert: x509.Certificate, chain: list[x509.Certificate], key: Any) -> TlsIdentity:
    from trustchain.identity import TlsIdentity

    return TlsIdentity(cert, chain, key)


def node_admin_identity(data_dir: Path, passphrase_file: Path | None) -> TlsIdentity:
    """The admin certificate of the node in ``data_dir``, its issuer and its key."""
    from bootstrap.transport_certs import ADMIN_TLS_PURPOSE, INFRA_CA_PURPOSE
    from trustchain.keystore import KeyStore

    layout = initialised(data_dir)
    keystore = KeyStore.open(layout.keys_dir, passphrase(passphrase_file)())
    _, (cert, issuer) = _read_node(layout, ADMIN_TLS_PURPOSE, INFRA_CA_PURPOSE)
    if cert is None or issuer is None:
        raise LocalError("this node holds no admin certificate (only founding nodes do, so far)")
    key = keystore.private_key(keystore.active(ADMIN_TLS_PURPOSE).id)
    return _tls_identity(cert, [issuer], key)


def configured_address(data_dir: Path) -> tuple[str, int]:
    """Where the node in ``data_dir`` listens for QUIC, from its configuration."""
    from trustchain.config import load_config

    config = load_config(data_dir)
    if config.quic_port == 0:
        raise LocalError("the node's QUIC port is 0 (chosen at start): pass --server")
    return config.local_address(), config.quic_port


# --- calls ----------------------------------------------------------------------


def _connect(node: Node, **options: Any) -> AbstractAsyncContextManager[Any]:
    """A verified QUIC connection to ``node`` (the one place that names the client)."""
    from transport.client import connect

    return connect(node.host, node.port, root=node.root, server_name=node.server_name, **options)


def admin_call(args: argparse.Namespace, method: str, body: dict[str, Any] | None = None, *,
               service: str = "admin") -> Any:
    """Call ``service.method`` with a JSON ``body`` (none: an empty message) on the node in
    --data-dir with its admin certificate, or with the credential in --cert/--key (a
    federated network's admin) on --server; the decoded JSON answer."""
    if getattr(args, "cert", None) is not None:
        if not args.server:
            raise LocalError("--cert needs --server [ADDR]:PORT (the node to ask)")
        root, origin = trust_anchor(args.genesis, args.pin, args.data_dir)
        identity = file_identity(args.cert, args.key, args.passphrase_file)
        host, port = parse_server(args.server)
    else:
        root, origin = trust_anchor(None, None, args.data_dir)
        identity = node_admin_identity(args.data_dir, args.passphrase_file)
        host, port = (parse_server(args.server) if args.server
                      else configured_address(args.data_dir))
    message = b"" if body is None else json.dumps(body).encode()

    async def call() -> Any:
        async with _connect(Node(host, port, root, origin), identity=identity) as node:
            return await node.request(service, method, message)

    response = asyncio.run(call())
    if response.status != 200:
        raise RemoteError(json.loads(response.message).get("detail", response.message.decode()))
    return json.loads(response.message)


def ct_session(node: Node, work: Callable[[CtCall], Awaitable[T]]) -> T:
    """Run ``work(call)`` against the node's stoq/1 ``ct`` methods (anonymous, root-pinned)."""
    async def session() -> T:
        async with _connect(node) as client:
            async def call(method: str, body: dict[str, Any]) -> Any:
                response = await client.request("ct", method, json.dumps(body).encode())
                if response.status != 200:
                    raise RemoteError(f"ct.{method}: {json.loads(response.message)['detail']}")
                return json.loads(response.message)
            return await work(call)

    return asyncio.run(session())


def public_call(node: Node, service: str, method: str, body: dict[str, Any] | None = None) -> Any:
    """``service.method`` on ``node`` as an anonymous, root-pinned client: the JSON answer."""
    async def call() -> Any:
        async with _connect(node) as client:
            return await client.request(service, method,
                                        b"" if body is None else json.dumps(body).encode())

    response = asyncio.run(call())
    if response.status != 200:
        raise RemoteError(f"{service}.{method}: "
                          f"{json.loads(response.message).get('detail', response.status)}")
    return json.loads(response.message)


def quic_query(node: Node, via: str, query: bytes, timeout: float) -> bytes:
    """One DNS query over DoQ (RFC 9250; its ID must be 0) or the stoq/1 ``dns`` service;
    the response's wire form."""
    from trustchain.stoq.doq import ALPN as DOQ_ALPN
    from trustchain.stoq.framing import ALPN as STOQ_ALPN
    from trustchain.stoq.framing import Status

    async def ask() -> bytes:
        async with _connect(node, alpn=DOQ_ALPN if via == "doq" else STOQ_ALPN,
                            timeout=timeout) as client:
            if via == "doq":
                return await _within(client.doq_query(query), timeout)
            response = await _within(client.request("dns", "query", query), timeout)
            if response.status != Status.OK:
                raise RemoteError(f"server answered {response.status}: "
                                  f"{response.message.decode()}")
            return response.message

    return asyncio.run(ask())


async def _within(awaitable: Awaitable[T], timeout: float) -> T:
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except TimeoutError:
        raise RemoteError(f"no answer in {timeout}s") from None
