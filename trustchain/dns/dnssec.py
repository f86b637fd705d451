"""DNSSEC signing of a zone version, pure: zone + keys + time in, signed data out.

Signing happens when a zone changes (and when signatures near expiry), never
per query: :func:`sign_zone` produces a :class:`SignedZone` holding

* the DNSKEY RRset (at the apex, signed by the key-signing keys),
* the NSEC chain (RFC 4034 section 4) over every authoritative name and
  delegation point, in canonical order, so denial of existence is a lookup,
  never a per-query signature ("white lies" are not used),
* an RRSIG for every authoritative RRset (at delegation points only DS and
  NSEC are signed; glue is not), by the zone-signing keys.

A version made from the previous one (:meth:`trustchain.dns.zone.Zone.apply`)
is signed incrementally: only the changed RRsets and the NSEC/NSEC3 records
of the changed names and their predecessors in the chain are signed, and
everything else is shared with the previous :class:`SignedZone` (persistent
maps and a block-sorted chain, :mod:`trustchain.dns.persistent`), so a change
to one record costs a few signatures and no work that grows with the zone.
A first signing, a refresh (a signature near expiry) or a change of keys signs
every RRset, reusing the signatures of the previous version while the RRset
and key are unchanged and the signature is not within ``refresh`` of expiry.  Validity:
inception one hour in the past (clock skew), expiry ``validity`` ahead plus
a per-name jitter of up to ``jitter`` (so expiries spread out).

The cryptography is dnspython's ``dns.dnssec.sign`` (over ``cryptography``);
algorithm 13 (ECDSA P-256 SHA-256) by default, 15 (Ed25519) as an option.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import dns.dnssec
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.NSEC
import dns.rdtypes.ANY.NSEC3
import dns.rdtypes.util
import dns.rrset
from dns.rdtypes.ANY.DNSKEY import DNSKEY
from dns.rdtypes.ANY.NSEC import NSEC
from dns.rdtypes.ANY.NSEC3 import NSEC3
from dns.rdtypes.ANY.RRSIG import RRSIG

from trustchain.dns.persistent import PMap, SortedSeq
from trustchain.dns.zone import NS, Zone, enclosing, rrset_of
from trustchain.dns.zone import same_rrset as _same

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
        return key_tag(self.dnskey)

    @property
    def signs_keys(self) -> bool:
        return self.role in (Role.KSK, Role.CSK)

    @property
    def signs_zone(self) -> bool:
        return self.role in (Role.ZSK, Role.CSK)


#: Key tags by DNSKEY object: a tag is a checksum over the key's wire form, computed in
#: Python, and the same few keys sign every change (the key source keeps their objects).
_TAGS: dict[int, tuple[DNSKEY, int]] = {}


def key_tag(dnskey: DNSKEY) -> int:
    """``dns.dnssec.key_id(dnskey)``, remembered for the DNSKEY object."""
    known = _TAGS.get(id(dnskey))
    if known is not None and known[0] is dnskey:
        return known[1]
    if len(_TAGS) >= 256:  # keys come and go (rollovers, tests): stay small
        _TAGS.clear()
    tag = dns.dnssec.key_id(dnskey)
    _TAGS[id(dnskey)] = (dnskey, tag)
    return tag


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
#: Types the signer makes: a change to zone data of these types is signed whole.
_SIGNER_TYPES = frozenset({dns.rdatatype.DNSKEY, dns.rdatatype.NSEC, dns.rdatatype.NSEC3,
                           dns.rdatatype.RRSIG, dns.rdatatype.CDS, dns.rdatatype.CDNSKEY,
                           dns.rdatatype.NSEC3PARAM})


@dataclass(frozen=True)
class SignedZone:
    """The DNSSEC data that goes with one zone version."""

    zone: Zone
    dnskey: dns.rrset.RRset
    #: RRSIGs by (owner, covered type).
    rrsigs: PMap[Key, dns.rrset.RRset]
    #: NSEC records by owner, and the owners in canonical order.
    nsec: PMap[dns.name.Name, dns.rrset.RRset]
    chain: SortedSeq[dns.name.Name] = field(repr=False)
    #: When the earliest signature must be refreshed (seconds since the epoch).
    refresh_at: int = 0
    #: Records the signer adds at the apex (CDS and CDNSKEY for the parent, RFC 7344;
    #: NSEC3PARAM).
    extra: Mapping[Key, dns.rrset.RRset] = field(default_factory=dict)
    #: NSEC3 mode: records by hashed owner name, and those owners in canonical order.
    nsec3: PMap[dns.name.Name, dns.rrset.RRset] = field(default_factory=PMap)
    nsec3_chain: SortedSeq[dns.name.Name] = field(default_factory=SortedSeq, repr=False)
    #: The active keys that signed, as (signs keys, tag, algorithm): a version signed
    #: incrementally over this one must be signed by the same.
    signers: frozenset[tuple[bool, int, int]] = frozenset()
    #: Made incrementally: the NSEC (or hashed NSEC3) owners whose records differ from the
    #: previous version's.  None: signed whole, so any record may differ.
    resigned: frozenset[dns.name.Name] | None = field(default=None, repr=False)
    #: The :attr:`token` of the version ``resigned`` is relative to.
    base: object | None = field(default=None, repr=False)
    #: This version's identity.
    token: object = field(default_factory=object, repr=False)

    def hashed(self, name: dns.name.Name) -> dns.name.Name:
        """The NSEC3 owner for ``name`` (RFC 9276: SHA-1, no extra iterations, no salt)."""
        return dns.name.Name((nsec3_label(name).encode(), *self.zone.origin.labels))

    def nsec3_covering(self, name: dns.name.Name) -> dns.name.Name:
        """The NSEC3 owner whose interval covers (or matches) the hash of ``name``."""
        return self.nsec3_chain.floor(self.hashed(name))

    def covering(self, name: dns.name.Name) -> dns.name.Name:
        """The NSEC owner whose interval covers ``name`` (which does not exist)."""
        return self.chain.floor(name)

    def rrsig(self, name: dns.name.Name, rdtype: int) -> dns.rrset.RRset | None:
        return self.rrsigs.get((name, rdtype))


def nsec3_label(name: dns.name.Name) -> str:
    """Base32hex of SHA-1(name), RFC 5155 with RFC 9276's 0 iterations and empty salt."""
    return dns.dnssec.nsec3_hash(name, None, 0, 1).lower()


