"""One RFC 6962 log: chain checks, sequencing, tree heads and the read API. Pure.

The log is driven from outside (the node's event loop, or a test): ``check``
turns an ``add-chain`` request into an entry (or a 400), ``sequence(now)``
numbers what is pending, stores it, signs the new tree head and returns the
SCTs, in that order; reads answer from storage and the in-memory tree.

Storage is reached through :class:`LogStore`, whose contract is written on
the SQLite implementation (``trustchain.storage.ct``).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtensionOID

from trustchain.ct import tiles
from trustchain.ct.merkle import EMPTY_ROOT
from trustchain.ct.note import Ed25519Signer
from trustchain.ct.precert import (
    AKI_OID,
    POISON_OID,
    PrecertError,
    extension_element,
    remove_poison,
)
from trustchain.ct.sequencer import Batch, Sequenced, Sequencer, identity
from trustchain.ct.structs import (
    SCT,
    Entry,
    EntryType,
    TreeHead,
    log_id,
    merkle_tree_leaf,
    sign_sct,
    timestamped_entry,
)
from trustchain.errors import RemoteError

MAX_CHAIN = 10
#: ExtendedKeyUsage of a Precertificate Signing Certificate (RFC 6962 section 3.1).
PRECERT_SIGNING = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.4")
MAX_CERT_BYTES = 64 * 1024
#: How many verified CA links _check_chain remembers.
VERIFIED_LINKS = 4096
#: get-entries answers at most this many entries (clients page).
PAGE_LIMIT = 256
#: What ``cryptography`` raises for a certificate it cannot take: when loading it, or
#: lazily, at the first use of a field (a key off its curve, an unknown algorithm,
#: duplicate or undecodable extensions).
UNDECODABLE = (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion,
               x509.DuplicateExtension, x509.UnsupportedGeneralNameType)


class BadSubmission(RemoteError):
    """The request is invalid for this log (answered with HTTP 400)."""


class LogStore(Protocol):
    def append(self, batch: Batch, chains: dict[int, list[bytes]],
               scts: dict[int, bytes]) -> None: ...
    def entries(self, start: int = 0,
                end: int | None = None) -> list[tuple[Sequenced, list[bytes]]]: ...
    def tree_head(self) -> TreeHead | None: ...
    def save_tree_head(self, head: TreeHead) -> None: ...
    def sct(self, index: int) -> bytes | None: ...


@dataclass(frozen=True)
class Submission:
    entry: Entry
    chain: list[bytes]  # DER, leaf first, as submitted (for get-entries extra_data)
    index: int | None  # already in the log


@dataclass(frozen=True)
class Issued:
    """A newly sequenced entry: its index, its identity and its SCT."""

    index: int
    identity: bytes
    sct: SCT


@functools.lru_cache(maxsize=VERIFIED_LINKS)
def _is_ca(cert: x509.Certificate) -> bool:
    """basicConstraints cA (remembered: every submission repeats its issuers).

    :raises x509.ExtensionNotFound: if the certificate has no basicConstraints.
    """
    return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


#: Links (child DER, parent DER) whose signature verified, shared by every log of
#: the process: verification is a pure function of those bytes, nearly every
#: submission repeats its intermediate-to-root link, and a CA's precertificate
#: goes to each of this node's logs in turn.  Bounded (LRU).
_VERIFIED_LINKS: OrderedDict[tuple[bytes, bytes], None] = OrderedDict()


def _verify_link(child: x509.Certificate, parent: x509.Certificate,
                 key: tuple[bytes, bytes]) -> None:
    """``child`` is signed by ``parent`` (raises otherwise); ``key``: their DER."""
    if key in _VERIFIED_LINKS:
        _VERIFIED_LINKS.move_to_end(key)
        return
    child.verify_directly_issued_by(parent)
    _VERIFIED_LINKS[key] = None
    if len(_VERIFIED_LINKS) > VERIFIED_LINKS:
        _VERIFIED_LINKS.popitem(last=False)


#: Precertificate entries already derived (TBS without poison, issuer key hash), by the
#: chain's DER: a CA's precertificate reaches each of this node's logs in turn.
_PRECERT_ENTRIES: OrderedDict[tuple[bytes, ...], Entry] = OrderedDict()


def _remembered_precert_entry(certs: list[x509.Certificate], ders: list[bytes],
                              derive: Callable[[list[x509.Certificate]], Entry]) -> Entry:
    key = tuple(ders)
    entry = _PRECERT_ENTRIES.get(key)
    if entry is None:
        entry = _PRECERT_ENTRIES[key] = derive(certs)  # raises for a bad precertificate
        if len(_PRECERT_ENTRIES) > 1024:
            _PRECERT_ENTRIES.popitem(last=False)
    return entry


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass(frozen=True)
class ExpiryRange:
    """The certificates a log shard accepts, by notAfter: ``start <= notAfter < end``.

    Operators shard logs by expiry (Let's Encrypt's Oak 2026h1, 2026h2, ...)
    so that a shard can be frozen and retired once everything in it has
    expired.  ``None`` leaves that side open.
    """

    start: datetime | None = None
    end: datetime | None = None

    def __post_init__(self) -> None:
        for bound in (self.start, self.end):
            if bound is not None and bound.tzinfo is None:
                raise ValueError("expiry bounds need a time zone")
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ValueError("an expiry range must start before it ends")

    def __contains__(self, not_after: datetime) -> bool:
        return ((self.start is None or self.start <= not_after)
                and (self.end is None or not_after < self.end))

    def __str__(self) -> str:
        start = self.start.isoformat() if self.start else "any time"
        end = self.end.isoformat() if self.end else "any later time"
        return f"from {start} until before {end}"


UNSHARDED = ExpiryRange()


@dataclass(frozen=True)
class Checked:
    """A submission that passed :func:`check_submission`: its entry and extra data."""

    entry: Entry
    extra: list[bytes]  # DER: the chain after the leaf (get-entries extra_data)


@functools.lru_cache(maxsize=16)
def _anchors(roots: tuple[bytes, ...]) -> list[x509.Certificate]:
    return [x509.load_der_x509_certificate(der) for der in roots]


def check_submission(chain_b64: Sequence[str], roots: tuple[bytes, ...],
                     expiry: ExpiryRange, precert: bool = False) -> Checked:
    """Validate an ``add-chain`` (or ``add-pre-chain``) body up to one of ``roots`` (DER).

    Pure (a function of its arguments), so it can run in a worker process.
    A precertificate must carry the critical poison extension and be signed
    by the CA whose certificate follows it, or by a Precertificate Signing
    Certificate that this CA certified directly; its entry is the
    TBSCertificate without the poison (and, for a PSC, with the CA as
    issuer and authority key) and the hash of the CA's key.

    :raises BadSubmission: naming what is wrong.
    """
    if not 1 <= len(chain_b64) <= MAX_CHAIN:
        raise BadSubmission(f"a chain has 1 to {MAX_CHAIN} certificates")
    try:
        ders = [base64.b64decode(c, validate=True) for c in chain_b64]
    except (binascii.Error, ValueError):
        raise BadSubmission("chain entries must be base64 DER certificates") from None
    if any(len(d) > MAX_CERT_BYTES for d in ders):
        raise BadSubmission("a certificate is too large")
    try:
        certs = [x509.load_der_x509_certificate(d) for d in ders]
    except UNDECODABLE:
        raise BadSubmission("a chain entry does not parse as a certificate") from None
    not_after = certs[0].not_valid_after_utc
    if not_after not in expiry:
        raise BadSubmission(f"this log accepts certificates expiring {expiry}; "
                            f"this one expires at {not_after.isoformat()}")
    _check_chain(certs, ders, _anchors(roots), roots)
    try:
        if precert:
            # PrecertChainEntry: the precertificate, then its chain
            return Checked(_remembered_precert_entry(certs, ders, _precert_entry), ders)
        if _has_poison(certs[0]):
            raise BadSubmission("a precertificate goes to add-pre-chain")
    except UNDECODABLE as exc:
        raise BadSubmission(f"a certificate in the chain does not decode: {exc}") from None
    return Checked(Entry(EntryType.X509, ders[0]), ders[1:])


@functools.lru_cache(maxsize=256)
def issuer_key_hash(issuer: x509.Certificate) -> bytes:
    """SHA-256 of the issuer's SubjectPublicKeyInfo (a precert entry's issuer_key_hash)."""
    spki = issuer.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).digest()


def _precert_entry(certs: list[x509.Certificate]) -> Entry:
    try:
        poison = certs[0].extensions.get_extension_for_class(x509.PrecertPoison)
    except x509.ExtensionNotFound:
        raise BadSubmission("add-pre-chain needs a precertificate (poison extension)") \
            from None
    if not poison.critical:
        raise BadSubmission("the poison extension must be critical")
    if len(certs) < 2:
        raise BadSubmission("a precertificate needs its issuer in the chain")
    issuer = certs[1]
    try:
        usage = issuer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    rewrite: dict[str, bytes] = {}
    if usage is not None and PRECERT_SIGNING in usage:
        # RFC 6962 3.1/3.2: a Precertificate Signing Certificate, directly
        # certified by the CA that will issue the certificate; the entry
        # names that CA, as the final certificate will.
        if len(certs) < 3:
            raise BadSubmission("a precertificate signing certificate needs its CA "
                                "in the chain")
        psc, issuer = issuer, certs[2]
        try:
            aki = extension_element(psc.tbs_certificate_bytes, AKI_OID)
        except PrecertError as exc:
            raise BadSubmission(f"the precertificate signing certificate: {exc}") \
                from None
        rewrite["issuer"] = psc.issuer.public_bytes()
        if aki is not None:
            rewrite["authority_key_id"] = aki
    try:
        tbs = remove_poison(certs[0].tbs_certificate_bytes, **rewrite)
    except PrecertError as exc:
        raise BadSubmission(str(exc)) from None
    return Entry(EntryType.PRECERT, tbs, issuer_key_hash(issuer))


def _check_chain(certs: list[x509.Certificate], ders: list[bytes],
                 roots: list[x509.Certificate], root_ders: tuple[bytes, ...]) -> None:
    try:
        for i in range(len(certs) - 1):
            parent = certs[i + 1]
            if not _is_ca(parent):
                raise BadSubmission(f"{parent.subject.rfc4514_string()} is not a CA")
            _verify_link(certs[i], parent, (ders[i], ders[i + 1]))
        last = certs[-1]
        for anchor, anchor_der in zip(roots, root_ders, strict=True):
            if ders[-1] == anchor_der:
                return
            try:
                _verify_link(last, anchor, (ders[-1], anchor_der))
                return
            except (ValueError, InvalidSignature, TypeError):
                continue
    except x509.ExtensionNotFound:
        raise BadSubmission("a CA in the chain has no basicConstraints") from None
    except (InvalidSignature, *UNDECODABLE) as exc:
        raise BadSubmission(f"the chain does not verify: {exc}") from None
    raise BadSubmission("the chain does not lead to a root this log accepts")


class Log:
    def __init__(self, name: str, key: ec.EllipticCurvePrivateKey, store: LogStore,
                 roots: Sequence[x509.Certificate], origin: str | None = None,
                 expiry: ExpiryRange = UNSHARDED, note_signer: Ed25519Signer | None = None
                 ) -> None:
        self.name = name
        #: Also signs checkpoints (Ed25519, signed-note), for witnesses.
        self.note_signer = note_signer
        self._empty: TreeHead | None = None
        #: Which notAfter dates this log (shard) accepts.
        self.expiry = expiry
        #: The checkpoint origin line (static-ct-api: the submission prefix
        #: without scheme or trailing slash).
        self.origin = origin or name
        self._key = key
        self._store = store
        #: The accepted roots, DER.
        self.roots = tuple(r.public_bytes(Encoding.DER) for r in roots)
        self.log_id = log_id(key.public_key())
        self._sequencer = Sequencer()
        self._chains: dict[bytes, list[bytes]] = {}
        #: Every issuer a stored entry refers to, by SHA-256 of its DER.
        self._issuers: dict[bytes, bytes] = {}
        #: Data-tile leaves of the entries sequenced here since the last full tile
        #: began, by index: the partial tile is rewritten at every new head, and
        #: reading its entries back from storage each time cost more than keeping them.
        self._recent_leaves: dict[int, bytes] = {}
        for sequenced, chain in store.entries():
            self._sequencer.restore(sequenced.index, sequenced.entry, sequenced.leaf_hash)
            self._remember_issuers(sequenced.entry, chain)
        tree = self._sequencer.tree
        head = store.tree_head()
        if head is not None and (head.size > tree.size or tree.root(head.size) != head.root):
            raise RemoteError(f"log {name}: stored entries do not match the signed tree head")
        self._head = head

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._key.public_key()

    # --- submissions ----------------------------------------------------------

    def check(self, chain_b64: Sequence[str], *, precert: bool = False) -> Submission:
        """Validate an ``add-chain`` (or ``add-pre-chain``) body and take it in.

        :func:`check_submission` with this log's roots and expiry range, then
        :meth:`accept`.

        :raises BadSubmission: naming what is wrong.
        """
        return self.accept(check_submission(chain_b64, roots=self.roots, expiry=self.expiry,
                                            precert=precert))

    def accept(self, checked: Checked) -> Submission:
        """Queue a checked submission for sequencing (or find it already in the log)."""
        index = self._sequencer.submit(checked.entry)
        if index is None:
            self._chains[identity(checked.entry)] = checked.extra
        return Submission(checked.entry, checked.extra, index)

    # --- sequencing -----------------------------------------------------------

    @property
    def pending(self) -> int:
        return self._sequencer.pending

    def sequence(self, now_ms: int) -> dict[int, SCT]:
        """Number the pending entries, store them, sign the new head; return SCTs by index."""
        return {issued.index: issued.sct for issued in self.integrate(now_ms)}

    def integrate(self, now_ms: int) -> list[Issued]:
        """:meth:`sequence`, answering with each entry's identity (what its submitter waits on)."""
        batch = self._sequencer.step(now_ms)
        if batch is None:
            return []
        keys = [identity(s.entry) for s in batch.entries]
        scts = [sign_sct(self._key, s.timestamp, s.entry, s.extensions, self.log_id)
                for s in batch.entries]
        chains = {s.index: self._chains.pop(key, []) for s, key in zip(batch.entries, keys,
                                                                         strict=True)}
        try:
            self._store.append(batch, chains, {s.index: sct.to_bytes()
                                               for s, sct in zip(batch.entries, scts, strict=True)})
            head = TreeHead(batch.tree_size, now_ms, batch.root).sign(self._key)
            self._store.save_tree_head(head)
        except Exception:
            self._sequencer.rollback(batch)
            raise
        self._head = head
        tile_start = batch.entries[0].index // tiles.TILE_WIDTH * tiles.TILE_WIDTH
        for old in [i for i in self._recent_leaves if i < tile_start]:
            del self._recent_leaves[old]
        for s in batch.entries:
            self._remember_issuers(s.entry, chains[s.index])
            self._recent_leaves[s.index] = _tile_leaf(s, chains[s.index])
        return [Issued(s.index, key, sct)
                for s, key, sct in zip(batch.entries, keys, scts, strict=True)]

    def _remember_issuers(self, entry: Entry, chain: list[bytes]) -> None:
        for der in _issuers_of(entry, chain):
            self._issuers.setdefault(hashlib.sha256(der).digest(), der)

    def sct(self, index: int) -> SCT:
        stored = self._store.sct(index)
        if stored is None:
            raise BadSubmission(f"no entry {index}")
        return SCT.from_bytes(stored)

    # --- reads (RFC 6962 section 4) --------------------------------------------

    def get_sth(self) -> dict[str, object]:
        head = self._head or self._empty_head()
        return {"tree_size": head.size, "timestamp": head.timestamp,
                "sha256_root_hash": _b64(head.root),
                "tree_head_signature": _b64(head.digitally_signed())}

    @property
    def tree_size(self) -> int:
        """The size of the latest signed tree head."""
        return self._head.size if self._head else 0

    def get_sth_consistency(self, first: int, second: int) -> dict[str, object]:
        if not 0 <= first <= second <= self.tree_size:
            raise BadSubmission(f"need 0 <= first <= second <= {self.tree_size}")
        proof = self._sequencer.tree.consistency_proof(first, second)
        return {"consistency": [_b64(p) for p in proof]}

    def get_proof_by_hash(self, leaf_hash_b64: str, tree_size: int) -> dict[str, object]:
        try:
            wanted = base64.b64decode(leaf_hash_b64, validate=True)
        except (binascii.Error, ValueError):
            raise BadSubmission("hash must be base64") from None
        if not 1 <= tree_size <= self.tree_size:
            raise BadSubmission(f"tree_size must be between 1 and {self.tree_size}")
        index = self._sequencer.by_hash.get(wanted)
        if index is None or index >= tree_size:
            raise BadSubmission("no such leaf in a tree of that size")
        proof = self._sequencer.tree.inclusion_proof(index, tree_size)
        return {"leaf_index": index, "audit_path": [_b64(p) for p in proof]}

    def get_entries(self, start: int, end: int) -> dict[str, object]:
        if not 0 <= start <= end or start >= self.tree_size:
            raise BadSubmission(f"need 0 <= start <= end and start < {self.tree_size}")
        end = min(end, self.tree_size - 1, start + PAGE_LIMIT - 1)
        return {"entries": [_entry_json(sequenced, chain)
                            for sequenced, chain in self._store.entries(start, end)]}

    def get_entry_and_proof(self, leaf_index: int, tree_size: int) -> dict[str, object]:
        if not 0 <= leaf_index < tree_size <= self.tree_size:
            raise BadSubmission(f"need 0 <= leaf_index < tree_size <= {self.tree_size}")
        (sequenced, chain), = self._store.entries(leaf_index, leaf_index)
        proof = self._sequencer.tree.inclusion_proof(leaf_index, tree_size)
        return {**_entry_json(sequenced, chain), "audit_path": [_b64(p) for p in proof]}

    # --- static-ct-api reads (c2sp.org/static-ct-api) ---------------------------

    def _empty_head(self) -> TreeHead:
        """The empty tree's head, signed once (ECDSA signatures differ each time: a
        checkpoint re-signed at every read could never be cosigned)."""
        if self._empty is None:
            self._empty = TreeHead(0, 0, EMPTY_ROOT).sign(self._key)
        return self._empty

    def checkpoint(self) -> str:
        head = self._head or self._empty_head()
        signer = self.note_signer
        return tiles.checkpoint(self.origin, head, self.log_id, None if signer is None
                                else lambda body: signer.sign(body).line())

    def tile(self, path: str) -> bytes:
        """:raises TileError: for a malformed path or a tile the signed tree does not cover."""
        tile = tiles.parse_tile_path(path)
        if tile.level is not None:
            return tiles.tile_hashes(self._sequencer.tree.levels, tile, self.tree_size)
        start = tile.index * tiles.TILE_WIDTH
        if start + tile.width > self.tree_size:
            raise tiles.TileError("that tile is not in the tree yet")
        recent = [self._recent_leaves.get(i) for i in range(start, start + tile.width)]
        if all(leaf is not None for leaf in recent):
            return b"".join(recent)  # type: ignore[arg-type]
        return b"".join(_tile_leaf(sequenced, chain)
                        for sequenced, chain in self._store.entries(start, start + tile.width - 1))

    def issuers(self) -> dict[bytes, bytes]:
        """Every issuer of a sequenced entry: SHA-256 fingerprint to DER."""
        return dict(self._issuers)

    def issuer(self, fingerprint_hex: str) -> bytes | None:
        try:
            fingerprint = bytes.fromhex(fingerprint_hex)
        except ValueError:
            return None
        # Only the lowercase hex the spec names; every file has one URL.
        return self._issuers.get(fingerprint) if fingerprint.hex() == fingerprint_hex else None

    def get_roots(self) -> dict[str, object]:
        return {"certificates": [_b64(der) for der in self.roots]}


