"""The CA audit log: the pure hash chain, its verifier, and the append-only SQLite table."""

from __future__ import annotations

import hashlib
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trustchain.ca.audit import (
    GENESIS_HASH,
    KIND_CERT_ISSUE,
    KIND_KEY_GENERATE,
    KIND_RATELIMIT_REFUSE,
    PROBLEM_HASH,
    PROBLEM_MALFORMED,
    PROBLEM_PREV_HASH,
    PROBLEM_SEQ,
    PROBLEM_TIME,
    AuditRecord,
    format_time,
    next_record,
    parse_time,
    record_hash,
    verify_chain,
)
from trustchain.canonical import canonical_json
from trustchain.errors import StorageError
from trustchain.storage.audit import AUDIT_SCHEMA, AuditLog
from trustchain.storage.database import Database, open_database
from trustchain.storage.migrations import migrate

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
ACTOR = "trustchain://testnet/node/n1"


def chain(n: int, start: datetime = NOW) -> list[AuditRecord]:
    records: list[AuditRecord] = []
    for i in range(n):
        records.append(next_record(records[-1] if records else None, start + timedelta(seconds=i),
                                   KIND_CERT_ISSUE, ACTOR, {"serial": i, "names": [f"n{i}.example"]}))
    return records


def rehashed(record: AuditRecord, **changes: Any) -> AuditRecord:
    """``record`` with ``changes`` and a hash recomputed to match (a forger's record)."""
    changed = replace(record, **changes)
    return replace(changed, hash=record_hash(changed.prev_hash, changed.seq, changed.time,
                                             changed.kind, changed.actor, changed.details))


# --- the pure core ----------------------------------------------------------------


def test_record_hash_definition() -> None:
    details = {"serial": 7, "names": ["a.example"]}
    body = (b'{"actor":"' + ACTOR.encode() + b'","details":{"names":["a.example"],"serial":7},'
            b'"kind":"cert.issue","seq":0,"time":"2026-11-25T12:00:00.000000Z"}')
    assert canonical_json({"seq": 0, "time": format_time(NOW), "kind": KIND_CERT_ISSUE, "actor": ACTOR,
                           "details": details}) == body
    expected = hashlib.sha256(b"trustchain-audit/1\n" + bytes(32) + body).digest()
    assert record_hash(GENESIS_HASH, 0, NOW, KIND_CERT_ISSUE, ACTOR, details) == expected
    first = next_record(None, NOW, KIND_CERT_ISSUE, ACTOR, details)
    assert (first.seq, first.prev_hash, first.hash) == (0, GENESIS_HASH, expected)
    second = next_record(first, NOW + timedelta(microseconds=1), KIND_KEY_GENERATE, ACTOR, {})
    assert (second.seq, second.prev_hash) == (1, first.hash)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.text(st.characters(max_codepoint=127), max_size=5), inner, max_size=3),
    max_leaves=10)


@given(details=st.dictionaries(st.text(st.characters(max_codepoint=127), max_size=5), _JSON,
                               max_size=4),
       actor=st.text(min_size=1, max_size=10), seq=st.integers(0, 2**40))
def test_the_hash_covers_the_canonical_json_of_the_whole_record(
        details: dict[str, Any], actor: str, seq: int) -> None:
    body = canonical_json({"seq": seq, "time": format_time(NOW), "kind": KIND_CERT_ISSUE,
                           "actor": actor, "details": details})
    assert record_hash(bytes(32), seq, NOW, KIND_CERT_ISSUE, actor, details) == hashlib.sha256(
        b"trustchain-audit/1\n" + bytes(32) + body).digest()


def test_times_are_rfc3339_utc_with_microseconds() -> None:
    eastern = datetime(2026, 11, 25, 7, 0, 0, 5, tzinfo=UTC).astimezone(timezone(timedelta(hours=-5)))
    assert eastern.hour == 2 and format_time(eastern) == "2026-11-25T07:00:00.000005Z"
    assert parse_time("2026-11-25T07:00:00.000005Z") == eastern
    for bad in ("2026-11-25T07:00:00Z", "2026-11-25 07:00:00.000005Z", "2026-11-25T07:00:00.000005+00:00"):
        with pytest.raises(ValueError):
            parse_time(bad)
    with pytest.raises(ValueError):
        format_time(datetime(2026, 1, 1))