def _authoritative(zone: Zone, name: dns.name.Name) -> bool:
    """An owner name that gets an NSEC record: not below a delegation."""
    return name in zone.types and ((cut := zone.cut_above(name)) is None or cut == name)


def _signed_in(zone: Zone, name: dns.name.Name, rdtype: int) -> bool:
    """Whether the RRset is signed: not delegation NS, not glue (DS at a cut is)."""
    cut = zone.cut_above(name)
    return cut is None or (name == cut and rdtype == dns.rdatatype.DS)


def authoritative_names(zone: Zone) -> list[dns.name.Name]:
    """Owner names that get NSEC records, in canonical order: all but what lies below a
    delegation."""
    return [n for n in zone.owners if _authoritative(zone, n)]


def _jitter(name: dns.name.Name, rdtype: int, span: int) -> int:
    digest = hashlib.sha256(name.to_digestable() + rdtype.to_bytes(2, "big")).digest()
    return int.from_bytes(digest[:4], "big") % (span + 1)


DEFAULT_POLICY = Policy()


def sign_zone(zone: Zone, keys: Iterable[SigningKey], now: int,
              policy: Policy = DEFAULT_POLICY, previous: SignedZone | None = None,
              cds: SigningKey | None = None, nsec3: bool = False,
              published: tuple[dns.rrset.RRset, dns.rrset.RRset] | None = None) -> SignedZone:
    """Sign ``zone`` at time ``now`` (seconds since the epoch).

    When ``zone`` was made from ``previous.zone`` (:meth:`Zone.apply`, its
    :attr:`~trustchain.dns.zone.Zone.delta`) and nothing else changed (keys, DNSKEY
    RRset, CDS, NSEC or NSEC3, the SOA's TTLs) and no signature of ``previous`` is due
    for refresh, only the changed RRsets and the NSEC or NSEC3 records around the
    changed names are signed: the result is what a whole signing gives (but for the
    randomness of ECDSA signatures), at the cost of the change.  Otherwise every RRset
    is signed, reusing the signatures of ``previous`` that are still good.

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
        dnskey = rrset_of(origin, ttl, [k.dnskey for k in keys])
        if previous is not None and _same(dnskey, previous.dnskey):
            dnskey = previous.dnskey  # equal: sharing it makes later comparisons identity
    extra: dict[Key, dns.rrset.RRset] = {}
    if cds is not None:
        extra[(origin, dns.rdatatype.CDS)] = dns.rrset.from_rdata(
            origin, ttl, dns.dnssec.make_cds(origin, cds.dnskey, "SHA256"))
        extra[(origin, dns.rdatatype.CDNSKEY)] = dns.rrset.from_rdata(
            origin, ttl, dns.dnssec.make_cdnskey(
                cds.private_key.public_key(),  # type: ignore[attr-defined]
                cds.dnskey.algorithm, flags=cds.dnskey.flags))
    if nsec3:
        extra[(origin, dns.rdatatype.NSEC3PARAM)] = rrset_of(origin, 0, [_NSEC3PARAM])
    signers = frozenset((k.signs_keys, k.tag, int(k.dnskey.algorithm)) for k in ksks + zsks)
    if previous is not None and _continues(zone, previous, now, dnskey, extra, signers, nsec3,
                                           published):
        if zone is previous.zone:
            return previous
        return _sign_changes(zone, previous, zsks, now, policy)
    return _sign_all(zone, ksks, zsks, now, policy, previous, dnskey, extra, signers,
                     nsec3, published)


def _continues(zone: Zone, previous: SignedZone, now: int, dnskey: dns.rrset.RRset,
               extra: Mapping[Key, dns.rrset.RRset], signers: frozenset[tuple[bool, int, int]],
               nsec3: bool, published: tuple[dns.rrset.RRset, dns.rrset.RRset] | None) -> bool:
    """Whether ``zone`` may be signed as the changes since ``previous`` alone."""
    if zone is not previous.zone and (
            zone.delta is None or zone.delta.base is not previous.zone.token):
        return False
    if now >= previous.refresh_at or signers != previous.signers \
            or bool(previous.nsec3) != nsec3 or not _same(dnskey, previous.dnskey):
        return False
    if extra.keys() != previous.extra.keys() or any(
            not _same(rrset, previous.extra[key]) for key, rrset in extra.items()):
        return False
    if published is not None and not _same(
            published[1], previous.rrsigs.get((zone.origin, dns.rdatatype.DNSKEY))):
        return False
    soa, old_soa = zone.soa, previous.zone.soa  # the TTLs of DNSKEY and NSEC records
    if soa.ttl != old_soa.ttl or soa[0].minimum != old_soa[0].minimum:
        return False
    return zone.delta is None or not any(t in _SIGNER_TYPES for _, t in zone.delta.keys)


_NSEC3PARAM = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.NSEC3PARAM, "1 0 0 -")


def _negative_ttl(zone: Zone) -> int:
    return int(min(zone.soa.ttl, zone.soa[0].minimum))


def _nsec_types(zone: Zone, name: dns.name.Name, extra: Mapping[Key, dns.rrset.RRset]
                ) -> tuple[int, ...]:
    """The type bitmap of the NSEC record at ``name``."""
    types = set(zone.types_at(name))
    if name == zone.origin:
        types.add(dns.rdatatype.DNSKEY)
        types |= {t for (_, t) in extra}
    types |= {dns.rdatatype.NSEC, dns.rdatatype.RRSIG}
    if zone.cuts and name in zone.cuts:  # only what the parent side owns (RFC 4035 2.3)
        types &= {NS, dns.rdatatype.DS, dns.rdatatype.NSEC, dns.rdatatype.RRSIG}
    return tuple(sorted(types))


@functools.lru_cache(maxsize=1024)
def _bitmap(nsec3: bool, types: tuple[int, ...]) -> dns.rdtypes.util.Bitmap:
    """The type bitmap of ``types`` (sorted): the same few recur, and making one converts
    every type; a Bitmap is immutable, so the records share it."""
    cls = dns.rdtypes.ANY.NSEC3.Bitmap if nsec3 else dns.rdtypes.ANY.NSEC.Bitmap
    return cls.from_rdtypes([dns.rdatatype.RdataType.make(t) for t in types])


def _nsec_make(following: dns.name.Name, windows: Any) -> NSEC:
    """An NSEC rdata from its fields (the next owner; a Bitmap, or its windows)."""
    return NSEC(dns.rdataclass.IN, dns.rdatatype.NSEC, following, windows)


def _nsec_rdata(following: dns.name.Name, types: tuple[int, ...]) -> NSEC:
    return _nsec_make(following, _bitmap(False, types))


def _nsec_rrset(name: dns.name.Name, following: dns.name.Name, types: tuple[int, ...],
                ttl: int) -> dns.rrset.RRset:
    return rrset_of(name, ttl, [_nsec_rdata(following, types)])


def _nsec3_types(zone: Zone, name: dns.name.Name, extra: Mapping[Key, dns.rrset.RRset]
                 ) -> tuple[int, ...]:
    """The type bitmap of the NSEC3 record for ``name``."""
    types = set(zone.types_at(name))
    if name == zone.origin:
        types |= {dns.rdatatype.DNSKEY} | {t for (_, t) in extra}
    cut = bool(zone.cuts) and name in zone.cuts
    if cut:
        types &= {NS, dns.rdatatype.DS}
    if types and (not cut or dns.rdatatype.DS in types):
        types.add(dns.rdatatype.RRSIG)
    return tuple(sorted(types))


def _nsec3_make(following: bytes, windows: Any) -> NSEC3:
    """An NSEC3 rdata from its fields (the next hashed owner; a Bitmap, or its windows), with
    RFC 9276's parameters (SHA-1, no opt-out, no extra iterations, no salt)."""
    return NSEC3(dns.rdataclass.IN, dns.rdatatype.NSEC3, 1, 0, 0, b"", following, windows)


