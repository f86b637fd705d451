"""The CA core driven in memory: issuance, revocation and rate limits with a scripted clock.

No node process, no sockets, no event loop.  A small driver performs each
step the core yields (:mod:`trustchain.ca.steps`), as ``transport/ca.py``
does on the event loop but inline: the CSR check and the signatures with a
:class:`Signer`, the SCTs from two real CT logs (:class:`trustchain.ct.log.Log`)
over in-memory stores, the writes in a transaction of the CA's real SQLite
store, whose file in ``tmp_path`` is closed and reopened to restart it
(as ``tests/trustchain/stoq/test_connection.py`` joins two QUIC cores).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509 import ocsp

from bootstrap.root import build_root_certificate
from tests.trustchain.ca.test_issuance import csr
from trustchain.ca.authority import CertificateAuthority, NetworkInfo
from trustchain.ca.errors import CaError
from trustchain.ca.issuance import SCT_LIST_OID
from trustchain.ca.lint import LintError
from trustchain.ca.ratelimit import DEFAULT_LIMITS, NAMES, Limit, RateLimited
from trustchain.ca.revocation import RevocationReason
from trustchain.ca.signer import Signer
from trustchain.ca.steps import (
    CheckCsr,
    CtLog,
    Failed,
    IssuedChain,
    NeedScts,
    SignFinal,
    SignPrecertificate,
    Step,
    Write,
    advance,
)
from trustchain.ca.work import check_request, final_certificate, precertificate
from trustchain.ct.log import ExpiryRange, Log, issuer_key_hash
from trustchain.ct.precert import without_extension
from trustchain.ct.sequencer import Batch, Sequenced, identity
from trustchain.ct.structs import SCT, Entry, EntryType, TreeHead
from trustchain.errors import KeyNotFoundError
from trustchain.identity import Peer, Role
from trustchain.storage.audit import AUDIT_SCHEMA, AuditLog
from trustchain.storage.ca import CA_SCHEMA, SqliteCaStore
from trustchain.storage.database import Database, open_database
from trustchain.storage.migrations import migrate
from trustchain.storage.ratelimit import RATELIMIT_SCHEMA, RateLimiter

NOW = datetime(2026, 1, 1, tzinfo=UTC)
NETWORKS = {"alpha": NetworkInfo("alpha.trust.example.net.")}
ADMIN = Peer(Role.ADMIN, "ops", "testnet")
ROOT_PURPOSE = "genesis-root"
#: At most one certificate a week for one exact set of names; the other limits as shipped.
LIMITS = {**DEFAULT_LIMITS, NAMES: Limit(NAMES, 1, timedelta(days=7), what="certificates")}
_SCT_LIST_OID_DER = bytes.fromhex("060a2b06010401d679020402")


class MemoryKeys:
    """The key store in memory: the CA's :class:`CaKeys` and its signer's :class:`PrivateKeys`."""

    def __init__(self) -> None:
        self._keys: dict[str, ec.EllipticCurvePrivateKey] = {}
        self._active: dict[str, str] = {}

    def add(self, key: ec.EllipticCurvePrivateKey, purpose: str) -> str:
        key_id = f"k{len(self._keys)}"
        self._keys[key_id], self._active[purpose] = key, key_id
        return key_id

    def key_id(self, purpose: str) -> str | None:
        return self._active.get(purpose)

    def generate(self, purpose: str, now: datetime) -> tuple[str, ec.EllipticCurvePublicKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        return self.add(key, purpose), key.public_key()

    def private_key(self, key_id: str) -> ec.EllipticCurvePrivateKey:
        if key_id not in self._keys:
            raise KeyNotFoundError(key_id)
        return self._keys[key_id]


class MemoryLogStore:
    """A CT log's :class:`trustchain.ct.log.LogStore` in a list."""

    def __init__(self) -> None:
        self.rows: list[tuple[Sequenced, list[bytes], bytes]] = []
        self.head: TreeHead | None = None

    def append(self, batch: Batch, chains: dict[int, list[bytes]], scts: dict[int, bytes]) -> None:
        self.rows += [(s, chains.get(s.index, []), scts[s.index]) for s in batch.entries]

    def entries(self, start: int = 0,
                end: int | None = None) -> list[tuple[Sequenced, list[bytes]]]:
        return [(s, chain) for s, chain, _ in self.rows
                if s.index >= start and (end is None or s.index <= end)]

    def tree_head(self) -> TreeHead | None:
        return self.head

    def save_tree_head(self, head: TreeHead) -> None:
        self.head = head

    def sct(self, index: int) -> bytes | None:
        return self.rows[index][2] if index < len(self.rows) else None


