"""Reconciliation of issuances cut short by a stop: every reservation left in state
``precertificate`` is marked ``abandoned`` at start, audited, and stays revocable.

The CA core is driven in memory as in ``test_authority.py`` (its :class:`World`), with a
fault injected where a kill would land: after the precertificate was logged, before the
final certificate was stored.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from tests.trustchain.ca import test_authority
from tests.trustchain.ca.test_authority import WWW, MemoryLogStore, World, make_world
from tests.trustchain.ca.test_issuance import csr
from trustchain.ca.authority import KIND_CERT_RECONCILE
from trustchain.ca.errors import CaError
from trustchain.ca.revocation import RevocationReason
from trustchain.ca.revoking import revocation_message
from trustchain.ca.steps import SignFinal
from trustchain.errors import StorageError
from trustchain.storage.audit import AuditLog
from trustchain.storage.ca import CA_SCHEMA
from trustchain.storage.database import open_database
from trustchain.storage.migrations import Schema, current_version, migrate

SUBSCRIBER = ec.generate_private_key(ec.SECP256R1())
SERIAL = 0x6006


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    made = make_world(tmp_path)
    yield made
    made.db.close()


class Killed(Exception):
    """Where the process died (the step was never performed)."""


def interrupted(world: World, monkeypatch: pytest.MonkeyPatch, serial: int = SERIAL) -> bytes:
    """An issuance whose precertificate reached both logs but whose node died before signing
    the final certificate; restarted.  Its precertificate, DER, as the logs hold it."""
    monkeypatch.setattr(test_authority, "csr", lambda names: csr(names, SUBSCRIBER))
    world.faults[SignFinal] = Killed()
    with pytest.raises(Killed):
        world.issue(WWW, serial=serial)
    world.faults.clear()
    world.restart()
    store = world.logs["a"]._store
    assert isinstance(store, MemoryLogStore)
    return store.rows[-1][1][0]


def test_an_interrupted_issuance_is_abandoned_once_and_audited(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    interrupted(world, monkeypatch)
    record = world.ca.store.certificate(SERIAL)
    assert record is not None and record.state == "precertificate"
    world.issue(["api.alpha.trust.example.net"], serial=0x6007)  # finished: not touched

    assert world.ca.reconcile(world.now) == [SERIAL]
    record = world.ca.store.certificate(SERIAL)
    assert record is not None and record.state == "abandoned" and record.certificate is None
    assert world.ca.store.certificate(0x6007).state == "issued"  # type: ignore[union-attr]
    assert world.ca.store.unfinished() == []
    audit = AuditLog(world.db)
    last = list(audit.records())[-1]
    assert last.kind == KIND_CERT_RECONCILE == "cert.reconcile"
    assert last.details["serial"] == f"{SERIAL:x}" and last.details["outcome"] == "abandoned"
    assert last.details["names"] == WWW and audit.verify().ok

    assert world.ca.reconcile(world.now) == []  # nothing left: no second record
    assert world.audit_kinds().count("cert.reconcile") == 1


def test_an_abandoned_serial_is_never_finished_nor_reused(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    interrupted(world, monkeypatch)
    world.ca.reconcile(world.now)
    with pytest.raises(StorageError, match="no reservation"):
        world.ca.store.write(lambda txn: world.ca.store.finish(txn, SERIAL, b"late"))
    with pytest.raises(CaError, match=f"serial {SERIAL:x} was used before"):
        world.issue(["other.alpha.trust.example.net"], serial=SERIAL)


def test_an_abandoned_serial_counts_as_issued_for_ocsp_crl_and_revocation(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """BR 7.1.2.9: the precertificate implies the certificate, so OCSP answers for it
    (good, then revoked), ``ca revoke`` takes it, and the CRL lists it."""
    pre = x509.load_der_x509_certificate(interrupted(world, monkeypatch))
    world.ca.reconcile(world.now)
    issuer = world.ca.store.issuers("alpha")[0]

    def status() -> ocsp.OCSPCertStatus:
        request = ocsp.OCSPRequestBuilder().add_certificate(
            pre, issuer.certificate, hashes.SHA256()).build().public_bytes(Encoding.DER)
        return ocsp.load_der_ocsp_response(world.ca.ocsp(request, world.now)).certificate_status

    assert status() is ocsp.OCSPCertStatus.GOOD
    world.now += timedelta(minutes=5)
    world.ca.revoke(SERIAL, RevocationReason.SUPERSEDED, actor="admin:ops", now=world.now)
    assert status() is ocsp.OCSPCertStatus.REVOKED
    crl = x509.load_der_x509_crl(world.ca.crl(issuer.key_id, world.now))
    assert crl.get_revoked_certificate_by_serial_number(SERIAL) is not None


def test_the_subscriber_revokes_an_abandoned_serial_with_its_precertificate(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    pre_der = interrupted(world, monkeypatch)
    world.ca.reconcile(world.now)
    reason = RevocationReason.KEY_COMPROMISE
    signature = SUBSCRIBER.sign(revocation_message(pre_der, reason), ec.ECDSA(hashes.SHA256()))
    assert world.ca.revoke_by_key(pre_der, reason, signature, world.now) == SERIAL
    record = world.ca.store.certificate(SERIAL)
    assert record is not None and record.reason == "keyCompromise"


def test_a_precertificate_not_signed_by_the_serials_issuer_revokes_nothing(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    pre = x509.load_der_x509_certificate(interrupted(world, monkeypatch))
    world.ca.reconcile(world.now)
    forger = ec.generate_private_key(ec.SECP256R1())
    forged = (x509.CertificateBuilder().subject_name(pre.subject).issuer_name(pre.issuer)
              .public_key(SUBSCRIBER.public_key()).serial_number(SERIAL)
              .not_valid_before(pre.not_valid_before_utc).not_valid_after(pre.not_valid_after_utc)
              .add_extension(x509.PrecertPoison(), critical=True)
              .sign(forger, hashes.SHA256()).public_bytes(Encoding.DER))
    reason = RevocationReason.KEY_COMPROMISE
    signature = SUBSCRIBER.sign(revocation_message(forged, reason), ec.ECDSA(hashes.SHA256()))
    with pytest.raises(CaError, match="did not issue"):
        world.ca.revoke_by_key(forged, reason, signature, world.now)
    record = world.ca.store.certificate(SERIAL)
    assert record is not None and record.revoked_at is None


def test_migration_3_rebuilds_the_table_keeping_every_row(tmp_path: Path) -> None:
    db = open_database(tmp_path)
    try:
        migrate(db, Schema("ca", CA_SCHEMA.migrations[:2]))
        with db.transaction() as conn:
            conn.execute("INSERT INTO ca_issuers VALUES ('k1', 'alpha', 1, x'00', 't', 't', 1)")
            for serial, state, revoked in (("a1", "issued", "2026-01-02"),
                                           ("a2", "precertificate", None)):
                conn.execute(
                    "INSERT INTO ca_certificates (serial, issuer_key_id, network, profile, "
                    "names, not_after, requester, issued_at, state, der, revoked_at, reason, "
                    "crl_shard) VALUES (?, 'k1', 'alpha', 'server-90d', ?, 'n', 'admin:ops', "
                    "'2026-01-01', ?, NULL, ?, NULL, 3)",
                    (serial, json.dumps(["www"]), state, revoked))
        before = db.conn.execute("SELECT * FROM ca_certificates ORDER BY serial").fetchall()
        assert migrate(db, CA_SCHEMA) == 1 and current_version(db, "ca") == 3
        after = db.conn.execute("SELECT * FROM ca_certificates ORDER BY serial").fetchall()
        assert [dict(r) for r in after] == [dict(r) for r in before]
        indexes = {r[0] for r in db.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'ca_certificates' "
            "AND sql IS NOT NULL")}
        assert indexes == {"ca_certificates_revoked", "ca_certificates_unfinished"}
        with db.transaction() as conn:
            conn.execute("UPDATE ca_certificates SET state = 'abandoned' WHERE serial = 'a2'")
        with pytest.raises(sqlite3.IntegrityError), db.transaction() as conn:
            conn.execute("UPDATE ca_certificates SET state = 'lost' WHERE serial = 'a1'")
        with pytest.raises(sqlite3.IntegrityError), db.transaction() as conn:
            conn.execute("UPDATE ca_certificates SET issuer_key_id = 'nobody'")  # FK kept
        assert db.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.conn.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        db.close()