def _nsec3_next(owner: dns.name.Name) -> bytes:
    """The next-hashed-owner field naming the NSEC3 owner ``owner``."""
    return base64.b32hexdecode(owner.labels[0].upper())


def _nsec3_rdata(following: dns.name.Name, types: tuple[int, ...]) -> NSEC3:
    return _nsec3_make(_nsec3_next(following), _bitmap(True, types))


def _nsec3_rrset(owner: dns.name.Name, following: dns.name.Name, types: tuple[int, ...],
                 ttl: int) -> dns.rrset.RRset:
    return rrset_of(owner, ttl, [_nsec3_rdata(following, types)])


def _same_denial(a: Any, b: Any) -> bool:
    """Two NSEC or two NSEC3 rdatas equal in wire form, compared field by field (equality of
    rdatas makes both wire forms).  An NSEC's next name is not lower-cased on the wire
    (RFC 6840 5.1), hence its labels, not the (case-insensitive) names, are compared."""
    if type(a) is not type(b) or a.windows != b.windows:
        return False
    if isinstance(a, NSEC):
        return a.next.labels == b.next.labels  # type: ignore[no-any-return]
    return (a.next, a.salt, a.algorithm, a.flags, a.iterations) \
        == (b.next, b.salt, b.algorithm, b.flags, b.iterations)  # type: ignore[no-any-return]


