"""The CA, CT and federation benchmarks still run, on a few requests (their figures are not
judged here: speed lives in benchmarks/, never in a timed test)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import REPO


def run_benchmark(*args: str) -> str:
    result = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("via", ["stoq", "https"])
def test_ca_issue_benchmark_runs(via: str) -> None:
    out = run_benchmark("benchmarks/ca_issue.py", "--certificates", "40", "--concurrency", "8",
                        "--connections", "2", "--via", via)
    assert "floor (CSR parse + verify" in out
    assert "certificates per node CPU-second" in out
    assert "stored: 40 certificates, 40 audit records" in out


def test_ct_submit_benchmark_runs() -> None:
    out = run_benchmark("benchmarks/ct_submit.py", "--entries", "40", "--connections", "4",
                        "--proof-leaves", "1000", "--proof-samples", "10")
    assert "merge delay" in out


def test_federation_benchmark_runs() -> None:
    """A 4-node devnet for a few seconds (no registrations: their proofs take minutes)."""
    out = run_benchmark("benchmarks/federation.py", "--seconds", "2", "--backlog", "300",
                        "--quick")
    assert "(a) latency at 20/s, to every node: devnet p50" in out
    assert "devnet / simulation" in out
    assert "(e) CPU, throughput, share of" in out


def test_witness_benchmark_runs() -> None:
    """A 4-node devnet, two rounds: a new checkpoint to its quorum and to finality."""
    out = run_benchmark("benchmarks/witness.py", "--rounds", "2")
    assert "cosignature quorum (3 of 4 witnesses) after the checkpoint: p50" in out
    assert "baseline: one add-checkpoint round trip" in out


def test_acme_benchmark_runs() -> None:
    """A few orders against a node and against Pebble (Debian's, installed by make test)."""
    out = run_benchmark("benchmarks/acme.py", "--orders", "4", "--clients", "2")
    assert "trustchain:" in out and "pebble:" in out and "TrustChain / Pebble:" in out
    assert " 0 failed" in out


def test_console_benchmark_runs() -> None:
    """The console's search beside /healthz, with a small log."""
    out = run_benchmark("benchmarks/console.py", "--entries", "300", "--samples", "10")
    assert "search: one exact name: p50" in out and "/healthz (baseline): p50" in out
    assert "indexed 300 entries" in out
