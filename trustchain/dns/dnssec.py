"""DNSSEC signing of a zone version, pure: zone + keys + time in, signed data out.

Signing happens when a zone changes (and when signatures near expiry), never
per query: :func:`sign_zone` produces a :class:`SignedZone` holding

* the DNSKEY RRset (at the apex, signed by the key-signing keys),
* the NSEC chain (RFC 4034 section 4) over every authoritative name and
  delegation point, in canonical order, so denial of existence is a lookup,
  never a per-query signature ("white lies" are not used),
* an RRSIG for every authoritative RRset (at delegation points only DS and
  NSEC are signed; glue is not), by the zone-signing keys.

Signatures are reused from the previous version when the RRset and key are
unchanged and the signature is not within ``refresh`` of its expiry, so a
change to one record costs a few signatures, not a whole zone.  Validity:
inception one hour in the past (clock skew), expiry ``validity`` ahead plus
a per-name jitter of up to ``jitter`` (so expiries spread out).

The cryptography is dnspython's ``dns.dnssec.sign`` (over ``cryptography``);
algorithm 13 (ECDSA P-256 SHA-256) by default, 15 (Ed25519) as an option.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

import dns.dnssec
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.NSEC
import dns.rrset
from dns.rdtypes.ANY.DNSKEY import DNSKEY
from dns.rdtypes.ANY.RRSIG import RRSIG

from trustchain.dns.zone import NS, Zone

ALGORITHMS = {13: dns.dnssec.Algorithm.ECDSAP256SHA256, 15: dns.dnssec.Algorithm.ED25519}
DAY = 86400


class Role(Enum):
    KSK = "ksk"  # signs the DNSKEY RRset; its DS goes to the parent (flags 257)
    ZSK = "zsk"  # signs everything else (flags 256)
    CSK = "csk"  # both (flags 257)


@dataclass(frozen=True)
class SigningKey:
    role: Role
    private_key: object  # a cryptography private key of the algorithm
    dnskey: DNSKEY
    #: Published keys appear in the DNSKEY RRset; active keys also sign.
    active: bool = True

    @property
    def tag(self) -> int:
        return dns.dnssec.key_id(self.dnskey)

    @property
    def signs_keys(self) -> bool:
        return self.role in (Role.KSK, Role.CSK)

    @property
    def signs_zone(self) -> bool:
        return self.role in (Role.ZSK, Role.CSK)


def make_dnskey(private_key: object, algorithm: int, role: Role) -> DNSKEY:
    flags = 257 if role in (Role.KSK, Role.CSK) else 256
    return dns.dnssec.make_dnskey(private_key.public_key(), ALGORITHMS[algorithm],  # type: ignore[attr-defined]
                                  flags=flags)


@dataclass(frozen=True)
class Policy:
    validity: int = 14 * DAY
    jitter: int = DAY
    #: Re-sign when less than this is left before expiry.
    refresh: int = 4 * DAY
    #: Signatures start this much before the signing time (clock skew).
    backdate: int = 3600


Key = tuple[dns.name.Name, int]


@dataclass(frozen=True)
class SignedZone:
    """The DNSSEC data that goes with one zone version."""

    zone: Zone
    dnskey: dns.rrset.RRset
    #: RRSIGs by (owner, covered type).
    rrsigs: Mapping[Key, dns.rrset.RRset]
    #: NSEC records by owner, and the owners in canonical order.
    nsec: Mapping[dns.name.Name, dns.rrset.RRset]
    chain: tuple[dns.name.Name, ...] = field(repr=False)
    #: When the earliest signature must be refreshed (seconds since the epoch).
    refresh_at: int = 0
    #: Records the signer adds at the apex (CDS and CDNSKEY for the parent, RFC 7344;
    #: NSEC3PARAM).
    extra: Mapping[Key, dns.rrset.RRset] = field(default_factory=dict)
    #: NSEC3 mode: records by hashed owner name, and those owners in canonical order.
    nsec3: Mapping[dns.name.Name, dns.rrset.RRset] = field(default_factory=dict)
    nsec3_chain: tuple[dns.name.Name, ...] = field(default=(), repr=False)

    def hashed(self, name: dns.name.Name) -> dns.name.Name:
        """The NSEC3 owner for ``name`` (RFC 9276: SHA-1, no extra iterations, no salt)."""
        return dns.name.Name((nsec3_label(name).encode(), *self.zone.origin.labels))

    def nsec3_covering(self, name: dns.name.Name) -> dns.name.Name:
        """The NSEC3 owner whose interval covers (or matches) the hash of ``name``."""
        return _last_at_or_below(self.nsec3_chain, self.hashed(name))

    def covering(self, name: dns.name.Name) -> dns.name.Name:
        """The NSEC owner whose interval covers ``name`` (which does not exist)."""
        return _last_at_or_below(self.chain, name)

    def rrsig(self, name: dns.name.Name, rdtype: int) -> dns.rrset.RRset | None:
        return self.rrsigs.get((name, rdtype))


def _last_at_or_below(chain: tuple[dns.name.Name, ...], name: dns.name.Name) -> dns.name.Name:
    """The last owner <= ``name`` in canonical order (wrapping to the last one)."""
    low, high = 0, len(chain)
    while low < high:
        mid = (low + high) // 2
        if chain[mid] <= name:
            low = mid + 1
        else:
            high = mid
    return chain[low - 1] if low else chain[-1]


def nsec3_label(name: dns.name.Name) -> str:
    """Base32hex of SHA-1(name), RFC 5155 with RFC 9276's 0 iterations and empty salt."""
    return dns.dnssec.nsec3_hash(name, None, 0, 1).lower()


