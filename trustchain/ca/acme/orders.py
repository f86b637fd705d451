"""Orders, authorizations and challenges (RFC 8555 sections 7.1.3 to 7.1.6, 7.4, 7.5, 8):
their rules and their JSON, pure.

An order's status follows its authorizations (7.1.6): ``pending`` until every one is
valid, then ``ready``; ``invalid`` as soon as one is; ``processing`` while its
certificate is issued, then ``valid``.  A name gets ``http-01``, ``dns-01`` and
``tls-alpn-01`` (RFC 8737) challenges; a wildcard (``*.`` then the name, in its
authorization without the ``*.``, ``wildcard: true``) only ``dns-01`` (8.4: the others
cannot show control of a subtree).  The key authorization is the token, a dot and the
account key's RFC 7638 thumbprint (8.1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from trustchain.ca.acme.problems import AcmeProblem
from trustchain.ca.acme.store import Authorization, Order

#: How long an order and its authorizations may take to complete.
ORDER_LIFETIME = timedelta(days=7)
#: How long a valid authorization stands for its account's later orders (Let's Encrypt
#: allows 30 days; the Baseline Requirements 3.2.2.4 allow far more).
AUTHZ_VALID_LIFETIME = timedelta(days=30)
#: A valid authorization is reused only if it stays valid at least this long.
AUTHZ_REUSE_MARGIN = timedelta(days=1)
MAX_IDENTIFIERS = 100
HTTP_01, DNS_01, TLS_ALPN_01 = "http-01", "dns-01", "tls-alpn-01"
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


@dataclass(frozen=True)
class Validate:
    """A challenge to check from the CA's side (the edge does the I/O)."""

    authz_id: int
    type: str
    name: str
    token: str
    key_authorization: str


@dataclass(frozen=True)
class Issue:
    """A finalized order's certificate to issue (the edge asks the CA)."""

    order_id: int
    account_id: int
    csr: bytes  # DER
    #: (name as ordered, the challenge type that validated it): for CAA's
    #: validationmethods (RFC 8657).
    methods: tuple[tuple[str, str], ...] = ()
    #: The serial of the certificate the order replaces (ARI), for the CA's renewal rules.
    replaces: int | None = None


@dataclass(frozen=True)
class Revoke:
    """A certificate to revoke (the edge asks the CA, which records it and its audit)."""

    serial: int
    reason: str  # an RFC 5280 reason name (trustchain.ca.revocation.RevocationReason)
    actor: str  # for the audit log: the ACME account, or the certificate's own key
    #: The certificate as the client sent it (DER): the edge revokes only if it is the
    #: one the CA issued with that serial (a certificate made up with another's serial
    #: and one's own key or names revokes nothing).
    certificate: bytes = b""


#: RFC 5280 reason codes a subscriber may give through ACME (RFC 8555 7.6; BR 7.2.2).
REASONS = {0: "unspecified", 1: "keyCompromise", 3: "affiliationChanged", 4: "superseded",
           5: "cessationOfOperation", 9: "privilegeWithdrawn"}


def rfc3339(moment: datetime | str) -> str:
    text = moment if isinstance(moment, str) else moment.isoformat()
    return text.replace("+00:00", "Z")


def requested_names(payload: dict[str, Any]) -> list[str]:
    """The order's DNS names, lower-cased, in order, each once.

    :raises AcmeProblem: malformed (not a list of DNS identifiers), unsupportedIdentifier,
        or rejectedIdentifier (not a host name this CA could name in a certificate).
    """
    items = payload.get("identifiers")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_IDENTIFIERS:
        raise AcmeProblem("malformed", f"identifiers: 1 to {MAX_IDENTIFIERS} objects")
    names: list[str] = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("value"), str):
            raise AcmeProblem("malformed", "each identifier has a type and a value")
        if item.get("type") != "dns":
            raise AcmeProblem("unsupportedIdentifier", "only dns identifiers are issued for")
        name = item["value"].lower().rstrip(".")
        labels = name.split(".")
        body = labels[1:] if labels[0] == "*" else labels
        if len(name) > 253 or len(body) < 2 or not all(_LABEL.match(label) for label in body):
            raise AcmeProblem("rejectedIdentifier", f"{item['value'][:80]!r} is not a host "
                                                    "name (or a wildcard one label deep)")
        if name not in names:
            names.append(name)
    return names


