"""The federation's zones (trustchain.dns.federation): what every node derives from the same
operations, and the multi-signer DNSSEC (RFC 8901) checked by dnspython's validator."""

from __future__ import annotations

import hashlib

import dns.dnssec
import dns.message
import dns.name
import dns.rdatatype
import dns.rrset
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from trustchain.dns.dnssec import Role, SigningKey, make_dnskey, sign_zone
from trustchain.dns.federation import FederationRefused, FederationZones

ORIGIN = dns.name.from_text("fed.example.")
FOUNDERS = ["a" * 32, "b" * 32]
NOW = 1_800_000_000


def key(role: Role) -> SigningKey:
    private = ec.generate_private_key(ec.SECP256R1())
    return SigningKey(role, private, make_dnskey(private, 13, role))


class Node:
    def __init__(self, node_id: str, founder: bool, address: str) -> None:
        self.id = node_id
        self.zsk = key(Role.ZSK)
        self.ksk = key(Role.KSK) if founder else None
        self.address = address

    def body(self, serving: bool = False) -> dict[str, object]:
        return {"addresses": [self.address], "zsk": self.zsk.dnskey.to_text(),
                "ksk": self.ksk.dnskey.to_text() if self.ksk else None, "serving": serving}


class Federation:
    """Every node's copy of the zones, fed the same operations in the same order."""

    def __init__(self, copies: int = 2) -> None:
        self.copies = [FederationZones(ORIGIN, frozenset(FOUNDERS)) for _ in range(copies)]
        self.height = 0

    def commit(self, *ops: tuple[str, str, dict[str, object]]) -> None:
        self.height += 1
        for kind, requester, body in ops:
            digest = hashlib.sha256(repr((kind, requester, body)).encode()).digest()
            for copy in self.copies:
                copy.check(kind, requester, body) if kind != "network-registration" else None
            for copy in self.copies:
                copy.apply(kind, requester, body, self.height, digest)

    @property
    def state(self) -> FederationZones:
        return self.copies[0]

    def sign_keys(self, node: Node) -> None:
        assert node.ksk is not None
        digest, keys = self.state.keyset()
        signatures = []
        for zone in self.state.zone_names():
            rrset = self.state.dnskey_rrset(zone, keys)
            rrsig = dns.dnssec.sign(rrset, node.ksk.private_key, zone, node.ksk.dnskey,
                                    inception=NOW - 3600, expiration=NOW + 14 * 86400)
            signatures.append([zone.to_text(), rrsig.to_text()])
        self.commit(("dnskey-signatures", node.id, {"keyset": digest, "signatures": signatures}))


def bootstrapped() -> tuple[Federation, list[Node]]:
    fed = Federation()
    nodes = [Node(FOUNDERS[0], True, "2001:db8::1"), Node(FOUNDERS[1], True, "2001:db8::2")]
    fed.commit(*(("node-dns", n.id, n.body()) for n in nodes))
    for n in nodes:
        fed.sign_keys(n)
    assert all(fed.state.serving_wait(n.id) == 0 for n in nodes)
    fed.commit(*(("node-dns", n.id, n.body(serving=True)) for n in nodes))
    return fed, nodes


def validates(fed: Federation, node: Node, zone_name: dns.name.Name, name: dns.name.Name,
              rdtype: int, ds: dns.rrset.RRset) -> None:
    """The answer ``node`` signs validates from ``ds`` (a DNSKEY RRset signed by a KSK that a
    DS matches, then the RRset signed by a ZSK in that RRset)."""
    zone = fed.state.zones[zone_name]
    published = fed.state.published[zone_name]
    signed = sign_zone(zone, [node.zsk], NOW, published=(published.dnskey, published.rrsigs))
    dnskey = signed.dnskey
    matched = [k for k in dnskey if any(
        dns.dnssec.make_ds(zone_name, k, "SHA256") == d for d in ds)]
    assert matched, "no DNSKEY matches the DS"
    trusted_keys(dnskey, signed.rrsigs[(zone_name, dns.rdatatype.DNSKEY)], ds)
    dns.dnssec.validate(zone.rrsets[(name, rdtype)], signed.rrsigs[(name, rdtype)],
                        {zone_name: dnskey}, now=NOW)