def _nsec3_owner(zone: Zone, name: dns.name.Name) -> bool:
    """Names that get an NSEC3 record: existing names (empty non-terminals too) not below
    a delegation (RFC 5155 section 7.1)."""
    return name in zone.names and ((cut := zone.cut_above(name)) is None or cut == name)


def _sign_all(zone: Zone, ksks: list[SigningKey], zsks: list[SigningKey], now: int,
              policy: Policy, previous: SignedZone | None, dnskey: dns.rrset.RRset,
              extra: dict[Key, dns.rrset.RRset], signers: frozenset[tuple[bool, int, int]],
              nsec3: bool, published: tuple[dns.rrset.RRset, dns.rrset.RRset] | None
              ) -> SignedZone:
    """Every RRset and NSEC or NSEC3 record signed (or its signature reused)."""
    origin = zone.origin
    negative_ttl = _negative_ttl(zone)
    names = authoritative_names(zone)
    nsec: dict[dns.name.Name, dns.rrset.RRset] = {}
    hashed: dict[dns.name.Name, dns.rrset.RRset] = {}
    if nsec3:
        hashed = _nsec3_chain(zone, names, extra, negative_ttl)
        names = []
    for index, name in enumerate(names):
        nsec[name] = _nsec_rrset(name, names[(index + 1) % len(names)],
                                 _nsec_types(zone, name, extra), negative_ttl)

    to_sign: list[tuple[dns.rrset.RRset, list[SigningKey]]] = [] if published else [(dnskey, ksks)]
    for (name, rdtype), rrset in zone.rrsets.items():
        if _signed_in(zone, name, rdtype):  # delegation NS and glue are not signed
            to_sign.append((rrset, zsks))
    to_sign += [(r, zsks) for r in nsec.values()]
    to_sign += [(r, zsks) for r in hashed.values()]
    to_sign += [(r, zsks) for r in extra.values()]

    rrsigs: dict[Key, dns.rrset.RRset] = {}
    refresh_at = now + policy.validity
    if published is not None:
        rrsigs[(origin, dns.rdatatype.DNSKEY)] = published[1]
    for rrset, keys in to_sign:
        sigs = [_reuse(previous, rrset, key, now, policy) or _sign(rrset, key, origin, now, policy)
                for key in keys]
        refresh_at = min([refresh_at, *(sig.expiration - policy.refresh for sig in sigs)])
        rrsigs[(rrset.name, rrset.rdtype)] = dns.rrset.from_rdata_list(
            rrset.name, rrset.ttl, sigs)
    return SignedZone(zone, dnskey, PMap(rrsigs), PMap(nsec), SortedSeq(names, presorted=True),
                      refresh_at, extra, PMap(hashed), SortedSeq(hashed), signers)