@dataclass
class World:
    """One CA, two CT logs and a scripted clock; the CA's database in ``directory``."""

    directory: Path
    keys: MemoryKeys
    root: x509.Certificate
    logs: dict[str, Log]
    now: datetime = NOW
    #: Steps whose performing fails, by type, with the error (a fault injected).
    faults: dict[type[Any], Exception] = field(default_factory=dict)
    db: Database = field(init=False)
    ca: CertificateAuthority = field(init=False)

    def __post_init__(self) -> None:
        self.open()

    def open(self) -> None:
        self.db = open_database(self.directory)
        for schema in (CA_SCHEMA, RATELIMIT_SCHEMA, AUDIT_SCHEMA):
            migrate(self.db, schema)
        self.ca = CertificateAuthority(
            keys=self.keys, signer=Signer(self.keys), store=SqliteCaStore(self.db),
            audit=AuditLog(self.db), limiter=RateLimiter(self.db, LIMITS), root=self.root,
            root_key_purpose=ROOT_PURPOSE, own_network="testnet", organisation="testnet",
            base_url="http://ca.trust.example.net", networks=lambda: NETWORKS,
            network=NETWORKS.get)

    def restart(self) -> None:
        """Close the database and open it again under a new CA object (a node restart)."""
        self.db.close()
        self.open()

    def ct_logs(self) -> list[CtLog]:
        return [CtLog(name, lg.public_key.public_bytes(Encoding.DER,
                                                       PublicFormat.SubjectPublicKeyInfo),
                      lg.expiry) for name, lg in self.logs.items()]

    def issue(self, names: list[str], serial: int, renews: int | None = None) -> IssuedChain:
        flow = self.ca.issuance(csr(names), network=None, profile=None, peer=ADMIN,
                                client_address="2001:db8::7", logs=self.ct_logs(), now=self.now,
                                serial=serial, renews=renews)
        answer: Any = None
        while not isinstance(step := advance(flow, answer), IssuedChain):
            try:
                answer = self.perform(step)
            except Exception as exc:
                answer = Failed(exc)
        return step

    def perform(self, step: Step) -> Any:
        """What transport/ca.py does for each step, inline; each step takes a second."""
        self.now += timedelta(seconds=1)
        if type(step) in self.faults:
            raise self.faults[type(step)]
        signer = self.ca.signer
        match step:
            case CheckCsr():
                return check_request(step.csr, step.zone, step.prefixes, step.profile)
            case Write():
                return self.ca.store.write(lambda txn: step.fn(txn, self.now))
            case SignPrecertificate():
                return precertificate(signer, step.layout, step.lint)
            case NeedScts():
                return [(name, self.submit(self.logs[name], step.chain)) for name in step.logs]
            case SignFinal():
                return final_certificate(signer, step.layout, step.precertificate, step.scts)
        raise AssertionError(step)

    def submit(self, log: Log, chain: tuple[bytes, bytes]) -> bytes:
        """add-pre-chain, then sequencing: the SCT once the entry is under a signed head."""
        submission = log.check([base64.b64encode(der).decode() for der in chain], precert=True)
        if submission.index is not None:
            return log.sct(submission.index).to_bytes()
        issued = {i.identity: i.sct for i in log.integrate(int(self.now.timestamp() * 1000))}
        return issued[identity(submission.entry)].to_bytes()

    def audit_kinds(self) -> list[str]:
        return [record.kind for record in AuditLog(self.db).records()]


def make_world(directory: Path, b_roots: list[x509.Certificate] | None = None) -> World:
    keys = MemoryKeys()
    root_key = ec.generate_private_key(ec.SECP384R1())
    keys.add(root_key, ROOT_PURPOSE)
    root = build_root_certificate(root_key, "testnet", NOW - timedelta(days=1))
    logs = {name: Log(name, ec.generate_private_key(ec.SECP256R1()), MemoryLogStore(),
                      roots, expiry=ExpiryRange())
            for name, roots in (("a", [root]), ("b", b_roots or [root]))}
    return World(directory, keys, root, logs)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    made = make_world(tmp_path)
    yield made
    made.db.close()