def test_next_record_validates_and_copies() -> None:
    for kind in ("cert", "Cert.issue", "cert.", "cert issue", "cert.issue2"):
        with pytest.raises(ValueError, match="audit kind"):
            next_record(None, NOW, kind, ACTOR, {})
    assert next_record(None, NOW, "acme.order-finalize", ACTOR, {}).kind == "acme.order-finalize"
    with pytest.raises(ValueError):
        next_record(None, NOW, KIND_CERT_ISSUE, "", {})
    with pytest.raises(ValueError, match="floating-point"):
        next_record(None, NOW, KIND_CERT_ISSUE, ACTOR, {"x": 1.5})
    with pytest.raises(ValueError):
        next_record(None, datetime(2026, 1, 1), KIND_CERT_ISSUE, ACTOR, {})
    details: dict[str, Any] = {"names": ("a", "b")}
    record = next_record(None, NOW, KIND_CERT_ISSUE, ACTOR, details)
    details["names"] = ["changed"]
    assert record.details == {"names": ["a", "b"]}
    assert verify_chain([record]).ok


def test_time_never_goes_backwards_when_the_clock_does() -> None:
    first = next_record(None, NOW, KIND_CERT_ISSUE, ACTOR, {})
    second = next_record(first, NOW - timedelta(seconds=3), KIND_CERT_ISSUE, ACTOR, {})
    assert second.time == NOW
    assert verify_chain([first, second]).ok


def test_verify_an_intact_chain() -> None:
    records = chain(5)
    report = verify_chain(iter(records))
    assert report.ok and report.count == report.verified == 5
    assert (report.head_seq, report.head_hash) == (4, records[-1].hash)
    empty = verify_chain([])
    assert empty.ok and (empty.count, empty.head_seq, empty.head_hash) == (0, None, GENESIS_HASH)
    # The rest of a chain, from a trusted head.
    suffix = verify_chain(records[3:], after=records[2])
    assert suffix.ok and (suffix.count, suffix.head_seq) == (2, 4)
    assert report.as_dict() == {"ok": True, "count": 5, "verified": 5, "head_seq": 4,
                                "head_hash": records[-1].hash.hex(), "problem": None}
    # Without the trusted head, a suffix is not a chain.
    cut = verify_chain(records[3:])
    assert cut.problem is not None and (cut.problem.seq, cut.problem.kind) == (0, PROBLEM_SEQ)
    assert str(cut.problem) == "seq problem at record 0: records 0 to 2 are missing (found 3)"
    assert cut.as_dict()["problem"] == {"seq": 0, "kind": "seq",
                                        "message": "records 0 to 2 are missing (found 3)"}


@pytest.mark.parametrize("position", [0, 2, 4])
def test_an_edited_record_is_reported_at_its_seq(position: int) -> None:
    records = chain(5)
    records[position] = replace(records[position], details={"serial": 999})
    report = verify_chain(records)
    assert report.problem is not None
    assert (report.problem.seq, report.problem.kind) == (position, PROBLEM_HASH)
    assert report.verified == position and report.count == 5
    assert report.head_hash == (records[position - 1].hash if position else GENESIS_HASH)


def test_a_rehashed_edit_breaks_the_next_link() -> None:
    records = chain(5)
    records[2] = rehashed(records[2], actor="someone-else")
    problem = verify_chain(records).problem
    assert problem is not None and (problem.seq, problem.kind) == (3, PROBLEM_PREV_HASH)


def test_missing_and_reordered_records() -> None:
    records = chain(6)
    problem = verify_chain(records[:2] + records[4:]).problem
    assert problem is not None and (problem.seq, problem.kind) == (2, PROBLEM_SEQ)
    assert "records 2 to 3 are missing" in problem.message
    problem = verify_chain([records[0], records[2], records[1]]).problem
    assert problem is not None and (problem.seq, problem.kind) == (1, PROBLEM_SEQ)
    problem = verify_chain([records[0], records[0]]).problem
    assert problem is not None and problem.kind == PROBLEM_SEQ and "out of order" in problem.message
    # Renumbered to hide the swap: the links no longer match.
    swapped = [records[0], replace(records[2], seq=1), replace(records[1], seq=2)]
    problem = verify_chain(swapped).problem
    assert problem is not None and (problem.seq, problem.kind) == (1, PROBLEM_PREV_HASH)


def test_time_going_backwards_is_reported() -> None:
    records = chain(3)
    records[2] = rehashed(records[2], time=records[1].time - timedelta(microseconds=1))
    problem = verify_chain(records).problem
    assert problem is not None and (problem.seq, problem.kind) == (2, PROBLEM_TIME)