def _sign(rrset: dns.rrset.RRset, key: SigningKey, origin: dns.name.Name, now: int,
          policy: Policy) -> RRSIG:
    return dns.dnssec.sign(  # type: ignore[no-any-return]
        rrset, key.private_key, origin, key.dnskey,  # type: ignore[arg-type]
        inception=now - policy.backdate,
        expiration=now + policy.validity + _jitter(rrset.name, rrset.rdtype, policy.jitter),
    )


def _sign_changes(zone: Zone, previous: SignedZone, zsks: list[SigningKey], now: int,
                  policy: Policy) -> SignedZone:
    """``zone`` signed as ``previous`` plus the changes since its version: the changed
    RRsets, and the NSEC or NSEC3 records of the changed names and of the names before
    them in the chain (whose "next" moved).  Everything else is shared."""
    old, origin, delta = previous.zone, zone.origin, zone.delta
    keys = delta.keys if delta is not None else frozenset()
    touched = {name for name, _ in keys}
    sig_changes: dict[Key, dns.rrset.RRset | None] = {}
    to_sign: list[dns.rrset.RRset] = []
    # ``Zone.apply`` keeps the very same structures when nothing entered or left them.
    same_cuts = zone.cuts is old.cuts
    stable = same_cuts and zone.owners is old.owners  # no NSEC/NSEC3 owner came or went
    if same_cuts:  # every RRset not changed keeps its signature, or its lack of one
        for key in keys:
            rrset = zone.rrsets.get(key)
            if rrset is not None and _signed_in(zone, *key):
                to_sign.append(rrset)
            elif key in previous.rrsigs:
                sig_changes[key] = None
    else:
        for name, rdtype in keys:  # a delegation made or undone: its subtree changes sides
            if rdtype == NS and name != origin and (name in old.cuts) != (name in zone.cuts):
                touched.update(old.owners_below(name))
                touched.update(zone.owners_below(name))
        for name in touched:
            for rdtype in set(old.types_at(name)) | set(zone.types_at(name)):
                key = (name, rdtype)
                rrset = zone.rrsets.get(key)
                if rrset is None or not _signed_in(zone, name, rdtype):
                    if key in previous.rrsigs:
                        sig_changes[key] = None
                elif key in keys or key not in previous.rrsigs:
                    to_sign.append(rrset)
    ttl = _negative_ttl(zone)
    nsec, chain = previous.nsec, previous.chain
    nsec3, nsec3_chain = previous.nsec3, previous.nsec3_chain
    if previous.nsec3:
        candidates = set(touched)
        if not stable:  # names came or went, or a name above a changed one changed sides
            candidates.update(delta.names if delta is not None else ())
            for name in touched:
                candidates.update(enclosing(name, origin))
        nsec3_changes, nsec3_chain = _chain_changes(
            nsec3, nsec3_chain, {previous.hashed(c): c for c in candidates}, stable,
            lambda name: _nsec3_owner(zone, name),
            lambda name: _bitmap(True, _nsec3_types(zone, name, previous.extra)),
            _nsec3_make, _nsec3_next, ttl)
        nsec3 = nsec3.evolve(nsec3_changes.items())
        changed = nsec3_changes
        rdtype = dns.rdatatype.NSEC3
    else:
        nsec_changes, chain = _chain_changes(
            nsec, chain, {name: name for name in touched}, stable,
            lambda name: _authoritative(zone, name),
            lambda name: _bitmap(False, _nsec_types(zone, name, previous.extra)),
            _nsec_make, lambda owner: owner, ttl)
        nsec = nsec.evolve(nsec_changes.items())
        changed = nsec_changes
        rdtype = dns.rdatatype.NSEC
    for owner, record in changed.items():
        if record is None:
            sig_changes[(owner, rdtype)] = None
        else:
            to_sign.append(record)
    refresh_at = previous.refresh_at
    for rrset in to_sign:
        sigs = [_sign(rrset, key, origin, now, policy) for key in zsks]
        refresh_at = min([refresh_at, *(sig.expiration - policy.refresh for sig in sigs)])
        sig_changes[(rrset.name, rrset.rdtype)] = rrset_of(rrset.name, rrset.ttl, sigs)
    return SignedZone(zone, previous.dnskey, previous.rrsigs.evolve(sig_changes.items()),
                      nsec, chain, refresh_at, previous.extra, nsec3, nsec3_chain,
                      previous.signers, frozenset(changed), previous.token)


