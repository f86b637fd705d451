"""The services' key sources, bound to the node's key store.

The DNS core asks for TSIG secrets and DNSSEC keys through small protocols
(:class:`trustchain.dns.service.SecretStore`, :class:`~trustchain.dns.service.KeySource`);
these classes answer them from the encrypted key store and the DNS tables.
The clock is passed in, so what they record is as testable as the cores.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime

import dns.name
from cryptography.hazmat.primitives.asymmetric import ec

from trustchain.dns.dnssec import Role as DnssecRole
from trustchain.dns.dnssec import SigningKey, make_dnskey
from trustchain.dns.rollover import KeyState as RolloverKey
from trustchain.dns.rollover import State as KeyState
from trustchain.dns.rollover import Step as RolloverStep
from trustchain.errors import KeyNotFoundError
from trustchain.keystore import KeyStore, KeyType
from trustchain.storage.dns import SqliteZoneStore

Clock = Callable[[], datetime]


class KeystoreSecrets:
    """TSIG secrets in the node's key store (purpose ``tsig:<name>``)."""

    def __init__(self, keystore: KeyStore, clock: Clock) -> None:
        self._keystore = keystore
        self._clock = clock

    def secret(self, name: str) -> bytes | None:
        try:
            return self._keystore.secret(self._keystore.active(f"tsig:{name}").id)
        except KeyNotFoundError:
            return None

    def create_secret(self, name: str) -> bytes:
        secret = secrets.token_bytes(32)
        self._keystore.add_secret(secret, f"tsig:{name}", self._clock())
        return secret


class KeystoreDnssecKeys:
    """DNSSEC keys in the node's key store, their states in ``dns_keys``.

    A zone's first signing creates its keys as its policy says: a KSK and a
    ZSK (or one CSK), algorithm 13 (or 15).
    """

    def __init__(self, keystore: KeyStore, store: SqliteZoneStore, clock: Clock) -> None:
        self._keystore = keystore
        self._store = store
        self._clock = clock
        self._cache: dict[str, SigningKey] = {}

    def _rows(self, origin: dns.name.Name) -> list[dict[str, object]]:
        rows = self._store.keys(origin)
        if not rows:
            _, csk, _ = self._store.dnssec_policy(origin)
            roles = ["csk"] if csk else ["ksk", "zsk"]
            self.apply(origin, [RolloverStep(role, KeyState.ACTIVE) for role in roles])
            rows = self._store.keys(origin)
        return rows

    def managed(self, origin: dns.name.Name) -> list[tuple[RolloverKey, SigningKey | None]]:
        """Every key of the zone with its state, and its signing key unless removed."""
        def seconds(value: object) -> int:
            return int(datetime.fromisoformat(str(value)).timestamp())

        out: list[tuple[RolloverKey, SigningKey | None]] = []
        for row in self._rows(origin):
            key_id = str(row["key_id"])
            state = RolloverKey(key_id, str(row["role"]), KeyState(str(row["state"])),
                                seconds(row["changed_at"]),
                                seconds(row["ds_published_at"]) if row["ds_published_at"]
                                else None)
            if state.state is KeyState.REMOVED:
                out.append((state, None))
                continue
            cached = self._cache.get(key_id)
            if cached is None:
                role = DnssecRole(state.role)
                private = self._keystore.private_key(key_id)
                cached = SigningKey(role, private, make_dnskey(private, int(str(row["algorithm"])),
                                                                role))
                self._cache[key_id] = cached
            out.append((state, SigningKey(cached.role, cached.private_key, cached.dnskey,
                                          active=state.state is KeyState.ACTIVE)))
        return out

    def apply(self, origin: dns.name.Name, steps: list[RolloverStep]) -> None:
        now = self._clock()
        algorithm, _, _ = self._store.dnssec_policy(origin)
        key_type = KeyType.ED25519 if algorithm == 15 else KeyType.ECDSA_P256
        for step in steps:
            if step.key_id is None:
                record = self._keystore.generate(
                    key_type, f"dnssec:{origin.to_text()}:{step.role}", now)
                self._store.add_key(origin, record.id, step.role, algorithm, step.state.value,
                                    now)
            else:
                self._store.set_key_state(origin, step.key_id, step.state.value, now)

    def mark_ds_published(self, origin: dns.name.Name, key_id: str) -> None:
        self._store.set_ds_published(origin, key_id, self._clock())


class KeystoreCaKeys:
    """The CA's keys in the node's key store (:class:`trustchain.ca.store.CaKeys`): the
    genesis root key, unless kept offline, and the network intermediates' keys."""

    def __init__(self, keystore: KeyStore) -> None:
        self._keystore = keystore

    def key_id(self, purpose: str) -> str | None:
        try:
            return self._keystore.active(purpose).id
        except KeyNotFoundError:
            return None

    def generate(self, purpose: str, now: datetime) -> tuple[str, ec.EllipticCurvePublicKey]:
        record = self._keystore.generate(KeyType.ECDSA_P256, purpose, now)
        public = record.load_public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        return record.id, public