def trusted_keys(dnskey: dns.rrset.RRset, rrsigs: dns.rrset.RRset, ds: dns.rrset.RRset) -> None:
    """A validator's first step: the DNSKEY RRset is signed by a key that a DS record
    matches (RFC 4035 5.2); a DS matching no key is passed over."""
    zone_name = dnskey.name
    anchors = [k for k in dnskey if any(
        dns.dnssec.make_ds(zone_name, k, "SHA256") == d for d in ds)]
    dns.dnssec.validate(dnskey, rrsigs, {zone_name: dns.rrset.from_rdata_list(
        zone_name, dnskey.ttl, anchors)}, now=NOW)


def test_every_copy_derives_the_same_zones_and_serials() -> None:
    fed, nodes = bootstrapped()
    fed.commit(("network-registration", "c" * 32, {"name": "alpha", "delegate": [], "ds": [],
                                                   "prefixes": []}))
    fed.sign_keys(nodes[0])
    alpha = dns.name.from_text("alpha.fed.example.")
    fed.commit(("zone-change", nodes[1].id, {
        "zone": alpha.to_text(), "add": [["www.alpha.fed.example.", "AAAA", 300, "2001:db8::80"]],
        "delete": []}))
    first, second = fed.copies
    assert set(first.zones) == {ORIGIN, alpha}
    for name in first.zones:
        assert first.zones[name].rrsets == second.zones[name].rrsets
        assert first.zones[name].serial == second.zones[name].serial
    assert first.zones[alpha].serial == fed.height  # the serial is the committing height
    ns = {r.target for r in first.zones[alpha].rrsets[(alpha, dns.rdatatype.NS)]}
    assert ns == {first.node_name(n.id) for n in nodes}
    assert (alpha, dns.rdatatype.DS) in first.zones[ORIGIN].rrsets  # the chain of trust


def test_each_node_signs_with_its_own_zsk_and_both_validate_from_one_ds() -> None:
    fed, nodes = bootstrapped()
    ds = fed.state.ds(ORIGIN)
    assert ds is not None and len(ds) == 2  # both founders' KSKs
    apex_ns = fed.state.zones[ORIGIN].rrsets
    assert (ORIGIN, dns.rdatatype.NS) in apex_ns
    for node in nodes:
        validates(fed, node, ORIGIN, ORIGIN, dns.rdatatype.NS, ds)


def test_a_joining_zsk_is_published_before_it_serves_and_the_ds_does_not_change() -> None:
    fed, nodes = bootstrapped()
    ds_before = fed.state.ds(ORIGIN)
    joiner = Node("d" * 32, False, "2001:db8::4")
    fed.commit(("node-dns", joiner.id, joiner.body()))
    assert fed.state.serving_wait(joiner.id) is None  # not signed in yet
    with pytest.raises(FederationRefused, match="already published"):
        fed.state.check("node-dns", joiner.id, joiner.body(serving=True))
    # the old DNSKEY RRset, with its signatures, is served until a KSK holder signs the new
    for node in nodes:
        validates(fed, node, ORIGIN, ORIGIN, dns.rdatatype.NS, ds_before)
    fed.sign_keys(nodes[1])
    assert fed.state.serving_wait(joiner.id) == fed.state.ttl  # others served: wait a TTL
    fed.commit(("node-dns", joiner.id, joiner.body(serving=True)))
    assert fed.state.ds(ORIGIN) == ds_before
    for node in [*nodes, joiner]:
        validates(fed, node, ORIGIN, ORIGIN, dns.rdatatype.SOA, ds_before)


def test_refused_operations() -> None:
    fed, nodes = bootstrapped()
    joiner = Node("d" * 32, True, "2001:db8::4")  # claims a KSK but is no founder
    with pytest.raises(FederationRefused, match="founding"):
        fed.state.check("node-dns", joiner.id, joiner.body())
    with pytest.raises(FederationRefused, match="federation's own"):
        fed.state.check("zone-change", nodes[0].id, {
            "zone": ORIGIN.to_text(), "add": [[f"{'a' * 32}.nodes.fed.example.", "A", 60,
                                               "192.0.2.1"]], "delete": []})
    with pytest.raises(FederationRefused, match="not one of"):
        fed.state.check("zone-change", nodes[0].id, {"zone": "other.example.", "add": [],
                                                     "delete": [["x.other.example.", "", ""]]})
    digest, _ = fed.state.keyset()
    with pytest.raises(FederationRefused, match="does not verify"):
        bad = dns.dnssec.sign(fed.state.dnskey_rrset(ORIGIN, fed.state.keyset()[1]),
                              nodes[0].zsk.private_key, ORIGIN, nodes[1].ksk.dnskey,  # type: ignore[union-attr]
                              inception=NOW, expiration=NOW + 86400)
        fed.state.check("dnskey-signatures", nodes[1].id, {
            "keyset": digest, "signatures": [[ORIGIN.to_text(), bad.to_text()]]})
    # a change that breaks a zone rule is refused when applied, on every copy alike
    fed.commit(("zone-change", nodes[0].id, {
        "zone": ORIGIN.to_text(), "add": [["x.fed.example.", "CNAME", 60, "y.fed.example."],
                                          ["x.fed.example.", "A", 60, "192.0.2.1"]],
        "delete": []}))
    assert all(len(c.refused) == 1 for c in fed.copies)
    assert "CNAME and other data" in next(iter(fed.state.refused.values()))


