"""The DNS admin methods over stoq/1: JSON in, the core's answer as JSON out, refusals
as 400 problem documents.  These formats are what the CLI and operators' scripts read."""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import dns.name
import pytest

from tests.trustchain.dns.fakes import MemoryKeys, MemorySecrets
from tests.trustchain.dns.zonedata import EXAMPLE
from transport import methods
from transport.methods import Call
from transport.problem import problem_for
from trustchain.dns.records import DnsRequestError
from trustchain.dns.service import DnsService
from trustchain.errors import BadRequest
from trustchain.identity import Peer, Role
from trustchain.stoq.framing import Request
from trustchain.stoq.router import Router
from trustchain.storage.database import open_database
from trustchain.storage.dns import DNS_SCHEMA, SqliteZoneStore
from trustchain.storage.migrations import migrate
from trustchain.wiring.dns import NetworkRegister, zone_service
from trustchain.wiring.registry import check_registration, registry_service

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
ADMIN = Peer(Role.ADMIN, "ops", "example")


async def _awaited(pending: Any) -> Any:
    return await pending


class Admin:
    """The node's ``admin`` stoq/1 methods for one DNS service, called as the CLI does."""

    def __init__(self, service: DnsService) -> None:
        self.service = service
        self._router = Router(problem_for)
        methods.register(self._router, [zone_service(service)])

    def raw(self, method: str, message: bytes) -> tuple[int, Any]:
        answer = self._router.dispatch(Request("admin", method, message), ADMIN)
        if inspect.isawaitable(answer):  # records-change checks in a worker thread
            answer = asyncio.run(_awaited(answer))
        assert isinstance(answer, tuple)
        status, body = answer
        return status, json.loads(body)

    def __call__(self, method: str, body: dict[str, Any] | None = None) -> Any:
        status, answer = self.raw(method, b"" if body is None else json.dumps(body).encode())
        assert status == 200, answer
        return answer

    def refusal(self, method: str, body: dict[str, Any]) -> str:
        """The detail of the 400 problem document a refused request gets."""
        status, problem = self.raw(method, json.dumps(body).encode())
        assert (status, problem["status"], problem["title"]) == (400, 400, "bad request")
        return problem["detail"]


@pytest.fixture
def admin(tmp_path: Path):
    db = open_database(tmp_path)
    migrate(db, DNS_SCHEMA)
    store = SqliteZoneStore(db)
    yield Admin(DnsService(store, now=lambda: NOW,
                           default_ns=dns.name.from_text("n1.nodes.example.net."),
                           secrets=MemorySecrets(),
                           keys=MemoryKeys(store.dnssec_policy, lambda: NOW)))
    db.close()


def test_every_admin_method_keeps_its_name(admin: Admin) -> None:
    assert {m.stoq for m in zone_service(admin.service).methods} == {
        "zone-create", "zone-delete", "zone-list", "zone-ttl", "zone-export", "zone-import",
        "records-list",
        "records-change", "secondary-add", "secondary-list", "secondary-remove",
        "dnssec-ds", "dnssec-status", "dnssec-rollover", "dnssec-ds-published"}
    # Networks are registered through the consensus (tests/test_federation.py).
    registry = registry_service(cast(Any, None), cast(Any, None))
    assert {m.stoq for m in registry.methods} == {"network-register", "network-list"}


def test_zone_methods_answer_as_before(admin: Admin) -> None:
    assert admin("zone-list") == []
    created = admin("zone-create", {"zone": "example.net", "addresses": ["192.0.2.53"]})
    assert created == {"zone": "example.net.", "serial": 2026112500}
    assert admin("zone-list", {}) == [{"zone": "example.net.", "serial": 2026112500,
                                       "rrsets": 3}]
    exported = admin("zone-export", {"zone": "Example.NET."})
    assert exported["zone"] == "example.net." and exported["serial"] == 2026112500
    assert "n1.nodes.example.net. 3600 IN A 192.0.2.53" in exported["text"]
    assert {"name": "n1.nodes.example.net.", "type": "A", "ttl": 3600,
            "data": "192.0.2.53"} in admin("records-list", {"zone": "example.net"})
    assert admin("zone-delete", {"zone": "example.net"}) == {"zone": "example.net.",
                                                             "deleted": True}
    assert admin("zone-import", {"text": EXAMPLE, "dnssec": {"nsec3": True}}) == {
        "zone": "example.net.", "serial": 2026112500}
    assert admin("dnssec-status", {"zone": "example.net"})["policy"] == {
        "algorithm": 13, "csk": False, "nsec3": True}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"add": [{"name": "x.example.com", "type": "A", "data": "192.0.2.1"}]}, "outside"),
        ({"add": [{"name": "example.net", "type": "SOA", "data": "a b 1 2 3 4 5"}]}, "SOA"),
        ({"delete": [{"name": "example.net", "type": "SOA"}]}, "SOA"),
        ({"add": [{"name": "x.example.net", "type": "BOGUS", "data": "1"}]}, "unknown record"),
        ({"add": [{"name": "x.example.net", "type": "A", "data": "not-an-ip"}]}, "x.example.net"),
        ({"add": [{"name": "alias.example.net", "type": "CNAME", "data": "ns1"}]}, "already has"),
        ({}, "empty"),
        ({"add": [{"name": "x.example.net", "type": "A", "data": "192.0.2.1", "ttl": -1}]}, "ttl"),
    ],
)
def test_bad_changes_are_refused(admin: Admin, change: dict, message: str) -> None:
    admin("zone-import", {"text": EXAMPLE})
    assert message in admin.refusal("records-change", change)