def test_unhashable_details_are_reported_not_raised() -> None:
    records = chain(2)
    records[1] = replace(records[1], details={"x": 0.5})
    problem = verify_chain(records).problem
    assert problem is not None and (problem.seq, problem.kind) == (1, PROBLEM_MALFORMED)


# --- the SQLite table ---------------------------------------------------------------


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(tmp_path)
    migrate(database, AUDIT_SCHEMA)
    yield database
    database.close()


def fill(log: AuditLog, n: int) -> list[AuditRecord]:
    return [log.append(NOW + timedelta(seconds=i), KIND_CERT_ISSUE, ACTOR, {"serial": i})
            for i in range(n)]


def drop_triggers(db: Database) -> None:
    """What an attacker with the file does first."""
    for name in ("audit_log_no_update", "audit_log_no_delete", "audit_log_extends_head"):
        db.conn.execute(f"DROP TRIGGER {name}")


def test_append_read_and_verify(db: Database) -> None:
    log = AuditLog(db)
    assert log.head() is None and log.verify().ok
    written = fill(log, 5)
    assert list(log.records()) == written
    assert list(log.records(3)) == written[3:]
    assert log.head() == written[-1]
    report = log.verify()
    assert report.ok and report.count == 5 and report.head_hash == written[-1].hash
    # A fresh AuditLog (a restarted node) continues the same chain.
    again = AuditLog(db).append(NOW + timedelta(minutes=1), KIND_RATELIMIT_REFUSE, ACTOR, {"limit": "domain"})
    assert again.seq == 5 and again.prev_hash == written[-1].hash
    assert log.verify().ok


def test_records_are_streamed_in_pages(db: Database) -> None:
    log = AuditLog(db)
    with db.transaction() as conn:
        for i in range(1100):
            log.append_in(conn, NOW, KIND_CERT_ISSUE, ACTOR, {"serial": i})
    assert [r.seq for r in log.records(7)] == list(range(7, 1100))
    assert log.verify().count == 1100


def test_update_and_delete_are_refused_by_triggers(db: Database) -> None:
    log = AuditLog(db)
    fill(log, 3)
    with pytest.raises(sqlite3.IntegrityError, match="append-only: UPDATE refused"):
        db.conn.execute("UPDATE audit_log SET actor = 'x' WHERE seq = 1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only: DELETE refused"):
        db.conn.execute("DELETE FROM audit_log WHERE seq = 2")
    forged = next_record(None, NOW, KIND_CERT_ISSUE, ACTOR, {})
    with pytest.raises(sqlite3.IntegrityError, match="does not extend the head"):
        db.conn.execute("INSERT INTO audit_log VALUES (3, ?, 'cert.issue', 'x', '{}', ?, ?)",
                        (format_time(NOW), forged.hash, forged.hash))
    assert log.verify().ok and log.verify().count == 3


def test_an_edited_row_is_reported_at_its_seq(db: Database) -> None:
    log = AuditLog(db)
    fill(log, 6)
    drop_triggers(db)
    db.conn.execute("""UPDATE audit_log SET details = '{"serial":42}' WHERE seq = 3""")
    report = log.verify()
    assert report.problem is not None
    assert (report.problem.seq, report.problem.kind) == (3, PROBLEM_HASH)
    assert report.verified == 3 and report.count == 6


def test_a_deleted_middle_row_is_detected(db: Database) -> None:
    log = AuditLog(db)
    fill(log, 6)
    drop_triggers(db)
    db.conn.execute("DELETE FROM audit_log WHERE seq = 2")
    problem = log.verify().problem
    assert problem is not None and (problem.seq, problem.kind) == (2, PROBLEM_SEQ)


def test_reordered_rows_are_detected(db: Database) -> None:
    log = AuditLog(db)
    fill(log, 4)
    drop_triggers(db)
    db.conn.execute("UPDATE audit_log SET seq = seq + 1000 WHERE seq IN (1, 2)")
    db.conn.execute("UPDATE audit_log SET seq = 2 WHERE seq = 1001")
    db.conn.execute("UPDATE audit_log SET seq = 1 WHERE seq = 1002")
    problem = log.verify().problem
    assert problem is not None and (problem.seq, problem.kind) == (1, PROBLEM_PREV_HASH)


