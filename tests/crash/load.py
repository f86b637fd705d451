"""Mixed load against a running node, and every write it acknowledged.

Concurrent clients, until the node is killed under them: CT ``add-chain`` over HTTP (a
fresh leaf each time, alternating logs), certificate issuance over stoq/1 ``ca.issue``
with the admin identity, and record changes over stoq/1 ``admin records-change`` (one
new TXT record each).  A write counts as acknowledged once its whole answer arrived: an
SCT with its leaf index, an issued serial with its certificate, a record with the zone
serial that carries it.  Each tree head seen meanwhile (get-sth after acknowledged CT
writes) is kept, so the restarted node can be held to it.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from tests.crash.node import CERT_ZONE, ORIGIN, RECORD_ZONE, Credentials
from tests.pki import node_leaf
from transport.client import ConnectError, NodeClientProtocol, StreamError, connect
from trustchain.ct.structs import SCT

LOGS = ("a", "b")
#: A record change for every this many acknowledged CT entries: each change rebuilds and
#: re-signs its whole zone on the node's one event loop, so back-to-back changes from one
#: client starve CT and issuance (measured: 20 CT entries/s fell to 3/s), and the zone
#: would grow without bound over 50 lives.
CT_PER_CHANGE = 3
#: The longest one client call may take before it counts as failed (a bound, not a sleep).
CALL_TIMEOUT = 30.0
Address = tuple[str, int]


@dataclass(frozen=True)
class CtAck:
    """An SCT handed out for ``leaf`` (DER) by log ``log``."""

    log: str
    leaf: bytes
    sct: SCT

    @property
    def index(self) -> int:
        index = self.sct.leaf_index
        assert index is not None, "the node's SCTs carry their leaf index"
        return index


@dataclass(frozen=True)
class CertAck:
    """A certificate handed out: the restarted node must hold it, issued, byte for byte."""

    serial: int
    der: bytes


@dataclass(frozen=True)
class RecordAck:
    """A record change answered: the zone must keep the record, at that serial or later."""

    name: str  # absolute, lower case
    data: str
    serial: int  # the zone serial the change produced


@dataclass
class Acks:
    """Acknowledged writes, by kind."""

    ct: list[CtAck] = field(default_factory=list)
    certs: list[CertAck] = field(default_factory=list)
    records: list[RecordAck] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"ct_entries": len(self.ct), "certificates": len(self.certs),
                "record_changes": len(self.records)}

    def extend(self, other: Acks) -> None:
        self.ct += other.ct
        self.certs += other.certs
        self.records += other.records


@dataclass(frozen=True)
class Head:
    """A signed tree head as get-sth answered it."""

    size: int
    root: bytes

    @classmethod
    def from_json(cls, sth: dict[str, Any]) -> Head:
        return cls(int(sth["tree_size"]), base64.b64decode(sth["sha256_root_hash"]))


class HttpError(Exception):
    """No complete HTTP answer (the node died mid-answer, or never answered)."""


async def http_json(address: Address, method: str, path: str,
                    body: object = None) -> tuple[int, Any]:
    """One HTTP/1.1 request on its own connection: the status and the JSON answer.

    :raises HttpError, OSError, TimeoutError: no complete answer.
    """
    data = json.dumps(body).encode() if body is not None else b""
    host, port = address
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), CALL_TIMEOUT)
    try:
        writer.write(f"{method} {path} HTTP/1.1\r\nhost: [{host}]:{port}\r\n"
                     f"content-type: application/json\r\ncontent-length: {len(data)}\r\n"
                     "connection: close\r\n\r\n".encode() + data)
        raw = await asyncio.wait_for(reader.read(), CALL_TIMEOUT)
    finally:
        writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    if not lines[0].startswith("HTTP/1.1 ") or int(headers.get("content-length", -1)) != len(payload):
        raise HttpError(f"incomplete answer to {path}")
    return int(lines[0].split()[1]), json.loads(payload) if payload else None


def sct_from_json(answer: dict[str, Any]) -> SCT:
    """RFC 6962 4.1's add-chain answer as an SCT (its signature field is digitally-signed)."""
    signed = base64.b64decode(answer["signature"])
    if len(signed) != 4 + int.from_bytes(signed[2:4], "big"):
        raise HttpError("malformed SCT signature")
    return SCT(base64.b64decode(answer["id"]), int(answer["timestamp"]),
               base64.b64decode(answer["extensions"]), signed[4:])


def record_name(n: int) -> str:
    return f"r{n}.{RECORD_ZONE}."


