"""The crash harness, short: SIGKILLs under mixed load lose nothing the node acknowledged,
and the harness would see it if they did (``make crash-test`` runs 50 kills)."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from tests.crash.checks import Checker, Verdict
from tests.crash.harness import run
from tests.crash.load import Acks, CertAck, CtAck, Head, RecordAck
from tests.crash.node import Node, credentials
from trustchain.ct.structs import SCT, leaf_index_extension

KILLS = 5


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A node's data directory after KILLS kills under load, and the harness's summary."""
    work = tmp_path_factory.mktemp("crash")
    report = run(KILLS, seed=14, work_dir=work)
    assert report.ok, report.summary()
    assert all(report.acknowledged.values()), report.summary()
    # Two issuers always have a request in flight; a kill strands its reservation.
    assert report.reconciled > 0, report.summary()
    assert report.checks_passed["no precertificate left unreconciled"] == KILLS
    return work / "data", report.summary()


@pytest.mark.timeout(240)
def test_kills_under_load_lose_nothing_acknowledged(crashed: tuple[Path, str]) -> None:
    data_dir, summary = crashed
    assert f"{KILLS} kills" in summary and "violations: 0" in summary
    with closing(sqlite3.connect(data_dir / "node.db")) as db:
        states = dict(db.execute("SELECT state, count(*) FROM ca_certificates GROUP BY state"))
        audited = db.execute("SELECT count(*) FROM audit_log WHERE kind = 'cert.reconcile'")
        assert "precertificate" not in states and audited.fetchone()[0] == states["abandoned"]


@pytest.mark.timeout(120)
def test_the_checks_see_a_lost_write_and_a_head_gone_back(crashed: tuple[Path, str]) -> None:
    """Writes the node never made, held up as acknowledged: every kind is reported."""
    data_dir, _ = crashed
    with closing(sqlite3.connect(data_dir / "node.db")) as db:
        (der,) = db.execute("SELECT der FROM ca_certificates WHERE state = 'issued'").fetchone()
    never = Acks(
        ct=[CtAck("a", b"never", SCT(bytes(32), 0, leaf_index_extension(10**6), b""))],
        certs=[CertAck(0x5EED, der)],
        records=[RecordAck("never.crash.trust.example.net.", '"never"', 2**31)])
    node = Node(data_dir)
    checker = Checker(node, credentials(data_dir))
    checker.heads = {"b": Head(10**6, bytes(32))}
    verdict = Verdict()
    try:
        node.start()
        asyncio.run(checker.after_restart(never, never, verdict))
    finally:
        node.crash()
    found = {violation.split(":")[0] for violation in verdict.violations}
    assert found == {"CT entries at their index with their SCT", "heads cover every SCT",
                     "CT entries proven included", "heads never go back",
                     "issued certificates stored", "changed records present",
                     "zone serial not behind an acknowledged one",
                     "changed records served over DNS"}, verdict.violations
    assert verdict.passed["integrity_check ok"] == verdict.passed["audit verify"] == 1
