from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from bootstrap.devnet import DEVNET_PARAMETERS
from bootstrap.init import InitResult, init_node
from tests.support import PASSPHRASE, NodeProcess

# Timing is not what these properties are about: on a loaded 2-core CI machine a slow
# example must not fail a run (no deadline, no too_slow health check).
settings.register_profile(
    "trustchain", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("trustchain")

#: A fixed clock for cores and builders (cryptography's tests do the same).
NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def now() -> datetime:
    return NOW


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def node(data_dir: Path) -> InitResult:
    """A freshly initialised node in ``data_dir`` (real Argon2id, real keys), with the
    devnet's proof parameters: a ``network register`` proves its work and time in about
    0.4 s instead of 4 (the proofs are as real, only smaller; the defaults are a
    production network's)."""
    return init_node(
        data_dir, PASSPHRASE, network_name="testnet", origin="trust.example.net.",
        now=datetime.now(UTC), parameters=DEVNET_PARAMETERS,
    )


@pytest.fixture
def node_processes() -> Iterator[list[NodeProcess]]:
    """Collects started node processes and kills whatever a test left running."""
    started: list[NodeProcess] = []
    yield started
    for proc in started:
        proc.kill()