class Load:
    """The clients of one life of the node, and what it acknowledged to them."""

    def __init__(self, credentials: Credentials, http: Address, quic: Address,
                 numbers: itertools.count[int], *, ct_clients: int = 4,
                 issuers: int = 2, changers: int = 1) -> None:
        self.credentials = credentials
        self.http, self.quic = http, quic
        self._numbers = numbers  # unique names across the node's lives
        self._counts = (ct_clients, issuers, changers)
        self.acks = Acks()
        self.heads: dict[str, Head] = {}
        #: Refusals and failures before the kill, by kind (not violations: load is load).
        self.errors: Counter[str] = Counter()
        #: Tree heads that went back while the node ran.
        self.violations: list[str] = []
        self._acked = asyncio.Event()
        self._flowing = asyncio.Event()
        self._live = True
        self._paced = asyncio.Event()
        self._ca_b64 = base64.b64encode(credentials.ct_issuer.public_bytes(Encoding.DER)).decode()
        self._csr_key = ec.generate_private_key(ec.SECP256R1())

    async def run(self, kill_after: float, kill: Callable[[], None]) -> None:
        """Run every client; ``kill`` the node ``kill_after`` seconds after each kind of
        write was first acknowledged (or a bounded wait for that ran out); stop the clients."""
        ct, issuers, changers = self._counts
        clients: list[Coroutine[Any, Any, None]] = [
            *(self._ct_client(LOGS[i % len(LOGS)]) for i in range(ct)),
            *(self._stoq_client(self._issue) for _ in range(issuers)),
            *(self._stoq_client(self._change) for _ in range(changers)),
            self._watch_heads()]
        tasks = [asyncio.ensure_future(c) for c in clients]
        try:
            try:  # (a fresh node starts its signing workers on first use: seconds)
                await asyncio.wait_for(self._flowing.wait(), CALL_TIMEOUT)
            except TimeoutError:
                self.errors["not every kind of write acknowledged before the kill"] += 1
            await asyncio.sleep(kill_after)  # the kill's random point in the load, not a wait
        finally:
            kill()
            self._live = False  # (asyncio.wait_for before 3.12 may swallow a cancellation)
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=CALL_TIMEOUT)
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                self.errors[f"client stopped: {task.exception()!r}"] += 1

    async def _ct_client(self, log: str) -> None:
        path = f"/logs/{log}/ct/v1/add-chain"
        while self._live:
            leaf = node_leaf(self.credentials.ct_issuer_key, self.credentials.ct_issuer,
                             node_id=f"crash{next(self._numbers)}", network="testnet",
                             now=datetime.now(UTC)).public_bytes(Encoding.DER)
            try:
                status, answer = await http_json(self.http, "POST", path, {
                    "chain": [base64.b64encode(leaf).decode(), self._ca_b64]})
            except (OSError, TimeoutError, HttpError, ValueError) as exc:
                self.errors[f"add-chain: {type(exc).__name__}"] += 1
                continue
            if status != 200:
                self.errors[f"add-chain: {status}"] += 1
                continue
            self.acks.ct.append(CtAck(log, leaf, sct_from_json(answer)))
            self._acked.set()
            self._paced.set()
            self._note()

    async def _watch_heads(self) -> None:
        """After acknowledged CT writes, each log's head; none may go back."""
        while self._live:
            await self._acked.wait()
            self._acked.clear()
            for log in LOGS:
                try:
                    status, sth = await http_json(self.http, "GET", f"/logs/{log}/ct/v1/get-sth")
                except (OSError, TimeoutError, HttpError, ValueError):
                    continue
                if status != 200:
                    continue
                head, seen = Head.from_json(sth), self.heads.get(log)
                if seen is not None and (head.size < seen.size
                                         or (head.size == seen.size and head.root != seen.root)):
                    self.violations.append(f"log {log}: head {head} after {seen}, same run")
                self.heads[log] = head

    async def _stoq_client(self, work: Callable[[NodeClientProtocol], Coroutine[Any, Any, None]]
                           ) -> None:
        """One admin connection over stoq/1, doing ``work`` until cancelled."""
        try:
            async with connect(*self.quic, root=self.credentials.root,
                               server_name=ORIGIN.rstrip("."),
                               identity=self.credentials.admin) as client:
                while self._live:
                    try:
                        await work(client)
                    except (TimeoutError, StreamError, ValueError, KeyError) as exc:
                        self.errors[f"{work.__name__}: {type(exc).__name__}"] += 1
        except (ConnectError, OSError) as exc:  # before the kill: the client stops, counted
            self.errors[f"{work.__name__}: {type(exc).__name__}"] += 1

    async def _call(self, client: NodeClientProtocol, service: str, method: str,
                    body: dict[str, Any]) -> Any:
        """A stoq/1 call's JSON answer; None (counted) for a refusal."""
        response = await asyncio.wait_for(
            client.request(service, method, json.dumps(body).encode()), CALL_TIMEOUT)
        if response.status != 200:
            self.errors[f"{method}: {response.status}"] += 1
            return None
        return json.loads(response.message)

    async def _issue(self, client: NodeClientProtocol) -> None:
        name = f"c{next(self._numbers)}.{CERT_ZONE}"
        csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
               .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
               .sign(self._csr_key, hashes.SHA256()).public_bytes(Encoding.PEM))
        answer = await self._call(client, "ca", "issue", {"csr": csr.decode()})
        if answer is not None:
            leaf = x509.load_pem_x509_certificates(answer["chain"].encode())[0]
            self.acks.certs.append(CertAck(int(answer["serial"], 16),
                                           leaf.public_bytes(Encoding.DER)))
            self._note()

    async def _change(self, client: NodeClientProtocol) -> None:
        while len(self.acks.records) * CT_PER_CHANGE > len(self.acks.ct):
            await self._paced.wait()
            self._paced.clear()
        n = next(self._numbers)
        data = f'"crash-{n}"'
        answer = await self._call(client, "admin", "records-change", {
            "add": [{"name": record_name(n), "type": "TXT", "ttl": 300, "data": data}]})
        if answer is not None:
            self.acks.records.append(RecordAck(record_name(n), data, int(answer["serial"])))
            self._note()

    def _note(self) -> None:
        """After an acknowledgement: is every kind of write flowing now?"""
        if all(self.acks.counts().values()):
            self._flowing.set()
