"""``trustchain join``: make this machine a node of an existing network.

The joiner's half of :mod:`bootstrap.enrolment`: admitted by consensus with
the four proofs (:mod:`bootstrap.admission`, the default), or approved by the
peer's operator.  Keys and the plot are created in a staging directory
inside the data directory and kept there until the node is admitted, so an
interrupted join resumes with the same identity and plot (run it again with
the same passphrase).  The node is moved into
place, ``genesis.json`` last, only once its certificate has been issued,
checked against the pinned genesis root, and used for a mutual-TLS call.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa
from cryptography.x509.oid import NameOID

from bootstrap.admission import admit_request, ensure_plot, plot_request
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
from transport.sockets import format_address
from trustchain.config import NodeConfig, default_config_text, load_config
from trustchain.datadir import DataDir
from trustchain.errors import LocalError, RemoteError
from trustchain.fsutil import ensure_private_dir, fsync_dir, write_private_file
from trustchain.identity import PeerCertificateError, identify_peer
from trustchain.keystore import KeyStore, KeyType
from trustchain.stoq.framing import Status
from trustchain.storage.database import Database
from trustchain.storage.migrations import migrate
from trustchain.storage.node import NODE_SCHEMA, NodeIdentity, NodeStore

JOIN_STAGING = ".join.tmp"
#: The QUIC idle timeout of the joiner's connection (the node answers once a block is
#: committed, within 30 s).
JOIN_IDLE_TIMEOUT = 90.0
#: Where the plot for the proof of space is built, inside the staging directory.
PLOT_DIR = "plot"


class EnrolmentRefused(RemoteError):
    """The network did not admit this node."""


class EnrolmentPending(LocalError):
    """The enrolment is still waiting for approval."""


def _advertised_address(config: NodeConfig | None) -> str:
    """Where the other nodes will reach this one: the configured QUIC port on the first
    listen address (the development default [::1] when there is no configuration yet).

    :raises LocalError: the node listens on every address: name one (``--address``).
    """
    config = config or NodeConfig()
    first = ipaddress.ip_address(config.listen[0])
    if first.is_unspecified or config.quic_port == 0:
        raise LocalError("the node listens on every address, or on a port the system picks; "
                         "say where the other nodes reach it: --address [ADDR]:PORT")
    return format_address(str(first), config.quic_port)


def config_with_peers(peers: list[str]) -> str:
    """``trustchain init``'s configuration, naming ``peers``."""
    lines = [f"peers = {json.dumps(peers)}" if line.startswith("peers = ") else line
             for line in default_config_text().splitlines()]
    return "\n".join(lines) + "\n"


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
        record = keystore.active_or_generate(key_type, purpose, now)
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


async def _request(
    peer, genesis: GenesisDocument, ed_key: ed25519.Ed25519PrivateKey,  # type: ignore[no-untyped-def]
    ml_key: mldsa.MLDSA65PrivateKey, tls_key: ec.EllipticCurvePrivateKey, node_id: str,
) -> EnrolmentState:
    """The enrolment's state at ``peer``, requesting it first if the peer has none."""
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
    return state


