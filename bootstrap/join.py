"""``trustchain join``: make this machine a node of an existing network.

The joiner's half of :mod:`bootstrap.enrolment`.  Keys are created in a
staging directory inside the data directory and kept there while the
request waits for approval, so an interrupted join resumes with the same
identity (run it again with the same passphrase).  The node is moved into
place, ``genesis.json`` last, only once its certificate has been issued,
checked against the pinned genesis root, and used for a mutual-TLS call.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa
from cryptography.x509.oid import NameOID

from bootstrap.enrolment import EnrolmentState, build_request
from bootstrap.genesis import GenesisDocument, genesis_pin, verify_genesis
from bootstrap.init import CONSENSUS_ED25519_PURPOSE, CONSENSUS_ML_DSA_PURPOSE
from bootstrap.transport_certs import (
    NODE_TLS_ISSUER_PURPOSE,
    NODE_TLS_PURPOSE,
    TlsIdentity,
    node_dns_names,
    node_uri,
)
from transport.client import connect
from trustchain.config import default_config_text
from trustchain.datadir import DataDir
from trustchain.errors import KeyNotFoundError, LocalError, RemoteError
from trustchain.fsutil import ensure_private_dir, fsync_dir, write_private_file
from trustchain.identity import PeerCertificateError, identify_peer
from trustchain.keystore import KeyStore, KeyType
from trustchain.stoq.framing import Status
from trustchain.storage.database import Database
from trustchain.storage.migrations import migrate
from trustchain.storage.node import NODE_SCHEMA, NodeIdentity, NodeStore

JOIN_STAGING = ".join.tmp"


class EnrolmentRefused(RemoteError):
    """The network did not admit this node."""


class EnrolmentPending(LocalError):
    """The enrolment is still waiting for approval."""


@dataclass(frozen=True)
class JoinResult:
    node_id: str
    network_name: str
    certificate: x509.Certificate


def _keys(keystore: KeyStore, now: datetime) -> tuple[
    ed25519.Ed25519PrivateKey, mldsa.MLDSA65PrivateKey, ec.EllipticCurvePrivateKey
]:
    keys = []
    for purpose, key_type in (
        (CONSENSUS_ED25519_PURPOSE, KeyType.ED25519),
        (CONSENSUS_ML_DSA_PURPOSE, KeyType.ML_DSA_65),
        (NODE_TLS_PURPOSE, KeyType.ECDSA_P256),
    ):
        try:
            record = keystore.active(purpose)
        except KeyNotFoundError:
            record = keystore.generate(key_type, purpose, now)
        keys.append(keystore.private_key(record.id))
    return keys[0], keys[1], keys[2]  # type: ignore[return-value]


def _csr(
    key: ec.EllipticCurvePrivateKey, genesis: GenesisDocument, node_id: str
) -> x509.CertificateSigningRequest:
    body = genesis.body
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in node_dns_names(body.origin, node_id)]
    names.append(x509.UniformResourceIdentifier(node_uri(body.network_name, node_id)))
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"node {node_id}")]))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(key, hashes.SHA256())
    )


async def _enrol(
    genesis: GenesisDocument, host: str, port: int, server_name: str,
    ed_key: ed25519.Ed25519PrivateKey, ml_key: mldsa.MLDSA65PrivateKey,
    tls_key: ec.EllipticCurvePrivateKey, node_id: str, *, wait_seconds: float,
    poll_seconds: float, progress: Callable[[str], None],
) -> EnrolmentState:
    root = genesis.root_certificate
    async with connect(host, port, root=root, server_name=server_name) as peer:
        status_request = json.dumps({"node_id": node_id}).encode()
        state = await _call(peer, "enrol-status", status_request, allow_missing=True)
        if state is None or state.status == "pending":
            challenge = await peer.request("ca", "enrol-challenge")
            if challenge.status != Status.OK:
                raise RemoteError(f"enrol-challenge: {challenge.message.decode()}")
            nonce = base64.b64decode(json.loads(challenge.message)["challenge"])
            request = build_request(nonce, _csr(tls_key, genesis, node_id), ed_key, ml_key)
            state = await _call(peer, "enrol-request", request.model_dump_json().encode())
        assert state is not None
        if state.status == "pending":
            progress(
                f"enrolment requested: node {node_id} is waiting for approval; on the node at "
                f"{host} port {port}, run: trustchain node approve {node_id}"
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        while state.status == "pending" and loop.time() < deadline:
            await asyncio.sleep(min(poll_seconds, max(0.0, deadline - loop.time())))
            state = await _call(peer, "enrol-status", status_request)
            assert state is not None
        return state


async def _call(peer, method: str, message: bytes, *, allow_missing: bool = False) -> EnrolmentState | None:  # type: ignore[no-untyped-def]
    response = await peer.request("ca", method, message)
    if response.status == Status.BAD_REQUEST and allow_missing:
        return None
    if response.status != Status.OK:
        raise RemoteError(f"ca.{method} answered {response.status}: {response.message.decode()}")
    return EnrolmentState.model_validate_json(response.message)


def _check_chain(
    state: EnrolmentState, genesis: GenesisDocument, tls_key: ec.EllipticCurvePrivateKey,
    node_id: str, now: datetime,
) -> TlsIdentity:
    try:
        chain = [x509.load_der_x509_certificate(base64.b64decode(d))
                 for d in state.certificate_chain]
    except (ValueError, x509.InvalidVersion):
        raise EnrolmentRefused("the issued certificate chain does not parse") from None
    if len(chain) < 2:
        raise EnrolmentRefused("the issued certificate chain is incomplete")
    leaf = chain[0]
    if leaf.public_key() != tls_key.public_key():
        raise EnrolmentRefused("the issued certificate is not for this node's key")
    try:
        peer = identify_peer(leaf, chain[1:], root=genesis.root_certificate,
                             network=genesis.body.network_name, now=now)
    except PeerCertificateError as exc:
        raise EnrolmentRefused(f"the issued certificate does not verify: {exc}") from None
    if peer.name != node_id:
        raise EnrolmentRefused(f"the issued certificate names node {peer.name}, not {node_id}")
    return TlsIdentity(leaf, chain[1:], tls_key)


async def _verify_mutual_tls(
    genesis: GenesisDocument, host: str, port: int, server_name: str, identity: TlsIdentity
) -> None:
    async with connect(host, port, root=genesis.root_certificate, server_name=server_name,
                       identity=identity) as peer:
        response = await peer.request("consensus", "validators")
    if response.status != Status.OK:
        raise EnrolmentRefused(
            f"the peer does not accept the issued certificate ({response.status})"
        )


def join_network(
    data_dir: Path, passphrase: str, *, genesis_bytes: bytes, pin: str, peer: tuple[str, int],
    server_name: str | None, now: Callable[[], datetime], wait_seconds: float,
    poll_seconds: float = 1.0, progress: Callable[[str], None] = lambda _m: None,
) -> JoinResult:
    """Enrol with ``peer`` and, once admitted, create the node in ``data_dir``.

    :raises EnrolmentPending: if not approved within ``wait_seconds`` (run again to resume).
    :raises EnrolmentRefused: if rejected or the issued certificate is not right.
    """
    genesis = verify_genesis(genesis_bytes, pin)
    layout = DataDir(data_dir)
    ensure_private_dir(data_dir)
    with layout.lock():
        layout.require_uninitialised()
        staging = DataDir(data_dir / JOIN_STAGING)
        ensure_private_dir(staging.path)
        if (staging.keys_dir / "keystore.json").exists():
            progress("resuming the enrolment started earlier")
            keystore = KeyStore.open(staging.keys_dir, passphrase)
        else:
            progress("deriving the key-encryption key from the passphrase (Argon2id)")
            keystore = KeyStore.create(staging.keys_dir, passphrase)
        progress("generating the node's consensus identity and transport key")
        ed_key, ml_key, tls_key = _keys(keystore, now())
        node_id = keystore.active(CONSENSUS_ED25519_PURPOSE).id
        host, port = peer
        name = server_name or genesis.body.origin.rstrip(".")
        state = asyncio.run(_enrol(
            genesis, host, port, name, ed_key, ml_key, tls_key, node_id,
            wait_seconds=wait_seconds, poll_seconds=poll_seconds, progress=progress,
        ))
        if state.status == "pending":
            raise EnrolmentPending(
                f"node {node_id} is still waiting for approval; run the same join again to resume"
            )
        if state.status == "rejected":
            shutil.rmtree(staging.path)
            raise EnrolmentRefused(f"the enrolment of node {node_id} was rejected")
        identity = _check_chain(state, genesis, tls_key, node_id, now())
        progress("certificate issued; checking it with a mutual-TLS call")
        asyncio.run(_verify_mutual_tls(genesis, host, port, name, identity))

        with Database(staging.database_file) as db:
            migrate(db, NODE_SCHEMA)
            store = NodeStore(db)
            store.add_certificate(NODE_TLS_PURPOSE, identity.certificate)
            store.add_certificate(NODE_TLS_ISSUER_PURPOSE, identity.chain[0])
            store.set_identity(NodeIdentity(
                genesis_sha256=genesis_pin(genesis_bytes), node_id=node_id,
                network_name=genesis.body.network_name, origin=genesis.body.origin,
                initialised_at=now().isoformat(),
            ))
        if not layout.config_file.exists():
            write_private_file(staging.config_file, default_config_text().encode())
        write_private_file(staging.genesis_file, genesis_bytes)
        for entry in DataDir.INIT_ENTRIES:  # genesis.json last
            if (staging.path / entry).exists():
                (staging.path / entry).rename(data_dir / entry)
        fsync_dir(data_dir)
        staging.path.rmdir()
        return JoinResult(node_id, genesis.body.network_name, identity.certificate)