def _has_poison(cert: x509.Certificate) -> bool:
    """Whether ``cert`` carries the CT poison: a walk over the extensions' DER,
    cheaper than having ``cryptography`` decode every extension's value."""
    try:
        return extension_element(cert.tbs_certificate_bytes, POISON_OID) is not None
    except PrecertError:  # no extensions field, or DER our walker does not take
        try:
            return any(ext.oid == ExtensionOID.PRECERT_POISON for ext in cert.extensions)
        except UNDECODABLE as exc:
            raise BadSubmission(f"the certificate's extensions do not parse: {exc}") from None


def _tile_leaf(sequenced: Sequenced, chain: list[bytes]) -> bytes:
    """The entry as a static-ct-api data tile holds it."""
    stamped = timestamped_entry(sequenced.timestamp, sequenced.entry, sequenced.extensions)
    precert = chain[0] if sequenced.entry.entry_type is EntryType.PRECERT else None
    return tiles.tile_leaf(stamped, precert, _issuers_of(sequenced.entry, chain))


def _issuers_of(entry: Entry, chain: list[bytes]) -> list[bytes]:
    """The issuers in a stored chain (a precertificate's chain starts with itself)."""
    return chain[1:] if entry.entry_type is EntryType.PRECERT else chain


def _entry_json(sequenced: Sequenced, chain: list[bytes]) -> dict[str, str]:
    """One entry as RFC 6962 section 4.6 lists it: ``leaf_input`` and ``extra_data``."""
    leaf = merkle_tree_leaf(sequenced.timestamp, sequenced.entry, sequenced.extensions)
    if sequenced.entry.entry_type is EntryType.PRECERT:  # PrecertChainEntry
        head, rest = chain[0], chain[1:]
        listed = b"".join(len(c).to_bytes(3, "big") + c for c in rest)
        extra = len(head).to_bytes(3, "big") + head + len(listed).to_bytes(3, "big") + listed
    else:  # X509ChainEntry's certificate_chain
        listed = b"".join(len(c).to_bytes(3, "big") + c for c in chain)
        extra = len(listed).to_bytes(3, "big") + listed
    return {"leaf_input": _b64(leaf), "extra_data": _b64(extra)}