def test_a_forged_row_with_time_going_backwards_is_detected(db: Database) -> None:
    log = AuditLog(db)
    written = fill(log, 3)
    drop_triggers(db)
    forged = rehashed(written[2], time=NOW - timedelta(days=1))
    db.conn.execute("UPDATE audit_log SET time = ?, hash = ? WHERE seq = 2",
                    (format_time(forged.time), forged.hash))
    problem = log.verify().problem
    assert problem is not None and (problem.seq, problem.kind) == (2, PROBLEM_TIME)


def test_unreadable_rows_are_reported_not_raised(db: Database) -> None:
    log = AuditLog(db)
    fill(log, 3)
    drop_triggers(db)
    db.conn.execute("UPDATE audit_log SET details = CAST(x'7b22ff223a317d' AS TEXT) WHERE seq = 1")
    problem = log.verify().problem
    assert problem is not None and (problem.seq, problem.kind) == (1, PROBLEM_MALFORMED)
    with pytest.raises(StorageError, match="audit record 1 is damaged"):
        list(log.records())


def test_append_joins_the_callers_transaction(db: Database) -> None:
    log = AuditLog(db)
    fill(log, 2)
    with pytest.raises(RuntimeError), db.transaction():
        record = log.append(NOW, KIND_CERT_ISSUE, ACTOR, {"serial": "rolled back"})
        assert record.seq == 2 and log.head() == record  # visible inside the transaction
        raise RuntimeError("issuance failed")
    assert [r.seq for r in log.records()] == [0, 1]
    # The head kept in memory was rolled back with it: the next append re-reads it.
    after = log.append(NOW, KIND_CERT_ISSUE, ACTOR, {"serial": 2})
    assert after.seq == 2 and log.verify().ok


def test_a_second_writer_is_noticed(db: Database, tmp_path: Path) -> None:
    log = AuditLog(db)
    fill(log, 2)
    with open_database(tmp_path) as other_db:
        AuditLog(other_db).append(NOW, KIND_KEY_GENERATE, "operator", {"key": "k1"})
    record = log.append(NOW, KIND_CERT_ISSUE, ACTOR, {"serial": 3})
    assert record.seq == 3 and log.verify().ok


def test_bad_details_write_nothing(db: Database) -> None:
    log = AuditLog(db)
    fill(log, 1)
    with pytest.raises(ValueError):
        log.append(NOW, KIND_CERT_ISSUE, ACTOR, {"big": 2**60})
    assert log.append(NOW, KIND_CERT_ISSUE, ACTOR, {}).seq == 1


# --- properties ---------------------------------------------------------------------

json_leaves = st.one_of(st.none(), st.booleans(), st.integers(-(2**53) + 1, 2**53 - 1), st.text())
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(st.characters(max_codepoint=127), max_size=8), inner, max_size=4),
    max_leaves=12,
)
details_dicts = st.dictionaries(st.text(st.characters(max_codepoint=127), max_size=8), json_values,
                                max_size=5)


@settings(max_examples=100)
@given(details=st.lists(details_dicts, min_size=1, max_size=8), data=st.data())
def test_any_chain_verifies_and_any_flipped_byte_is_detected(
        details: list[dict[str, Any]], data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = open_database(Path(tmp))
        try:
            migrate(db, AUDIT_SCHEMA)
            log = AuditLog(db)
            with db.transaction() as conn:
                written = [log.append_in(conn, NOW + timedelta(milliseconds=i), KIND_CERT_ISSUE, ACTOR, d)
                           for i, d in enumerate(details)]
            assert log.verify().ok and list(log.records()) == written
            assert [r.details for r in written] == details

            seq = data.draw(st.integers(0, len(written) - 1), label="seq")
            column = data.draw(st.sampled_from(["hash", "details"]), label="column")
            stored = db.conn.execute(f"SELECT CAST({column} AS BLOB) FROM audit_log WHERE seq = ?",
                                     (seq,)).fetchone()[0]
            index = data.draw(st.integers(0, len(stored) - 1), label="byte")
            flip = data.draw(st.integers(1, 255), label="xor")
            damaged = bytearray(stored)
            damaged[index] ^= flip
            drop_triggers(db)
            if column == "hash":
                db.conn.execute("UPDATE audit_log SET hash = ? WHERE seq = ?", (bytes(damaged), seq))
            else:
                db.conn.execute("UPDATE audit_log SET details = CAST(? AS TEXT) WHERE seq = ?",
                                (bytes(damaged), seq))
            report = log.verify()
            assert report.problem is not None
            # The damaged record is where the chain breaks (its own hash, or reading it back).
            assert report.problem.seq == seq and report.verified == seq
        finally:
            db.close()