async def _enrol(
    genesis: GenesisDocument, host: str, port: int, server_name: str,
    ed_key: ed25519.Ed25519PrivateKey, ml_key: mldsa.MLDSA65PrivateKey,
    tls_key: ec.EllipticCurvePrivateKey, node_id: str, *, wait_seconds: float,
    poll_seconds: float, progress: Callable[[str], None],
) -> EnrolmentState:
    """Enrol and wait for the decision of the peer's operator (``node approve``)."""
    root = genesis.root_certificate
    async with connect(host, port, root=root, server_name=server_name) as peer:
        status_request = json.dumps({"node_id": node_id}).encode()
        state = await _request(peer, genesis, ed_key, ml_key, tls_key, node_id)
        if state.status == "pending":
            progress(
                f"enrolment requested: node {node_id} is waiting for approval; on the node at "
                f"{host} port {port}, run: trustchain node approve {node_id}"
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        while state.status == "pending" and loop.time() < deadline:
            await asyncio.sleep(min(poll_seconds, max(0.0, deadline - loop.time())))
            polled = await _call(peer, "enrol-status", status_request)
            assert polled is not None
            state = polled
        return state


async def _public(genesis: GenesisDocument, host: str, port: int, server_name: str,
                  service: str, method: str) -> dict[str, Any]:
    """A public method's answer, over a server-authenticated connection."""
    async with connect(host, port, root=genesis.root_certificate,
                       server_name=server_name) as peer:
        return await _json(peer, service, method)


async def _json(peer, service: str, method: str, message: dict[str, Any] | None = None,  # type: ignore[no-untyped-def]
                ) -> dict[str, Any]:
    response = await peer.request(service, method, json.dumps(message or {}).encode())
    if response.status == Status.BAD_REQUEST:
        raise EnrolmentRefused(f"{service}.{method} refused: {_detail(response.message)}")
    if response.status != Status.OK:
        raise RemoteError(f"{service}.{method} answered {response.status}: "
                          f"{_detail(response.message)}")
    answer: dict[str, Any] = json.loads(response.message)
    return answer


def _detail(message: bytes) -> str:
    try:
        return str(json.loads(message)["detail"])
    except (ValueError, KeyError, TypeError):
        return message.decode("utf-8", "replace")


def _admit(
    genesis: GenesisDocument, pin: str, host: str, port: int, server_name: str,
    keys: tuple[ed25519.Ed25519PrivateKey, mldsa.MLDSA65PrivateKey, ec.EllipticCurvePrivateKey],
    node_id: str, *, plot: Path, seed: bytes, stake: int, address: str,
    progress: Callable[[str], None],
) -> EnrolmentState:
    """Enrol, register the plot, and be admitted by consensus with the four proofs.

    Each proof is made between connections, never while one is open: a proof of work
    takes seconds and, unluckily, a minute, in which an open connection would go idle
    and be closed (found by tests/test_admission.py).
    """
    ed_key, ml_key, tls_key = keys

    async def ask(*calls: tuple[str, str, dict[str, Any] | None]) -> list[dict[str, Any]]:
        # Answers may wait for a block (up to 30 s): a longer idle timeout than the default.
        async with connect(host, port, root=genesis.root_certificate, server_name=server_name,
                           idle_timeout=JOIN_IDLE_TIMEOUT) as peer:
            return [await _json(peer, service, method, message)
                    for service, method, message in calls]

    async def enrol() -> tuple[EnrolmentState, dict[str, Any]]:
        async with connect(host, port, root=genesis.root_certificate,
                           server_name=server_name) as peer:
            state = await _request(peer, genesis, ed_key, ml_key, tls_key, node_id)
            return state, await _json(peer, "consensus", "status")

    state, status = asyncio.run(enrol())
    if state.status != "pending":
        return state
    progress(f"registering the plot (proof of work bound to block {status['height']})")
    plot_message = plot_request(node_id, seed, status)
    registered, status = asyncio.run(ask(("ca", "enrol-plot", plot_message),
                                         ("consensus", "status", None)))
    progress(f"plot registered at height {registered['height']}; proving work, time and "
             f"space for the admission (bound to block {status['height']})")
    request = admit_request(node_id=node_id, genesis_pin=pin, ed_key=ed_key.public_key(),
                            ml_key=ml_key.public_key(), stake=stake, address=address,
                            plot=plot, seed=seed, status=status)
    progress("asking the validators to admit this node")
    (admitted,) = asyncio.run(ask(("ca", "enrol-admit", request)))
    return EnrolmentState.model_validate(admitted)


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
    approval: str = "consensus", stake: int = 0, address: str | None = None,
) -> JoinResult:
    """Enrol with ``peer`` and, once admitted, create the node in ``data_dir``.

    ``approval`` is ``"consensus"`` (the four proofs, committed as a node admission that
    grants ``stake``; ``address`` is where the other nodes reach this one over QUIC) or
    ``"operator"`` (the peer's operator decides, within ``wait_seconds``).

    :raises EnrolmentPending: if not approved within ``wait_seconds`` (run again to resume).
    :raises EnrolmentRefused: if rejected or the issued certificate is not right.
    """
    genesis = verify_genesis(genesis_bytes, pin)
    layout = DataDir(data_dir)
    ensure_private_dir(data_dir)
    with layout.lock():
        layout.require_uninitialised()
        config = load_config(data_dir) if layout.config_file.exists() else None
        advertised = address or _advertised_address(config)
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
        federation = asyncio.run(_public(genesis, host, port, name, "consensus", "status"))
        if approval == "consensus":
            plot, seed = ensure_plot(staging.path / PLOT_DIR, node_id,
                                     int(federation["parameters"]["space_plot_k"]), progress)
            state = _admit(
                genesis, pin, host, port, name, (ed_key, ml_key, tls_key), node_id, plot=plot,
                seed=seed, stake=stake, address=advertised, progress=progress)
        else:
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
        if config is None:  # the peer and the nodes it knows are this node's first peers
            known = [format_address(host, port)] + [p["address"] for p in federation["peers"]]
            write_private_file(staging.config_file, config_with_peers(known).encode())
        shutil.rmtree(staging.path / PLOT_DIR, ignore_errors=True)  # its proofs are made
        write_private_file(staging.genesis_file, genesis_bytes)
        for entry in DataDir.INIT_ENTRIES:  # genesis.json last
            if (staging.path / entry).exists():
                (staging.path / entry).rename(data_dir / entry)
        fsync_dir(data_dir)
        staging.path.rmdir()
        return JoinResult(node_id, genesis.body.network_name, identity.certificate)