def authoritative_names(zone: Zone) -> list[dns.name.Name]:
    """Owner names that get NSEC records: everything but what lies below a delegation."""
    names = {name for name, _ in zone.rrsets}
    return sorted(n for n in names if (cut := zone.cut_above(n)) is None or cut == n)


def _jitter(name: dns.name.Name, rdtype: int, span: int) -> int:
    digest = hashlib.sha256(name.to_digestable() + rdtype.to_bytes(2, "big")).digest()
    return int.from_bytes(digest[:4], "big") % (span + 1)


DEFAULT_POLICY = Policy()


def sign_zone(zone: Zone, keys: Iterable[SigningKey], now: int,
              policy: Policy = DEFAULT_POLICY, previous: SignedZone | None = None,
              cds: SigningKey | None = None, nsec3: bool = False,
              published: tuple[dns.rrset.RRset, dns.rrset.RRset] | None = None) -> SignedZone:
    """Sign ``zone`` at time ``now`` (seconds since the epoch).

    :param cds: the key-signing key the parent should list (published as CDS
        and CDNSKEY at the apex), during and after a KSK rollover.
    :param published: for a zone served by several signers (RFC 8901): the DNSKEY
        RRset they agreed, holding every signer's keys, and its RRSIGs, made by the
        key-signing keys' holders.  ``keys`` then need only hold a zone-signing key.
    """
    keys = list(keys)
    ksks = [k for k in keys if k.signs_keys and k.active]
    zsks = [k for k in keys if k.signs_zone and k.active]
    if not zsks or (not ksks and published is None):
        raise ValueError("signing needs an active key-signing and zone-signing key (or a CSK)")
    origin = zone.origin
    ttl = zone.soa.ttl
    if published is not None:
        dnskey = published[0]
    else:
        dnskey = dns.rrset.from_rdata_list(origin, ttl, [k.dnskey for k in keys])
    negative_ttl = min(zone.soa.ttl, zone.soa[0].minimum)
    extra: dict[Key, dns.rrset.RRset] = {}
    if cds is not None:
        extra[(origin, dns.rdatatype.CDS)] = dns.rrset.from_rdata(
            origin, ttl, dns.dnssec.make_cds(origin, cds.dnskey, "SHA256"))
        extra[(origin, dns.rdatatype.CDNSKEY)] = dns.rrset.from_rdata(
            origin, ttl, dns.dnssec.make_cdnskey(
                cds.private_key.public_key(),  # type: ignore[attr-defined]
                cds.dnskey.algorithm, flags=cds.dnskey.flags))

    names = authoritative_names(zone)
    nsec: dict[dns.name.Name, dns.rrset.RRset] = {}
    hashed: dict[dns.name.Name, dns.rrset.RRset] = {}
    if nsec3:
        extra[(origin, dns.rdatatype.NSEC3PARAM)] = dns.rrset.from_text(
            origin, 0, "IN", "NSEC3PARAM", "1 0 0 -")
        hashed = _nsec3_chain(zone, names, extra, negative_ttl)
        names = []
    for index, name in enumerate(names):
        types = set(zone.types_at(name))
        if name == origin:
            types.add(dns.rdatatype.DNSKEY)
            types |= {t for (_, t) in extra}
        types |= {dns.rdatatype.NSEC, dns.rdatatype.RRSIG}
        if name in zone.cuts:  # only what the parent side owns (RFC 4035 2.3)
            types &= {NS, dns.rdatatype.DS, dns.rdatatype.NSEC, dns.rdatatype.RRSIG}
        following = names[(index + 1) % len(names)]
        windows = dns.rdtypes.ANY.NSEC.Bitmap.from_rdtypes(
            [dns.rdatatype.RdataType.make(t) for t in sorted(types)])
        rdata = dns.rdtypes.ANY.NSEC.NSEC(dns.rdataclass.IN, dns.rdatatype.NSEC, following,
                                          windows)
        nsec[name] = dns.rrset.from_rdata(name, negative_ttl, rdata)

    to_sign: list[tuple[dns.rrset.RRset, list[SigningKey]]] = [] if published else [(dnskey, ksks)]
    for (name, rdtype), rrset in zone.rrsets.items():
        cut = zone.cut_above(name)
        if cut is not None and not (name == cut and rdtype == dns.rdatatype.DS):
            continue  # delegation NS and glue are not signed
        to_sign.append((rrset, zsks))
    to_sign += [(r, zsks) for r in nsec.values()]
    to_sign += [(r, zsks) for r in hashed.values()]
    to_sign += [(r, zsks) for r in extra.values()]

    rrsigs: dict[Key, dns.rrset.RRset] = {}
    refresh_at = now + policy.validity
    if published is not None:
        rrsigs[(origin, dns.rdatatype.DNSKEY)] = published[1]
    for rrset, signers in to_sign:
        sigs: list[RRSIG] = []
        for key in signers:
            sig = _reuse(previous, rrset, key, now, policy) or dns.dnssec.sign(
                rrset, key.private_key, origin, key.dnskey,  # type: ignore[arg-type]
                inception=now - policy.backdate,
                expiration=now + policy.validity + _jitter(rrset.name, rrset.rdtype,
                                                           policy.jitter),
            )
            sigs.append(sig)
            refresh_at = min(refresh_at, sig.expiration - policy.refresh)
        rrsigs[(rrset.name, rrset.rdtype)] = dns.rrset.from_rdata_list(
            rrset.name, rrset.ttl, sigs)
    return SignedZone(zone, dnskey, rrsigs, nsec, tuple(names), refresh_at, extra, hashed,
                      tuple(sorted(hashed)))