def _chain_changes(
    records: PMap[dns.name.Name, dns.rrset.RRset], chain: SortedSeq[dns.name.Name],
    candidates: Mapping[dns.name.Name, dns.name.Name], stable: bool,
    belongs: Callable[[dns.name.Name], bool],
    bitmap: Callable[[dns.name.Name], dns.rdtypes.util.Bitmap],
    make: Callable[[Any, Any], Any], next_field: Callable[[dns.name.Name], Any], ttl: int,
) -> tuple[dict[dns.name.Name, dns.rrset.RRset | None], SortedSeq[dns.name.Name]]:
    """The NSEC or NSEC3 records that change, and the new chain.

    :param candidates: chain owner -> the zone name it stands for, for every name whose
        place in the chain or type bitmap may have changed.
    :param stable: no owner enters or leaves the chain (so each record keeps its next
        owner, and only the candidates' bitmaps may change).
    :param belongs: whether a zone name has a record in the new version.
    :param bitmap: the type bitmap of a zone name's record.
    :param make: a record's rdata from its next-owner field and its bitmap (or windows).
    :param next_field: the next-owner field that names a chain owner.
    """
    changes: dict[dns.name.Name, dns.rrset.RRset | None] = {}
    if stable:  # the usual change (records of existing names): no search of the chain
        for owner, name in candidates.items():
            old = records.get(owner)
            if old is None:  # not in the chain, and stays out
                continue
            rdata, types = old[0], bitmap(name)
            if old.ttl != ttl or rdata.windows != tuple(types.windows):
                changes[owner] = rrset_of(owner, ttl, [make(rdata.next, types)])
        return changes, chain
    moved: list[dns.name.Name] = []
    redo: dict[dns.name.Name, None] = {}  # the owners to remake, in the new chain
    for owner, name in candidates.items():
        was, now = owner in records, belongs(name)
        if was and not now:
            chain = chain.remove(owner)
            changes[owner] = None
            moved.append(owner)
        elif now and not was:
            chain = chain.insert(owner)
            moved.append(owner)
        if now:
            redo[owner] = None
    for owner in moved:
        redo[chain.before(owner)] = None
    for owner in redo:
        old = records.get(owner)
        stands_for = candidates.get(owner)
        if stands_for is not None:
            rdata = make(next_field(chain.after(owner)), bitmap(stands_for))
        else:  # a neighbour of a name that came or went: the same bitmap, a new next owner
            assert old is not None
            rdata = make(next_field(chain.after(owner)), old[0].windows)
        if old is None or old.ttl != ttl or not _same_denial(old[0], rdata):
            changes[owner] = rrset_of(owner, ttl, [rdata])
    return changes, chain


def _nsec3_chain(zone: Zone, names: list[dns.name.Name], extra: Mapping[Key, dns.rrset.RRset],
                 ttl: int) -> dict[dns.name.Name, dns.rrset.RRset]:
    """NSEC3 records (RFC 5155 section 7.1) for every authoritative name and empty non-terminal."""
    origin = zone.origin
    owners = set(names)
    for name in names:  # empty non-terminals between the apex and each name get one too
        owners.update(enclosing(name, origin))
    entries = sorted((dns.name.Name((nsec3_label(name).encode(), *origin.labels)), name)
                     for name in owners)
    out: dict[dns.name.Name, dns.rrset.RRset] = {}
    for index, (owner, name) in enumerate(entries):
        following = entries[(index + 1) % len(entries)][0]
        out[owner] = _nsec3_rrset(owner, following, _nsec3_types(zone, name, extra), ttl)
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
    if old_rrset is None or old_sigs is None or not _same(old_rrset, rrset):
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
