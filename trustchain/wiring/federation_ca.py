"""The CA across the federation on a running node (:mod:`trustchain.ca.federation`).

After every commit (and at start) the node makes sure it operates an
intermediate for every registered network: the root holder signs its own
(``rotate``), any other node makes the key and asks a connected node for the
root's signature (``ca.intermediate-sign``, answered only where the root key
is); either way the node then makes it known (``ca-intermediate``).  And it
applies the committed revocations to the certificates it issued, so its CRLs
and OCSP answers say *revoked* whichever node the revocation was asked of.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)
from cryptography.x509 import ocsp
from pydantic import BaseModel, ConfigDict, Field

from transport.ca import new_serial
from transport.methods import Call, Method, Service
from transport.peers import Peers
from trustchain.ca.authority import CertificateAuthority
from trustchain.ca.errors import CaError
from trustchain.ca.federation import FederationCa
from trustchain.ca.revocation import (
    OcspIssuer,
    RevocationReason,
    named_issuer,
    unsuccessful_ocsp_response,
)
from trustchain.consensus.operations import OperationKind
from trustchain.errors import BadRequest
from trustchain.wiring.federation import COMMIT_TIMEOUT, NodeOperations

log = logging.getLogger("trustchain.federation.ca")


class SignRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    network: str = Field(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
    public_key: str = Field(max_length=1024)  # PEM SubjectPublicKeyInfo, ECDSA P-256
    generation: int = Field(ge=1, le=1_000_000)


class FederationCaNode:
    def __init__(self, state: FederationCa, authority: CertificateAuthority,
                 operations: NodeOperations, peers: Peers, *,
                 clock: Callable[[], datetime]) -> None:
        self.state = state
        self._authority = authority
        self._operations = operations
        self._peers = peers
        self._clock = clock
        #: Networks whose intermediate is being asked of the root holder.
        self._asking: dict[str, asyncio.Task[None]] = {}
        #: Committed revocations already looked at (applied here, or not ours).
        self._seen: set[int] = set()

    def after_commit(self) -> None:
        for network in sorted(self.state.networks):
            try:
                self._operate(network)
            except Exception:  # never let the CA stop the consensus hook
                log.exception("network %s: its intermediate could not be set up", network)
        for serial, revocation in list(self.state.revoked.items()):
            if serial in self._seen:
                continue
            self._seen.add(serial)
            record = self._authority.store.certificate(serial)
            if record is None or record.revoked_at is not None:
                continue  # issued elsewhere, or revoked here first
            try:
                self._authority.revoke(serial, RevocationReason(revocation.reason),
                                       actor=f"node:{revocation.requester}", now=self._clock())
                log.info("serial %x revoked (committed at height %d, asked of node %s)",
                         serial, revocation.height, revocation.requester)
            except CaError as exc:
                log.warning("serial %x: committed revocation not applied: %s", serial, exc)

    def _operate(self, network: str) -> None:
        issuer = self._authority.store.active_issuer(network)
        if issuer is None:
            if self._authority.root_key_id_or_none() is None:
                self._ask(network)
                return
            issuer = self._authority.rotate(network, self._clock(), actor="federation",
                                            serial=new_serial())
        der = issuer.certificate.public_bytes(Encoding.DER)
        if self.state.intermediates.get(network, {}).get(self._operations.node) != der:
            self._operations.send(OperationKind.CA_INTERMEDIATE,
                                  {"network": network, "certificate": der.hex()},
                                  what=der.hex(), subject=network)

    def _ask(self, network: str) -> None:
        running = self._asking.get(network)
        if running is None or running.done():
            self._asking[network] = asyncio.ensure_future(self._ask_root(network))

    async def _ask_root(self, network: str) -> None:
        """A key for ``network``'s intermediate here, signed by whichever connected node
        holds the root key."""
        key_id, public = self._authority.keys.generate(f"ca-issuer:{network}", self._clock())
        request = json.dumps({
            "network": network, "generation": self._authority.store.next_generation(network),
            "public_key": public.public_bytes(Encoding.PEM,
                                              PublicFormat.SubjectPublicKeyInfo).decode()})
        deadline = asyncio.get_running_loop().time() + COMMIT_TIMEOUT
        while asyncio.get_running_loop().time() < deadline:
            for node_id in sorted(self._peers.connected()):
                try:
                    answer = await self._peers.request(node_id, "ca", "intermediate-sign",
                                                       request.encode())
                except Exception as exc:  # a closing connection: ask the next
                    log.debug("intermediate-sign at %s: %s", node_id, exc)
                    continue
                if answer.status != 200:
                    continue  # no root key there
                pem = json.loads(answer.message)["certificate"].encode()
                try:
                    self._authority.adopt(network, key_id, public,
                                          x509.load_pem_x509_certificate(pem), self._clock(),
                                          actor=f"node:{node_id}")
                except (CaError, ValueError) as exc:
                    log.warning("network %s: node %s signed an unusable intermediate: %s",
                                network, node_id, exc)
                    continue
                log.info("network %s: intermediate signed by the root holder (node %s)",
                         network, node_id)
                self._operate(network)
                return
            await asyncio.sleep(1.0)  # no root holder connected yet: a retry interval
        log.warning("network %s: no connected node holds the root key; retried at the next "
                    "commit", network)

    async def revoke(self, serial: int, reason: RevocationReason) -> dict[str, Any]:
        """Revoke a certificate issued anywhere in the federation: a ``ca-revocation``,
        answered once committed (the issuing node then revokes it).

        :raises BadRequest: refused (revoked already).
        """
        entry = self._operations.entry(OperationKind.CA_REVOCATION,
                                       {"serial": f"{serial:x}", "reason": reason.value})
        height = await self._operations.runner.committed_height(entry, COMMIT_TIMEOUT)
        return {"serial": f"{serial:x}", "reason": reason.value, "height": height}


    async def relay_ocsp(self, request: bytes) -> bytes | None:
        """The answer of the node whose intermediate an OCSP request names, if another node
        operates it (None: not a federation intermediate).  That node signs it, as issuer;
        ``tryLater`` while it cannot be reached (RFC 6960 section 2.3)."""
        issuers = [OcspIssuer(x509.load_der_x509_certificate(der), node)
                   for nodes in self.state.intermediates.values()
                   for node, der in sorted(nodes.items()) if node != self._operations.node]
        issuer = named_issuer(request, issuers)
        if issuer is None:
            return None
        try:
            answer = await self._peers.request(issuer.key_id, "ca", "ocsp", request)
        except Exception as exc:  # not connected, or the connection closed: try later
            log.info("OCSP for node %s's intermediate not relayed: %s", issuer.key_id, exc)
            return unsuccessful_ocsp_response(ocsp.OCSPResponseStatus.TRY_LATER)
        if answer.status != 200:
            return unsuccessful_ocsp_response(ocsp.OCSPResponseStatus.TRY_LATER)
        return answer.message

    def others_issue(self) -> bool:
        return any(set(nodes) - {self._operations.node}
                   for nodes in self.state.intermediates.values())

    def announce(self, serial: int, reason: RevocationReason) -> None:
        """Make a revocation done here known to every node (sent, not waited for)."""
        self._operations.send(OperationKind.CA_REVOCATION,
                              {"serial": f"{serial:x}", "reason": reason.value},
                              subject=f"{serial:x}")


def intermediate_service(authority: CertificateAuthority,
                         clock: Callable[[], datetime]) -> Service:
    """``ca.intermediate-sign`` (nodes): the root holder signs a node's intermediate."""

    def sign(call: Call) -> dict[str, str]:
        req = call.parse(SignRequest)
        assert call.peer is not None  # the permission table admits nodes only
        try:
            key = load_pem_public_key(req.public_key.encode())
        except ValueError:
            raise BadRequest("public_key: a PEM SubjectPublicKeyInfo") from None
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            raise BadRequest("public_key: an ECDSA P-256 key")
        certificate = authority.sign_intermediate(
            req.network, key, clock(), generation=req.generation, serial=new_serial(),
            actor=f"node:{call.peer.name}")
        return {"certificate": certificate.public_bytes(Encoding.PEM).decode()}

    return Service("ca", (Method(sign, stoq="intermediate-sign"),))