def _nsec3_chain(zone: Zone, names: list[dns.name.Name], extra: Mapping[Key, dns.rrset.RRset],
                 ttl: int) -> dict[dns.name.Name, dns.rrset.RRset]:
    """NSEC3 records (RFC 5155 section 7.1) for every authoritative name and empty non-terminal."""
    origin = zone.origin
    owners = set(names)
    for name in names:  # empty non-terminals between the apex and each name get one too
        parent = name
        while parent != origin and len(parent) > len(origin):
            parent = parent.parent()
            owners.add(parent)
    entries = []
    for name in owners:
        types = set(zone.types_at(name))
        if name == origin:
            types |= {dns.rdatatype.DNSKEY} | {t for (_, t) in extra}
        if name in zone.cuts:
            types &= {NS, dns.rdatatype.DS}
        if types and (name not in zone.cuts or dns.rdatatype.DS in types):
            types.add(dns.rdatatype.RRSIG)
        entries.append((nsec3_label(name), sorted(types)))
    entries.sort()
    out: dict[dns.name.Name, dns.rrset.RRset] = {}
    for index, (label, bitmap) in enumerate(entries):
        following = entries[(index + 1) % len(entries)][0]
        owner = dns.name.Name((label.encode(), *origin.labels))
        type_names = " ".join(dns.rdatatype.to_text(dns.rdatatype.RdataType.make(t))
                              for t in bitmap)
        text = f"1 0 0 - {following} {type_names}"
        out[owner] = dns.rrset.from_text(owner, ttl, "IN", "NSEC3", text.strip())
    return out


def _reuse(previous: SignedZone | None, rrset: dns.rrset.RRset, key: SigningKey, now: int,
           policy: Policy) -> RRSIG | None:
    if previous is None:
        return None
    old_rrset: dns.rrset.RRset | None
    if rrset.rdtype == dns.rdatatype.DNSKEY:
        old_rrset = previous.dnskey
    elif rrset.rdtype == dns.rdatatype.NSEC:
        old_rrset = previous.nsec.get(rrset.name)
    elif rrset.rdtype in (dns.rdatatype.CDS, dns.rdatatype.CDNSKEY, dns.rdatatype.NSEC3PARAM):
        old_rrset = previous.extra.get((rrset.name, rrset.rdtype))
    elif rrset.rdtype == dns.rdatatype.NSEC3:
        old_rrset = previous.nsec3.get(rrset.name)
    else:
        old_rrset = previous.zone.rrsets.get((rrset.name, rrset.rdtype))
    old_sigs = previous.rrsigs.get((rrset.name, rrset.rdtype))
    if old_rrset is None or old_sigs is None or old_rrset != rrset or old_rrset.ttl != rrset.ttl:
        return None
    for sig in old_sigs:
        if sig.key_tag == key.tag and sig.algorithm == key.dnskey.algorithm \
                and sig.expiration - policy.refresh > now:
            return sig
    return None


def ds_records(origin: dns.name.Name, keys: Iterable[SigningKey], ttl: int) -> dns.rrset.RRset:
    """The DS set for the parent (SHA-256 digests of the key-signing keys)."""
    return dns.rrset.from_rdata_list(origin, ttl, [
        dns.dnssec.make_ds(origin, k.dnskey, "SHA256") for k in keys if k.signs_keys])
