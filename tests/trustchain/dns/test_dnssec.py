"""DNSSEC signing: published vectors, then whole zones checked by dnspython's validator."""

from __future__ import annotations

import base64

import dns.dnssec
import dns.name
import dns.rdatatype
import dns.rrset
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from tests.trustchain.dns.zonedata import EXAMPLE
from trustchain.dns.dnssec import Role, SigningKey, ds_records, make_dnskey, sign_zone
from trustchain.dns.zone import from_text

NOW = 1_795_000_000


def test_rfc8080_ed25519_erratum_4935_byte_for_byte() -> None:
    # https://www.rfc-editor.org/errata/eid4935 (RFC 8080 section 6.1, corrected)
    key = ed25519.Ed25519PrivateKey.from_private_bytes(
        base64.b64decode("ODIyNjAzODQ2MjgwODAxMjI2NDUxOTAyMDQxNDIyNjI="))
    dnskey = make_dnskey(key, 15, Role.KSK)
    assert dnskey.to_text() == "257 3 15 l02Woi0iS8Aa25FQkUd9RMzZHJpBoRQw AQEX1SxZJA4="
    assert dns.dnssec.key_id(dnskey) == 3613
    origin = dns.name.from_text("example.com.")
    assert ds_records(origin, [SigningKey(Role.KSK, key, dnskey)], 3600)[0].to_text() == (
        "3613 15 2 3aa5ab37efce57f737fc1627013fee07bdf241bd10f3b1964ab55c78e79a304b")
    mx = dns.rrset.from_text(origin, 3600, "IN", "MX", "10 mail.example.com.")
    rrsig = dns.dnssec.sign(mx, key, origin, dnskey, inception=1438207200, expiration=1440021600)
    expected = ("oL9krJun7xfBOIWcGHi7mag5/hdZrKWw15jPGrHpjQeRAvTdszaPD+QLs3fx8A4M3e23mRZ9V"
                "rbpMngwcrqNAg==")
    assert base64.b64encode(rrsig.signature).decode() == expected


def test_rfc6605_p256_signature_verifies() -> None:
    # https://www.rfc-editor.org/rfc/rfc6605#section-6.1
    d = int.from_bytes(base64.b64decode("GU6SnQ/Ou+xC5RumuIUIuJZteXT2z0O/ok1s38Et6mQ="), "big")
    key = ec.derive_private_key(d, ec.SECP256R1())
    dnskey = dns.rrset.from_text("example.net.", 3600, "IN", "DNSKEY",
                                 "257 3 13 GojIhhXUN/u4v54ZQqGSnyhWJwaubCvTmeexv7bR6edbkrSqQpF64"
                                 "cYbcB7wNcP+e+MAnLr+Wi9xMWyQLc8NAA==")
    assert make_dnskey(key, 13, Role.KSK) == dnskey[0]
    assert dns.dnssec.key_id(dnskey[0]) == 55648
    a = dns.rrset.from_text("www.example.net.", 3600, "IN", "A", "192.0.2.1")
    rrsig = dns.rrset.from_text(
        "www.example.net.", 3600, "IN", "RRSIG",
        "A 13 3 3600 20100909100439 20100812100439 55648 example.net. "
        "qx6wLYqmh+l9oCKTN6qIc+bw6ya+KJ8oMz0YP107epXAyGmt+3SNruPFKG7tZoLBLlUzGGus7ZwmwWep666VCw==")
    dns.dnssec.validate(a, rrsig, {dns.name.from_text("example.net."): dnskey}, now=1282000000)
    tampered = dns.rrset.from_text("www.example.net.", 3600, "IN", "A", "192.0.2.2")
    with pytest.raises(dns.dnssec.ValidationFailure):
        dns.dnssec.validate(tampered, rrsig, {dns.name.from_text("example.net."): dnskey},
                            now=1282000000)


def _keys(algorithm: int = 13) -> list[SigningKey]:
    def new():
        return (ec.generate_private_key(ec.SECP256R1()) if algorithm == 13
                else ed25519.Ed25519PrivateKey.generate())
    ksk, zsk = new(), new()
    return [SigningKey(Role.KSK, ksk, make_dnskey(ksk, algorithm, Role.KSK)),
            SigningKey(Role.ZSK, zsk, make_dnskey(zsk, algorithm, Role.ZSK))]


@pytest.mark.parametrize("algorithm", [13, 15])
def test_every_rrset_of_a_signed_zone_validates(algorithm: int) -> None:
    zone = from_text(EXAMPLE)
    signed = sign_zone(zone, _keys(algorithm), NOW)
    keyring = {zone.origin: signed.dnskey}
    dns.dnssec.validate(signed.dnskey, signed.rrsigs[(zone.origin, dns.rdatatype.DNSKEY)],
                        keyring, now=NOW)
    checked = 0
    for (name, rdtype), rrset in zone.rrsets.items():
        sig = signed.rrsig(name, rdtype)
        below_cut = zone.cut_above(name) is not None
        if below_cut and not (name in zone.cuts and rdtype == dns.rdatatype.DS):
            assert sig is None  # delegation NS and glue stay unsigned
            continue
        dns.dnssec.validate(rrset, sig, keyring, now=NOW)
        checked += 1
    for name, nsec in signed.nsec.items():
        dns.dnssec.validate(nsec, signed.rrsig(name, dns.rdatatype.NSEC), keyring, now=NOW)
    assert checked >= len(zone.rrsets) - 3


def test_nsec_chain_is_closed_and_ordered() -> None:
    zone = from_text(EXAMPLE)
    signed = sign_zone(zone, _keys(), NOW)
    names = list(signed.chain)
    assert names == sorted(names) and names[0] == zone.origin
    for i, name in enumerate(names):
        assert signed.nsec[name][0].next == names[(i + 1) % len(names)]
    glue = dns.name.from_text("ns.sub.example.net.")
    assert glue not in signed.nsec  # below the delegation
    assert signed.covering(dns.name.from_text("nope.example.net.")) < dns.name.from_text(
        "nope.example.net.")
    at_cut = signed.nsec[dns.name.from_text("sub.example.net.")][0].to_text()
    assert at_cut.endswith("NS DS RRSIG NSEC")


def test_unchanged_rrsets_keep_their_signatures() -> None:
    zone = from_text(EXAMPLE)
    keys = _keys()
    first = sign_zone(zone, keys, NOW)
    changed = from_text(EXAMPLE.replace("192.0.2.10", "192.0.2.11"))
    second = sign_zone(changed, keys, NOW + 60, previous=first)
    www = dns.name.from_text("www.example.net.")
    mail = dns.name.from_text("mail.example.net.")
    assert second.rrsigs[(mail, dns.rdatatype.MX)] == first.rrsigs[(mail, dns.rdatatype.MX)]
    assert second.rrsigs[(www, dns.rdatatype.A)] != first.rrsigs[(www, dns.rdatatype.A)]
    later = sign_zone(changed, keys, NOW + 11 * 86400, previous=second)  # within refresh
    assert later.rrsigs[(mail, dns.rdatatype.MX)] != first.rrsigs[(mail, dns.rdatatype.MX)]


def test_signing_needs_both_roles() -> None:
    ksk = _keys()[0]
    with pytest.raises(ValueError):
        sign_zone(from_text(EXAMPLE), [ksk], NOW)