WWW = ["www.alpha.trust.example.net"]


def embedded_scts(certificate: x509.Certificate) -> list[SCT]:
    """The SCT list as ``cryptography`` reads it (not the CA's own encoder)."""
    extension = certificate.extensions.get_extension_for_oid(SCT_LIST_OID).value
    assert isinstance(extension, x509.PrecertificateSignedCertificateTimestamps)
    return [SCT(s.log_id, int(s.timestamp.replace(tzinfo=UTC).timestamp() * 1000),
                s.extension_bytes, s.signature) for s in extension]


def test_issuance_logs_the_precertificate_in_two_logs_and_embeds_both_scts(world: World) -> None:
    chain = world.issue(WWW, serial=0x1001)
    final, issuer = (x509.load_der_x509_certificate(der) for der in chain.chain)
    assert chain.serial == final.serial_number == 0x1001
    final.verify_directly_issued_by(issuer)
    issuer.verify_directly_issued_by(world.root)
    # What a relying party checks: each SCT signs the precertificate entry that the final
    # certificate implies, by the log whose ID it carries.
    entry = Entry(EntryType.PRECERT, without_extension(final.tbs_certificate_bytes,
                                                       _SCT_LIST_OID_DER),
                  issuer_key_hash(issuer))
    scts = {sct.log_id: sct for sct in embedded_scts(final)}
    assert set(scts) == {lg.log_id for lg in world.logs.values()}
    for log in world.logs.values():
        scts[log.log_id].verify(entry, log.public_key)
        store = log._store
        assert isinstance(store, MemoryLogStore)
        [(sequenced, (pre_der, issuer_der), _)] = store.rows  # one entry: the precertificate
        assert sequenced.entry == entry and issuer_der == chain.chain[1]
        pre = x509.load_der_x509_certificate(pre_der)
        assert pre.serial_number == 0x1001
        assert pre.extensions.get_extension_for_class(x509.PrecertPoison).critical
    record = world.ca.store.certificate(0x1001)
    assert record is not None and record.state == "issued" and record.certificate == final
    assert record.names == WWW and record.requester == "admin:ops"
    issued = list(AuditLog(world.db).records())[-1]
    assert issued.kind == "cert.issue" and issued.details["serial"] == "1001"
    assert sorted(issued.details["logs"]) == sorted(lg.log_id.hex() for lg in world.logs.values())
    assert AuditLog(world.db).verify().ok


def test_a_log_that_refuses_leaves_the_certificate_unfinished(tmp_path: Path) -> None:
    stranger = build_root_certificate(ec.generate_private_key(ec.SECP384R1()), "other", NOW)
    world = make_world(tmp_path, b_roots=[stranger])
    try:
        with pytest.raises(CaError, match="a log refused the precertificate: .*root this log"):
            world.issue(WWW, serial=0x2002)
        record = world.ca.store.certificate(0x2002)
        assert record is not None and record.state == "precertificate"
        assert record.certificate is None and "cert.issue" not in world.audit_kinds()
    finally:
        world.db.close()


def test_fewer_than_two_logs_for_the_expiry_is_refused_before_anything_is_written(
    world: World
) -> None:
    world.logs["b"].expiry = ExpiryRange(NOW - timedelta(days=30), NOW)
    with pytest.raises(CaError, match="fewer than two logs of this node accept"):
        world.issue(WWW, serial=0x2003)
    assert world.ca.store.certificate(0x2003) is None


def test_a_lint_refusal_gives_the_serial_back(world: World) -> None:
    world.faults[SignPrecertificate] = LintError("pre-issuance lint refused: x (ERROR)")
    with pytest.raises(CaError, match="pre-issuance lint refused"):
        world.issue(WWW, serial=0x2004)
    assert world.ca.store.certificate(0x2004) is None
    assert world.audit_kinds()[-1] == "lint.refuse"


def ocsp_status(world: World, final: x509.Certificate,
                issuer: x509.Certificate) -> ocsp.OCSPResponse:
    request = ocsp.OCSPRequestBuilder().add_certificate(final, issuer, hashes.SHA1()).build()
    return ocsp.load_der_ocsp_response(world.ca.ocsp(request.public_bytes(Encoding.DER),
                                                     world.now))


