"""Zone names the node can key: lower-case host names, checked before anything is stored
(found by the fuzz suite, issue 14: ``zone-create Upper.Example.`` or ``fuzz.exa=mple.``
stored the zone, then failed to name its DNSSEC keys: a 500 and a half-created zone)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import dns.name
import pytest

from tests.fuzz.node import ADMIN, fuzz_node
from trustchain.dns.records import DnsRequestError
from trustchain.dns.service import DnsService
from trustchain.stoq.framing import Request
from trustchain.storage.database import open_database
from trustchain.storage.dns import DNS_SCHEMA, SqliteZoneStore
from trustchain.storage.migrations import migrate

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
NS = dns.name.from_text("ns.elsewhere.org.")


@pytest.fixture
def service(tmp_path: Path):
    db = open_database(tmp_path)
    migrate(db, DNS_SCHEMA)
    yield DnsService(SqliteZoneStore(db), now=lambda: NOW, default_ns=NS)
    db.close()


def test_a_zone_name_is_created_in_lower_case(service: DnsService) -> None:
    zone = service.zones.create(dns.name.from_text("Upper.Example."))
    assert zone.origin.to_text() == "upper.example."
    assert [z.origin.to_text() for z in service.zones.all()] == ["upper.example."]


@pytest.mark.parametrize("name", ["fuzz.exa=mple.", "under_score.example.", "-lead.example.",
                                  ("a" * 60 + ".") + ("b" * 30 + ".")])
def test_a_zone_name_that_is_no_host_name_is_refused_before_it_is_stored(
        service: DnsService, name: str) -> None:
    with pytest.raises(DnsRequestError, match="host names in lower case"):
        service.zones.create(dns.name.from_text(name))
    assert service.zones.all() == []


def test_an_imported_zone_keeps_to_the_same_names(service: DnsService) -> None:
    text = "$ORIGIN Upper.Example.\n@ 60 IN SOA ns h 1 2 3 4 5\n@ 60 IN NS ns.elsewhere.org.\n"
    with pytest.raises(DnsRequestError, match="host names in lower case"):
        service.zones.import_text(text)
    assert service.zones.import_text(text.lower()).origin.to_text() == "upper.example."


def test_the_node_answers_zone_create_for_any_name_with_a_status() -> None:
    node = fuzz_node()
    for name, status in (("Mixed.Case.Example.", 200), ("fuzz.exa=mple.", 400)):
        message = json.dumps({"zone": name, "addresses": ["2001:db8::1"]}).encode()
        outcome = node.router.dispatch(Request("admin", "zone-create", message), ADMIN)
        assert isinstance(outcome, tuple) and outcome[0] == status, outcome