def challenges_for(wildcard: bool) -> list[dict[str, Any]]:
    return [{"type": t, "status": "pending"} for t in ((DNS_01,) if wildcard
                                                      else (HTTP_01, DNS_01, TLS_ALPN_01))]


def _expired(expires: str, now: datetime) -> bool:
    return datetime.fromisoformat(expires) <= now


def authz_status(authz: Authorization, now: datetime) -> str:
    """Its status at ``now``: a pending or valid one past its expiry is expired (RFC 8555
    7.1.6)."""
    if authz.status in ("pending", "valid") and _expired(authz.expires, now):
        return "expired"
    return authz.status


def order_status(order: Order, authorizations: list[Authorization], now: datetime) -> str:
    """Its status at ``now``, from its authorizations while it is open; an open order past
    its expiry, or with an authorization that failed or expired, is invalid."""
    if order.status != "open":
        return order.status
    if _expired(order.expires, now) or any(
            authz_status(a, now) in ("invalid", "deactivated", "expired")
            for a in authorizations):
        return "invalid"
    return "ready" if all(a.status == "valid" for a in authorizations) else "pending"


def key_authorization(token: str, thumbprint: str) -> str:
    return f"{token}.{thumbprint}"


def check_csr(der: bytes, names: list[str], account_key_der: bytes) -> None:
    """A finalize's CSR: signed by its key, asking for exactly the order's names (SANs, and
    a CN if any among them), not with the account's key (RFC 8555 7.4, 11.1).

    :raises AcmeProblem: badCSR naming what is wrong.
    """
    try:
        csr = x509.load_der_x509_csr(der)
        signed = csr.is_signature_valid
    except (ValueError, InvalidSignature, TypeError):
        raise AcmeProblem("badCSR", "the CSR does not parse") from None
    if not signed:
        raise AcmeProblem("badCSR", "the CSR's signature does not verify")
    try:
        sans = csr.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        sans = []
    common = [str(a.value) for a in csr.subject.get_attributes_for_oid(
        x509.oid.NameOID.COMMON_NAME)]
    asked = {n.lower().rstrip(".") for n in [*sans, *common]}
    if asked != set(names):
        raise AcmeProblem("badCSR", "the CSR's names are not the order's: it asks for "
                                    f"{sorted(asked)[:5]}, the order for {names[:5]}")
    if csr.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo) \
            == account_key_der:
        raise AcmeProblem("badCSR", "the certificate's key must not be the account key")


def order_json(order: Order, authorizations: list[Authorization], base: str,
               now: datetime) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": order_status(order, authorizations, now), "expires": rfc3339(order.expires),
        "identifiers": [{"type": "dns", "value": n} for n in order.names],
        "authorizations": [f"{base}/acme/authz/{i}" for i in order.authorizations],
        "finalize": f"{base}/acme/order/{order.id}/finalize"}
    if order.certificate:
        body["certificate"] = f"{base}/acme/cert/{order.certificate}"
    if order.error:
        body["error"] = order.error
    return body


def challenge_json(authz: Authorization, challenge: dict[str, Any], base: str
                   ) -> dict[str, Any]:
    body = {"type": challenge["type"], "status": challenge["status"], "token": authz.token,
            "url": f"{base}/acme/chall/{authz.id}/{challenge['type']}"}
    for extra in ("validated", "error"):
        if extra in challenge:
            body[extra] = challenge[extra]
    return body


def authz_json(authz: Authorization, base: str, now: datetime) -> dict[str, Any]:
    body: dict[str, Any] = {
        "identifier": {"type": "dns", "value": authz.name}, "status": authz_status(authz, now),
        "expires": rfc3339(authz.expires),
        "challenges": [challenge_json(authz, c, base) for c in authz.challenges]}
    if authz.wildcard:
        body["wildcard"] = True
    return body


def validated_by(authz: Authorization) -> str:
    """The type of the challenge that made ``authz`` valid."""
    return next((c["type"] for c in authz.challenges if c.get("status") == "valid"), "")
