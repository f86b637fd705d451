"""The CA across the federation, as the committed blocks make it: pure and deterministic.

Which nodes sign for which network: every node of the federation operates its own
intermediate for every registered network.  A node makes the key (it never leaves
the node), the holder of the genesis root key signs the certificate (name-constrained
to the network's zone and address blocks), and the node makes it known with a
``ca-intermediate`` operation, so every node knows every network's intermediates and
a network's certificates keep being issued while any of its operators is up.  The
operation proves itself: validators check that the genesis root signed the
certificate, that it is a CA of path length 0, and that its permitted DNS subtree
is the network's zone.

Revocations made at any node are ``ca-revocation`` operations (serial and reason);
every node applies them, in block order, to the certificates it issued, so the
issuing node's CRLs and OCSP answers say *revoked* whichever node the revocation
was asked of.  (OCSP for another node's intermediate is not answered by a node:
see docs/federation.md.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from trustchain.ca.revocation import RevocationReason

#: The reasons a ``ca-revocation`` may give (RFC 5280 5.3.1, those the CA accepts).
REASONS = frozenset(reason.value for reason in RevocationReason)
MAX_CERTIFICATE_BYTES = 8 * 1024


class CaRefused(ValueError):
    """An operation the federation's CA does not take; the message says why."""


@dataclass(frozen=True)
class Revocation:
    serial: int
    reason: str
    height: int
    requester: str


@dataclass
class FederationCa:
    root: x509.Certificate
    #: The origin, in lower case with its trailing dot: a network's zone is NAME.<origin>.
    origin: str
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: network -> node -> the DER of that node's intermediate for it (the newest).
    intermediates: dict[str, dict[str, bytes]] = field(default_factory=dict)
    #: serial -> its revocation, as committed.
    revoked: dict[int, Revocation] = field(default_factory=dict)

    #: DER -> parsed, for :meth:`certificates` (asked at each HTTPS handshake).
    _parsed: dict[bytes, x509.Certificate] = field(default_factory=dict, repr=False,
                                                   compare=False)

    def certificates(self) -> list[x509.Certificate]:
        """Every node's committed intermediate for every network (to verify chains
        through: a credential one node issued, presented at another)."""
        ders = {der for nodes in self.intermediates.values() for der in nodes.values()}
        for der in ders - self._parsed.keys():
            self._parsed[der] = x509.load_der_x509_certificate(der)
        return [self._parsed[der] for der in sorted(ders)]

    def zone(self, network: str) -> str:
        return f"{network}.{self.origin}".rstrip(".")

    def check(self, kind: str, requester: str, body: Mapping[str, Any]) -> None:
        """:raises CaRefused: naming why."""
        if kind == "ca-intermediate":
            self._intermediate(body)
        elif kind == "ca-revocation":
            self._revocation(body)

    def apply(self, kind: str, requester: str, body: Mapping[str, Any], height: int) -> None:
        if kind == "network-registration":
            self.networks[body["name"]] = dict(body)
        elif kind == "ca-intermediate":
            network, der = self._intermediate(body)
            self.intermediates.setdefault(network, {})[requester] = der
        elif kind == "ca-revocation":
            serial, reason = self._revocation(body)
            self.revoked.setdefault(serial, Revocation(serial, reason, height, requester))

    def credential_refusal(self, network: str, issuer: bytes | None, serial: int | None
                           ) -> str | None:
        """Why a ``network-admin`` credential of ``network`` that another node issued is
        not good (None: it is).  Its chain has verified to the root; it must come from one
        of the network's committed intermediates (an intermediate for another network
        could name any network in its URI) and not be revoked."""
        if issuer is None or issuer not in self.intermediates.get(network, {}).values():
            return (f"no intermediate of network {network} that this federation committed "
                    "issued that credential")
        if serial is None or serial in self.revoked:
            return f"the credential of network {network} was revoked"
        return None

    def _intermediate(self, body: Mapping[str, Any]) -> tuple[str, bytes]:
        if set(body) - {"nonce"} != {"network", "certificate"} \
                or not isinstance(body.get("network"), str) \
                or not isinstance(body.get("certificate"), str) \
                or len(body["certificate"]) > 2 * MAX_CERTIFICATE_BYTES:
            raise CaRefused("ca-intermediate: network and certificate (hex DER)")
        network = body["network"]
        if network not in self.networks:
            raise CaRefused(f"ca-intermediate: no network {network!r} is registered")
        try:
            der = bytes.fromhex(body["certificate"])
            certificate = x509.load_der_x509_certificate(der)
            certificate.verify_directly_issued_by(self.root)
        except (ValueError, TypeError, InvalidSignature):
            raise CaRefused("ca-intermediate: a certificate the genesis root signed") from None
        try:
            basic = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
            names = certificate.extensions.get_extension_for_class(x509.NameConstraints).value
        except x509.ExtensionNotFound:
            raise CaRefused("ca-intermediate: a name-constrained CA certificate") from None
        permitted = {n.value.lower() for n in names.permitted_subtrees or []
                     if isinstance(n, x509.DNSName)}
        if not basic.ca or basic.path_length != 0 or permitted != {self.zone(network)}:
            raise CaRefused(f"ca-intermediate: a CA of path length 0 for {self.zone(network)} "
                            "alone")
        return network, der

    def _revocation(self, body: Mapping[str, Any]) -> tuple[int, str]:
        serial, reason = body.get("serial"), body.get("reason")
        if set(body) - {"nonce"} != {"serial", "reason"} or not isinstance(serial, str) \
                or not 1 <= len(serial) <= 40 or reason not in REASONS:
            raise CaRefused("ca-revocation: serial (hex) and a reason among "
                            f"{', '.join(sorted(REASONS))}")
        try:
            value = int(serial, 16)
        except ValueError:
            raise CaRefused("ca-revocation: the serial is hex") from None
        if value in self.revoked:
            raise CaRefused(f"ca-revocation: serial {serial} is revoked already")
        return value, reason