def test_the_same_change_twice_is_two_operations_by_their_nonces() -> None:
    fed, nodes = bootstrapped()
    add = {"zone": ORIGIN.to_text(), "add": [["www.fed.example.", "A", 60, "192.0.2.1"]],
           "delete": []}
    delete = {"zone": ORIGIN.to_text(), "add": [], "delete": [["www.fed.example.", "A", ""]]}
    for body in (add, delete, add):
        fed.commit(("zone-change", nodes[0].id, {**body, "nonce": f"{fed.height:x}"}))
    www = dns.name.from_text("www.fed.example.")
    assert (www, dns.rdatatype.A) in fed.state.zones[ORIGIN].rrsets
    assert fed.state.refused == {}
    with pytest.raises(FederationRefused, match="nonce"):
        fed.state.check("zone-change", nodes[0].id, {**add, "nonce": "not hex"})


def test_a_delegated_network_gets_ns_glue_and_ds_in_the_origin() -> None:
    fed, _ = bootstrapped()
    ds = "12345 13 2 " + "ab" * 32
    fed.commit(("network-registration", "c" * 32, {
        "name": "beta", "delegate": ["ns1.beta.fed.example=192.0.2.40,2001:db8::40",
                                     "ns.elsewhere.org"], "ds": [ds], "prefixes": []}))
    origin = fed.state.zones[ORIGIN]
    beta, inside = dns.name.from_text("beta.fed.example."), dns.name.from_text(
        "ns1.beta.fed.example.")

    def texts(name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> set[str]:
        rrset = origin.get(name, rdtype)
        return set() if rrset is None else {r.to_text() for r in rrset}

    assert texts(beta, dns.rdatatype.NS) == {"ns1.beta.fed.example.", "ns.elsewhere.org."}
    assert texts(inside, dns.rdatatype.A) == {"192.0.2.40"}
    assert texts(inside, dns.rdatatype.AAAA) == {"2001:db8::40"}
    assert texts(beta, dns.rdatatype.DS) == {ds}
    assert beta not in fed.state.zones and beta not in fed.state.zone_names()
    with pytest.raises(FederationRefused, match="inside the network beta"):
        fed.state.check("zone-change", "a" * 32, {
            "zone": ORIGIN.to_text(), "add": [["x.beta.fed.example.", "A", 60, "192.0.2.9"]],
            "delete": []})


def test_a_node_leaves_the_ns_sets_first_and_its_zsk_only_after_the_caches_expire() -> None:
    """RFC 6781's ZSK removal across signers: withdraw (out of NS, the ZSK still published, so
    the leaver's answers still validate), then remove (ZSK and names gone; the DNSKEY RRset
    the KSK holders sign next no longer holds it); the DS set never changes."""
    fed, nodes = bootstrapped()
    ds = fed.state.ds(ORIGIN)
    joiner = Node("d" * 32, False, "2001:db8::4")
    fed.commit(("node-dns", joiner.id, joiner.body()))
    fed.sign_keys(nodes[0])
    fed.commit(("node-dns", joiner.id, joiner.body(serving=True)))
    fed.commit(("zone-change", nodes[0].id, {
        "zone": ORIGIN.to_text(), "add": [["long.fed.example.", "TXT", 7200, "\"x\""]],
        "delete": []}))
    with pytest.raises(FederationRefused, match="remove follows withdraw"):
        fed.state.check("node-leave", joiner.id, {"step": "remove"})

    fed.commit(("node-leave", joiner.id, {"step": "withdraw"}))
    assert fed.state.leaving[joiner.id] == 7200  # the longest TTL in the zones
    ns = {r.target for r in fed.state.zones[ORIGIN].rrsets[(ORIGIN, dns.rdatatype.NS)]}
    assert fed.state.node_name(joiner.id) not in ns and len(ns) == 2
    validates(fed, joiner, ORIGIN, ORIGIN, dns.rdatatype.SOA, ds)  # still serves, valid
    with pytest.raises(FederationRefused, match="leaving"):
        fed.state.check("node-dns", joiner.id, joiner.body(serving=True))

    fed.commit(("node-leave", joiner.id, {"step": "remove"}))
    assert joiner.id in fed.state.left and joiner.id not in fed.state.nodes
    assert (fed.state.node_name(joiner.id), dns.rdatatype.AAAA) not in \
        fed.state.zones[ORIGIN].rrsets
    assert joiner.zsk.dnskey.to_text() not in fed.state.keyset()[1]
    fed.sign_keys(nodes[1])
    assert joiner.zsk.dnskey not in fed.state.published[ORIGIN].dnskey
    assert fed.state.ds(ORIGIN) == ds
    for node in nodes:
        validates(fed, node, ORIGIN, ORIGIN, dns.rdatatype.SOA, ds)
    with pytest.raises(FederationRefused, match="left"):
        fed.state.check("node-dns", joiner.id, joiner.body())


def test_a_founder_leaves_with_its_ksk_and_both_ds_sets_validate() -> None:
    """The end of a double-DS rollover (RFC 6781 4.1.2): the leaving founder's KSK goes from
    the DNSKEY RRset before its DS goes from the parent.  Every DNSKEY RRset a cache may hold
    (the old, signed by both founders; the new, by the one that stays) validates from the old
    DS set and from the new; the last KSK holder cannot leave."""
    fed, nodes = bootstrapped()
    old_ds = fed.state.ds(ORIGIN)
    assert old_ds is not None and len(old_ds) == 2
    leaver, stayer = nodes[1], nodes[0]
    assert leaver.ksk is not None
    fed.commit(("node-leave", leaver.id, {"step": "withdraw"}))
    with pytest.raises(FederationRefused, match="last key-signing key"):
        fed.state.check("node-leave", stayer.id, {"step": "withdraw"})
    validates(fed, leaver, ORIGIN, ORIGIN, dns.rdatatype.SOA, old_ds)  # still serves
    old = fed.state.published[ORIGIN]

    fed.commit(("node-leave", leaver.id, {"step": "remove"}))
    assert leaver.ksk.dnskey.to_text() not in fed.state.keyset()[1]
    assert fed.state.published[ORIGIN] == old  # served as it was until the stayer signs
    fed.sign_keys(stayer)
    new_ds = fed.state.ds(ORIGIN)
    assert new_ds is not None and len(new_ds) == 1 and set(new_ds) < set(old_ds)
    published = fed.state.published[ORIGIN]
    assert leaver.ksk.dnskey not in published.dnskey and len(published.dnskey) == 2
    for ds in (old_ds, new_ds):
        validates(fed, stayer, ORIGIN, ORIGIN, dns.rdatatype.SOA, ds)
        trusted_keys(old.dnskey, old.rrsigs, ds)  # a cache holding the old keys
    with pytest.raises(FederationRefused, match="last key-signing key"):
        fed.state.check("node-leave", stayer.id, {"step": "withdraw"})


def test_the_last_name_server_cannot_leave() -> None:
    fed = Federation()
    founder = Node(FOUNDERS[0], True, "2001:db8::1")
    joiner = Node("d" * 32, False, "2001:db8::4")
    fed.commit(("node-dns", founder.id, founder.body()), ("node-dns", joiner.id, joiner.body()))
    fed.sign_keys(founder)
    fed.commit(("node-dns", joiner.id, joiner.body(serving=True)))
    with pytest.raises(FederationRefused, match="no name server left"):
        fed.state.check("node-leave", joiner.id, {"step": "withdraw"})


def test_a_new_ttl_reaches_every_derived_rrset() -> None:
    """RRset equality ignores TTLs: a TTL-only change must still make a new version, or
    resolvers would cache the NS set for the old TTL (and a leaving node wait too little)."""
    fed, nodes = bootstrapped()
    fed.commit(("zone-change", nodes[0].id, {"zone": ORIGIN.to_text(), "ttl": 3}))
    zone = fed.state.zones[ORIGIN]
    assert {rrset.ttl for rrset in zone.rrsets.values()} == {3}
    assert zone.serial == fed.height