def test_revocation_reaches_ocsp_and_the_crl(world: World) -> None:
    final, issuer = (x509.load_der_x509_certificate(der)
                     for der in world.issue(WWW, serial=0x3003).chain)
    assert ocsp_status(world, final, issuer).certificate_status is ocsp.OCSPCertStatus.GOOD
    world.now += timedelta(hours=1)
    world.ca.revoke(0x3003, RevocationReason.KEY_COMPROMISE, actor="admin:ops", now=world.now)
    answer = ocsp_status(world, final, issuer)
    assert answer.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert answer.revocation_reason is x509.ReasonFlags.key_compromise
    key_id = world.ca.store.issuers("alpha")[0].key_id
    crl = x509.load_der_x509_crl(world.ca.crl(key_id, world.now))
    assert crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    listed = crl.get_revoked_certificate_by_serial_number(0x3003)
    assert listed is not None and listed.revocation_date_utc == world.now
    assert world.audit_kinds()[-1] == "cert.revoke"
    with pytest.raises(CaError, match="serial 3003 was already revoked at 2026-01-01T01:"):
        world.ca.revoke(0x3003, RevocationReason.SUPERSEDED, actor="admin:ops", now=world.now)
    with pytest.raises(CaError, match="no certificate with serial 3004"):
        world.ca.revoke(0x3004, RevocationReason.SUPERSEDED, actor="admin:ops", now=world.now)


def test_a_rate_limit_refusal_is_audited_and_reserves_nothing(world: World) -> None:
    world.issue(WWW, serial=0x4004)
    world.now += timedelta(minutes=1)
    with pytest.raises(RateLimited, match="rate limit 'names' for www.alpha.trust.example.net"):
        world.issue(WWW, serial=0x4005)
    assert world.ca.store.certificate(0x4005) is None
    refusal = list(AuditLog(world.db).records())[-1]
    assert refusal.kind == "ratelimit.refuse"
    assert (refusal.details["limit"], refusal.details["names"]) == ("names", WWW)
    world.issue(["api.alpha.trust.example.net"], serial=0x4006)  # other names: allowed


def test_a_renewal_inside_its_window_is_not_charged_to_the_names_limit(world: World) -> None:
    world.issue(WWW, serial=0x6006)
    world.now += timedelta(minutes=1)
    with pytest.raises(RateLimited, match="'names'"):  # too early: charged as any request
        world.issue(WWW, serial=0x6007, renews=0x6006)
    with pytest.raises(RateLimited, match="'names'"):  # not the same names
        world.issue(WWW, serial=0x6007, renews=0x1)
    # Inside the window (from 2/3 of the 90 days), the renewal takes nothing from the
    # bucket, which refilled meanwhile: one more certificate for the names fits after it.
    world.now += timedelta(days=61)
    world.issue(WWW, serial=0x6008, renews=0x6006)
    world.issue(WWW, serial=0x6009)
    with pytest.raises(RateLimited, match="'names'"):
        world.issue(WWW, serial=0x600A)
    # A revoked certificate may be replaced at once.
    world.ca.revoke(0x6009, RevocationReason.KEY_COMPROMISE, actor="admin:ops", now=world.now)
    world.issue(WWW, serial=0x600B, renews=0x6009)
    issued = [r for r in AuditLog(world.db).records() if r.kind == "cert.issue"]
    assert [r.details.get("renews") for r in issued] == [None, "6006", None, "6009"]


def test_issued_revoked_and_rate_limited_state_survive_a_restart(world: World) -> None:
    world.issue(WWW, serial=0x5005)
    world.ca.revoke(0x5005, RevocationReason.SUPERSEDED, actor="admin:ops", now=world.now)
    world.restart()
    record = world.ca.store.certificate(0x5005)
    assert record is not None and record.state == "issued" and record.certificate is not None
    assert record.revoked_at is not None and record.reason == "superseded"
    with pytest.raises(RateLimited, match="'names'"):
        world.issue(WWW, serial=0x5006)
    with pytest.raises(CaError, match="serial 5005 was used before"):
        world.issue(["api.alpha.trust.example.net"], serial=0x5005)
    # The refused reuse charged nothing: those names may still have their certificate.
    world.issue(["api.alpha.trust.example.net"], serial=0x5007)
    assert world.audit_kinds() == ["ca.rotate", "cert.issue", "cert.revoke", "ratelimit.refuse",
                                   "cert.issue"]
    assert AuditLog(world.db).verify().ok
