"""Who may call what: the one permission table of the stoq/1 protocol.

Every method a node serves over ``stoq/1`` is listed here with the access it
requires; a handler cannot be registered for a method that is not listed
(:class:`trustchain.stoq.router.Router` checks), and a method not listed is
answered 404.  Access levels:

``PUBLIC``  anyone, including anonymous clients (no client certificate):
            DNS queries, CT reads, revocation status, ACME.
``NODE``    peers holding a TrustChain node certificate of this network (and
            the local operator's admin certificate).
``NETWORK`` a federated network's admin credential (a ``network-admin``
            certificate from that network's intermediate) or an admin
            certificate of this network; the handler's policy then limits a
            network's credential to that network's own objects.
``ADMIN``   only an admin certificate of this network.
"""

from __future__ import annotations

from enum import Enum

from trustchain.identity import Peer, Role


class Access(Enum):
    PUBLIC = "public"
    NODE = "node"
    NETWORK = "network"
    ADMIN = "admin"


#: (service, method) -> access.  Later issues add their methods here.
PERMISSIONS: dict[tuple[str, str], Access] = {
    ("dns", "query"): Access.PUBLIC,
    # Enrolment: a joining machine has no certificate yet, so these are public;
    # requests are bound to a fresh challenge and wait for approval
    # (bootstrap/enrolment.py).
    ("ca", "enrol-challenge"): Access.PUBLIC,
    ("ca", "enrol-request"): Access.PUBLIC,
    ("ca", "enrol-status"): Access.PUBLIC,
    # Admission by consensus (trustchain/wiring/admission.py): the joiner's proofs are
    # checked before anything is signed or submitted.
    ("ca", "enrol-plot"): Access.PUBLIC,
    ("ca", "enrol-admit"): Access.PUBLIC,
    # CT: reads and submissions are public, as in RFC 6962.
    ("ct", "logs"): Access.PUBLIC,
    ("ct", "add-chain"): Access.PUBLIC,
    ("ct", "add-pre-chain"): Access.PUBLIC,
    ("ct", "get-sth"): Access.PUBLIC,
    ("ct", "get-sth-consistency"): Access.PUBLIC,
    ("ct", "get-proof-by-hash"): Access.PUBLIC,
    ("ct", "get-entries"): Access.PUBLIC,
    ("ct", "get-entry-and-proof"): Access.PUBLIC,
    ("ct", "get-roots"): Access.PUBLIC,
    ("ct", "checkpoint"): Access.PUBLIC,
    ("ct", "witness-policy"): Access.PUBLIC,
    # tlog-witness add-checkpoint: public as over HTTP; it cosigns only the committed
    # log list's logs, by their note keys (trustchain/wiring/witness.py).
    ("witness", "add-checkpoint"): Access.PUBLIC,
    # Checkpoint gossip (trustchain/wiring/gossip.py): a checkpoint proves itself by its
    # log's signature, whoever brings it.
    ("gossip", "checkpoint"): Access.PUBLIC,
    # The CA (trustchain/wiring/ca.py): issuance policy (trustchain/ca/policy.py) decides
    # further who may act for which network; OCSP is public, as over HTTP.
    ("ca", "issue"): Access.NETWORK,
    ("ca", "revoke"): Access.NETWORK,
    ("ca", "rotate"): Access.ADMIN,
    # The root holder signs another node's intermediate (trustchain/wiring/federation_ca.py).
    ("ca", "intermediate-sign"): Access.NODE,
    ("ca", "list"): Access.NETWORK,
    # ACME External Account Binding keys (trustchain/wiring/acme.py): the CA authorises
    # the node's admin or the network's own admin.
    ("ca", "acme-eab"): Access.NETWORK,
    ("ca", "acme-eab-list"): Access.NETWORK,
    ("ca", "acme-eab-withdraw"): Access.NETWORK,
    ("ca", "ocsp"): Access.PUBLIC,
    ("consensus", "validators"): Access.NODE,
    # Consensus between nodes (transport/consensus.py): messages are signed by their
    # validators and checked by the engine; the status of the chain is public.
    ("consensus", "message"): Access.NODE,
    ("consensus", "operation"): Access.NODE,
    ("consensus", "blocks"): Access.NODE,
    ("consensus", "endorse"): Access.NODE,
    ("consensus", "status"): Access.PUBLIC,
    ("admin", "status"): Access.ADMIN,
    ("admin", "enrolments"): Access.ADMIN,
    ("admin", "approve"): Access.ADMIN,
    ("admin", "reject"): Access.ADMIN,
    ("admin", "validator"): Access.ADMIN,
    ("admin", "federation-configure"): Access.ADMIN,
    ("admin", "federation-leave"): Access.ADMIN,
    # ACME accounts, for the operator (trustchain/wiring/acme.py).
    ("admin", "acme-accounts"): Access.ADMIN,
    ("admin", "acme-deactivate"): Access.ADMIN,
    # Zone management (trustchain/wiring/dns.py over trustchain/dns/).
    ("admin", "zone-create"): Access.ADMIN,
    ("admin", "zone-delete"): Access.ADMIN,
    ("admin", "zone-list"): Access.ADMIN,
    ("admin", "zone-ttl"): Access.ADMIN,
    ("admin", "zone-export"): Access.ADMIN,
    ("admin", "zone-import"): Access.ADMIN,
    ("admin", "records-list"): Access.ADMIN,
    # A network's own credential changes its _acme-challenge TXT records only (the
    # handler's scope: trustchain/wiring/dns.py), for ACME dns-01 hooks.
    ("admin", "records-change"): Access.NETWORK,
    ("admin", "secondary-add"): Access.ADMIN,
    ("admin", "secondary-list"): Access.ADMIN,
    ("admin", "secondary-remove"): Access.ADMIN,
    ("admin", "network-register"): Access.ADMIN,
    ("admin", "network-list"): Access.ADMIN,
    ("admin", "dnssec-ds"): Access.ADMIN,
    ("admin", "dnssec-status"): Access.ADMIN,
    ("admin", "dnssec-rollover"): Access.ADMIN,
    ("admin", "dnssec-ds-published"): Access.ADMIN,
}


def allowed(access: Access, peer: Peer | None) -> bool:
    if access is Access.PUBLIC:
        return True
    if peer is None:
        return False
    if access is Access.NODE:
        return peer.role in (Role.NODE, Role.ADMIN)
    if access is Access.NETWORK:
        return peer.role in (Role.NETWORK, Role.ADMIN)
    return peer.role is Role.ADMIN