@pytest.mark.parametrize(
    ("method", "body", "detail"),
    [
        ("zone-create", {"zone": "x..y"}, "'x..y' is not a domain name: A DNS label is empty."),
        ("zone-create", {"zone": ""}, "zone: String should have at least 1 character"),
        ("zone-create", {"zone": "a.test", "extra": 1}, "extra: Extra inputs are not permitted"),
        ("zone-create", {"zone": "a.test", "ttl": -5},
         "ttl: Input should be greater than or equal to 0"),
        ("zone-create", {"zone": "a.test", "ns": ["ns.e.org"], "dnssec": {"algorithm": 8}},
         "DNSSEC algorithm must be 13 (ECDSA P-256) or 15 (Ed25519)"),
        ("zone-export", {}, "zone: Field required"),
        ("zone-export", {"zone": "nope.test"}, "no zone nope.test."),
        ("records-change", {"add": [{"name": "a.test", "type": "A", "data": "1", "ttl": -1}]},
         "add.0.ttl: Input should be greater than or equal to 0"),
        ("secondary-add", {"zone": "nope.test", "address": "192.0.2.9"}, "no zone nope.test."),
        ("secondary-add", {"zone": "a.test", "address": "192.0.2.9", "key": "BAD KEY"},
         "key: String should match pattern '^[a-z0-9][a-z0-9.-]{0,62}$'"),
        ("dnssec-rollover", {"zone": "a.test", "role": "xsk"},
         "role: String should match pattern '^(ksk|zsk)$'"),
    ],
)
def test_refusals_name_what_is_wrong(admin: Admin, method: str, body: dict, detail: str) -> None:
    assert admin.refusal(method, body) == detail


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"name": "Bad_Name"},
         "name: String should match pattern '^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$'"),
        ({"name": "n", "prefixes": ["10.1.0.1/16"]},
         "prefixes: Value error, '10.1.0.1/16' is not an address block (CIDR, host bits zero):"
         " 10.1.0.1/16 has host bits set"),
    ],
)
def test_a_registration_names_what_is_wrong(body: dict[str, Any], detail: str) -> None:
    with pytest.raises(BadRequest) as refused:
        Call(body, b"", ADMIN).parse(NetworkRegister)
    assert str(refused.value) == detail


def test_secondary_methods_answer_as_before(admin: Admin) -> None:
    admin("zone-import", {"text": EXAMPLE})
    added = admin("secondary-add", {"zone": "example.net", "address": "[2001:db8::2]",
                                    "port": 5300})
    secret = base64.b64decode(added.pop("secret"))
    assert added == {"zone": "example.net.", "address": "2001:db8::2", "port": 5300,
                     "key": "xfr.example.net", "algorithm": "hmac-sha256"}
    assert len(secret) == 32
    assert admin("secondary-list") == [{"zone": "example.net.", "address": "2001:db8::2",
                                        "port": 5300, "key": "xfr.example.net"}]
    assert admin("secondary-remove", {"zone": "example.net", "address": "[2001:db8::2]",
                                      "port": 5300}) == {
        "zone": "example.net.", "address": "2001:db8::2", "port": 5300, "removed": True}
    assert admin.refusal("secondary-remove", {"zone": "example.net", "address": "2001:db8::2",
                                              "port": 5300}) == (
        "2001:db8::2 port 5300 is not a secondary of example.net.")
    assert admin("secondary-list") == []


def test_dnssec_methods_answer_as_before(admin: Admin) -> None:
    # (networks' zones are the federation's: tests/trustchain/dns/test_federation_zones.py)
    admin("zone-create", {"zone": "acme.example.net", "ns": ["ns.example.org"], "ttl": 300})
    ds = admin("dnssec-ds", {"zone": "acme.example.net"})
    assert ds["zone"] == "acme.example.net." and len(ds["ds"]) == 1
    assert ds["text"] == f"acme.example.net. 300 IN DS {ds['ds'][0]}"
    status = admin("dnssec-status", {"zone": "acme.example.net"})
    assert {k: status[k] for k in ("zone", "signed", "policy")} == {
        "zone": "acme.example.net.", "signed": True,
        "policy": {"algorithm": 13, "csk": False, "nsec3": False}}
    assert sorted((k["role"], k["state"], k["active"]) for k in status["keys"]) == [
        ("ksk", "active", True), ("zsk", "active", True)]
    rolled = admin("dnssec-rollover", {"zone": "acme.example.net", "role": "zsk"})
    assert rolled == admin("dnssec-status", {"zone": "acme.example.net"})
    assert sorted((k["role"], k["state"]) for k in rolled["keys"]) == [
        ("ksk", "active"), ("zsk", "active"), ("zsk", "published")]
    assert admin.refusal("dnssec-ds-published", {"zone": "acme.example.net"}) == (
        "no KSK rollover is waiting for its DS")


def test_a_malformed_registration_is_refused_before_it_is_submitted() -> None:
    with pytest.raises(DnsRequestError) as refused:
        check_registration({"name": "acme", "delegate": ["ns.acme.org"],
                            "ds": ["not a DS record"], "prefixes": []})
    assert str(refused.value).startswith("a DS record 'not a DS record' does not parse")
    with pytest.raises(DnsRequestError, match="is not an IP address"):
        check_registration({"name": "acme", "delegate": ["ns.acme.org=not-an-address"],
                            "ds": [], "prefixes": []})
