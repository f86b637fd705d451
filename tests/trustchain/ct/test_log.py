"""One log over SQLite: submissions, sequencing before SCTs, proofs that verify, restarts."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from bootstrap.root import build_root_certificate
from tests.pki import cert_builder, der_b64, new_key, node_leaf, node_pki, signed
from trustchain.ct.log import BadSubmission, Log
from trustchain.ct.merkle import ProofError, leaf_hash, verify_consistency, verify_inclusion
from trustchain.ct.structs import Entry, EntryType, TreeHead, merkle_tree_leaf
from trustchain.errors import StorageError
from trustchain.storage.ct import CT_SCHEMA, SqliteLogStore
from trustchain.storage.database import open_database
from trustchain.storage.migrations import migrate

NOW = datetime.now(UTC)
PKI = node_pki(now=NOW)
ROOT, CA, CA_KEY = PKI.root, PKI.ca, PKI.ca_key
CA_B64 = der_b64(CA)
LOG_KEY = new_key()


def leaf(name: str) -> str:
    return der_b64(PKI.leaf(name))


@pytest.fixture
def db(tmp_path: Path):
    database = open_database(tmp_path)
    migrate(database, CT_SCHEMA)
    yield database
    database.close()


def new_log(db) -> Log:
    return Log("a", LOG_KEY, SqliteLogStore(db, "a"), [ROOT])


def test_submit_sequence_and_prove(db) -> None:
    log = new_log(db)
    submissions = [log.check([leaf(f"n{i}"), CA_B64]) for i in range(5)]
    assert all(s.index is None for s in submissions) and log.pending == 5
    assert log.get_sth()["tree_size"] == 0
    scts = log.sequence(1_700_000_000_000)
    assert sorted(scts) == [0, 1, 2, 3, 4]
    sth = log.get_sth()
    assert sth["tree_size"] == 5
    head = TreeHead(5, sth["timestamp"], base64.b64decode(sth["sha256_root_hash"]),
                    base64.b64decode(sth["tree_head_signature"])[4:])
    head.verify(LOG_KEY.public_key())
    for index, sct in scts.items():
        assert sct.leaf_index == index
        entry = submissions[index].entry
        sct.verify(entry, LOG_KEY.public_key())
        hashed = leaf_hash(merkle_tree_leaf(sct.timestamp, entry, sct.extensions))
        proof = log.get_proof_by_hash(base64.b64encode(hashed).decode(), 5)
        assert proof["leaf_index"] == index
        verify_inclusion(hashed, index, 5, [base64.b64decode(p) for p in proof["audit_path"]],
                         head.root)


def test_duplicates_get_the_existing_sct(db) -> None:
    log = new_log(db)
    cert = leaf("dup")
    log.check([cert, CA_B64])
    first = log.sequence(1)[0]
    again = log.check([cert, CA_B64])
    assert again.index == 0 and log.pending == 0
    assert log.sct(0) == first


def test_consistency_between_heads(db) -> None:
    log = new_log(db)
    log.check([leaf("a1"), CA_B64])
    log.sequence(1)
    old = base64.b64decode(log.get_sth()["sha256_root_hash"])
    for i in range(3):
        log.check([leaf(f"b{i}"), CA_B64])
    log.sequence(2)
    new = base64.b64decode(log.get_sth()["sha256_root_hash"])
    proof = [base64.b64decode(p) for p in log.get_sth_consistency(1, 4)["consistency"]]
    verify_consistency(1, 4, proof, old, new)
    with pytest.raises(ProofError):
        verify_consistency(1, 4, proof, new, old)


def test_restart_rebuilds_the_tree_and_refuses_rollback(db) -> None:
    log = new_log(db)
    for i in range(3):
        log.check([leaf(f"r{i}"), CA_B64])
    log.sequence(1)
    before = log.get_sth()
    again = new_log(db)
    assert again.get_sth()["sha256_root_hash"] == before["sha256_root_hash"]
    store = SqliteLogStore(db, "a")
    with pytest.raises(StorageError, match="refusing"):
        store.save_tree_head(TreeHead(2, 5, b"\x00" * 32, b"sig"))
    with pytest.raises(StorageError, match="refusing"):
        store.save_tree_head(TreeHead(3, 5, b"\x00" * 32, b"sig"))


def test_get_entries_pages_and_carries_the_chain(db) -> None:
    log = new_log(db)
    for i in range(3):
        log.check([leaf(f"e{i}"), CA_B64])
    log.sequence(1)
    entries = log.get_entries(1, 99)["entries"]
    assert len(entries) == 2
    extra = base64.b64decode(entries[0]["extra_data"])
    assert extra[3 + 3:] == CA.public_bytes(Encoding.DER)


def test_get_entry_and_proof_verifies_against_the_head(db) -> None:
    log = new_log(db)
    for i in range(7):
        log.check([leaf(f"p{i}"), CA_B64])
    log.sequence(5)
    sth = log.get_sth()
    root = base64.b64decode(str(sth["sha256_root_hash"]))
    for index in range(7):
        answer = log.get_entry_and_proof(index, 7)
        hashed = leaf_hash(base64.b64decode(str(answer["leaf_input"])))
        path = [base64.b64decode(p) for p in answer["audit_path"]]  # type: ignore[attr-defined]
        verify_inclusion(hashed, index, 7, path, root)
    with pytest.raises(BadSubmission):
        log.get_entry_and_proof(7, 7)
    with pytest.raises(BadSubmission):
        log.get_entry_and_proof(0, 8)


@pytest.mark.parametrize(
    ("chain", "message"),
    [
        ([], "1 to"),
        (["not base64!"], "base64"),
        ([base64.b64encode(b"junk").decode()], "does not parse"),
        ([leaf("x")], "does not lead to a root"),
        ([leaf("y"), leaf("z")], "not a CA|does not verify"),
    ],
)
def test_bad_chains_are_refused(db, chain: list[str], message: str) -> None:
    with pytest.raises(BadSubmission, match=message):
        new_log(db).check(chain)


def test_a_remembered_intermediate_does_not_excuse_a_bad_leaf(db) -> None:
    log = new_log(db)
    log.check([leaf("good"), CA_B64])  # the CA-to-root link is now remembered
    rogue_key = new_key()
    forged = node_leaf(rogue_key, CA, rogue_key.public_key(), node_id="forged", network="testnet",
                       now=NOW)
    with pytest.raises(BadSubmission, match="does not verify"):
        log.check([der_b64(forged), CA_B64])


def test_a_chain_from_another_root_is_refused(db) -> None:
    other_root = build_root_certificate(new_key(), "othernet", NOW)
    log = Log("a", LOG_KEY, SqliteLogStore(db, "a"), [other_root])
    with pytest.raises(BadSubmission, match="does not lead to a root"):
        log.check([leaf("w"), CA_B64])


def test_read_arguments_are_checked(db) -> None:
    log = new_log(db)
    with pytest.raises(BadSubmission):
        log.get_entries(0, 0)
    with pytest.raises(BadSubmission):
        log.get_sth_consistency(0, 5)
    with pytest.raises(BadSubmission):
        log.get_proof_by_hash("????", 1)


def test_entry_identity_distinguishes_types() -> None:
    from trustchain.ct.sequencer import identity

    assert identity(Entry(EntryType.X509, b"a")) != identity(
        Entry(EntryType.PRECERT, b"a", b"\x00" * 32))


def _precert(poison: bool = True) -> str:
    return der_b64(signed(cert_builder("pre", new_key().public_key(), issuer=CA, serial=77,
                                       not_before=NOW, days=30, dns_names=["pre.example"],
                                       poison=poison), CA_KEY))


def test_precertificate_entries(db) -> None:
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import PublicFormat

    from trustchain.ct.precert import remove_poison

    log = new_log(db)
    pre = _precert()
    submission = log.check([pre, CA_B64], precert=True)
    cert = x509.load_der_x509_certificate(base64.b64decode(pre))
    assert submission.entry.entry_type is EntryType.PRECERT
    assert submission.entry.body == remove_poison(cert.tbs_certificate_bytes)
    assert submission.entry.issuer_key_hash == hashlib.sha256(CA.public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).digest()
    sct = log.sequence(5)[0]
    sct.verify(submission.entry, LOG_KEY.public_key())
    extra = base64.b64decode(log.get_entries(0, 0)["entries"][0]["extra_data"])
    assert extra[3 : 3 + int.from_bytes(extra[:3], "big")] == base64.b64decode(pre)
    with pytest.raises(BadSubmission, match="add-pre-chain"):
        log.check([pre, CA_B64])
    with pytest.raises(BadSubmission, match="poison"):
        log.check([_precert(poison=False), CA_B64], precert=True)
    with pytest.raises(BadSubmission, match="root|issuer"):
        log.check([pre], precert=True)


def test_a_precertificate_signing_certificate_is_accepted_per_rfc6962(db) -> None:
    """The entry is byte for byte the TBS of the certificate the CA will issue."""
    psc_key = new_key()
    psc = signed(cert_builder("n1 PSC", psc_key.public_key(), issuer=CA, serial=5, not_before=NOW,
                              days=30, ca=True, path_length=0, authority_key_id=True)
                 .add_extension(x509.ExtendedKeyUsage([x509.ObjectIdentifier(
                     "1.3.6.1.4.1.11129.2.4.4")]), critical=False), CA_KEY)
    subject_key = new_key().public_key()

    def certificate(issuer: x509.Certificate, issuer_key: ec.EllipticCurvePrivateKey,
                    poison: bool) -> x509.Certificate:
        return signed(cert_builder("p", subject_key, issuer=issuer, serial=1234, not_before=NOW,
                                   days=30, authority_key_id=True, dns_names=["p.example"],
                                   poison=poison), issuer_key)

    precert = certificate(psc, psc_key, poison=True)
    final = certificate(CA, CA_KEY, poison=False)
    b64 = [der_b64(c) for c in (precert, psc)]
    log = new_log(db)
    submission = log.check([b64[0], b64[1], CA_B64], precert=True)
    assert submission.entry.body == final.tbs_certificate_bytes
    direct = new_log(db).check([_precert(), CA_B64], precert=True)  # still fine without a PSC
    assert direct.entry.issuer_key_hash == submission.entry.issuer_key_hash
    with pytest.raises(BadSubmission, match="root"):  # the PSC alone leads nowhere
        log.check([b64[0], b64[1]], precert=True)


def test_an_expiry_shard_takes_only_certificates_expiring_in_its_range(db) -> None:
    from datetime import timedelta

    from trustchain.ct.log import ExpiryRange

    cert = leaf("shard")
    not_after = x509.load_der_x509_certificate(base64.b64decode(cert)).not_valid_after_utc
    this_half = ExpiryRange(not_after - timedelta(days=1), not_after + timedelta(seconds=1))
    next_half = ExpiryRange(not_after + timedelta(seconds=1), None)
    earlier = ExpiryRange(None, not_after)  # the end is exclusive
    accepting = Log("s1", LOG_KEY, SqliteLogStore(db, "s1"), [ROOT], expiry=this_half)
    assert accepting.check([cert, CA_B64]).index is None
    for name, expiry in (("s2", next_half), ("s3", earlier)):
        shard = Log(name, LOG_KEY, SqliteLogStore(db, name), [ROOT], expiry=expiry)
        with pytest.raises(BadSubmission, match="this log accepts certificates expiring"):
            shard.check([cert, CA_B64])
        assert shard.pending == 0
    with pytest.raises(ValueError, match="time zone"):
        ExpiryRange(datetime(2027, 1, 1), None)
    with pytest.raises(ValueError, match="start before it ends"):
        ExpiryRange(not_after, not_after)
