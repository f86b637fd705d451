"""In-memory key and secret sources for the DNS service, on a scripted clock.

They behave as the node's key-store bindings (``trustchain/wiring/keys.py``)
do: a zone's first signing creates its keys as its policy says.  Keys are
derived from a counter, so DS records are the same on every run.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import datetime

import dns.name
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from trustchain.dns.dnssec import Role, SigningKey, make_dnskey
from trustchain.dns.rollover import KeyState, State, Step


class MemoryKeys:
    """DNSSEC keys and their rollover states, by zone."""

    def __init__(self, policies: Callable[[dns.name.Name], tuple[int, bool, bool]],
                 clock: Callable[[], datetime]) -> None:
        self._policies = policies
        self._clock = clock
        self._numbers = itertools.count(1)
        self.states: dict[dns.name.Name, dict[str, KeyState]] = {}
        self._keys: dict[str, SigningKey] = {}

    def managed(self, origin: dns.name.Name) -> list[tuple[KeyState, SigningKey | None]]:
        if origin not in self.states:
            _, csk, _ = self._policies(origin)
            self.apply(origin, [Step(role, State.ACTIVE) for role in
                                (["csk"] if csk else ["ksk", "zsk"])])
        out: list[tuple[KeyState, SigningKey | None]] = []
        for state in self.states[origin].values():
            key = self._keys[state.key_id]
            out.append((state, None if state.state is State.REMOVED else SigningKey(
                key.role, key.private_key, key.dnskey, active=state.state is State.ACTIVE)))
        return out

    def apply(self, origin: dns.name.Name, steps: list[Step]) -> None:
        now = int(self._clock().timestamp())
        zone = self.states.setdefault(origin, {})
        for step in steps:
            key_id = step.key_id
            if key_id is None:
                number = next(self._numbers)
                key_id = f"k{number}"
                algorithm, _, _ = self._policies(origin)
                private = (ed25519.Ed25519PrivateKey.from_private_bytes(bytes([number]) * 32)
                           if algorithm == 15 else ec.derive_private_key(number, ec.SECP256R1()))
                role = Role(step.role)
                self._keys[key_id] = SigningKey(role, private, make_dnskey(private, algorithm,
                                                                           role))
            old = zone.get(key_id)
            zone[key_id] = KeyState(key_id, step.role, step.state, now,
                                    old.ds_published if old else None)

    def mark_ds_published(self, origin: dns.name.Name, key_id: str) -> None:
        old = self.states[origin][key_id]
        self.states[origin][key_id] = KeyState(old.key_id, old.role, old.state, old.since,
                                               int(self._clock().timestamp()))


class MemorySecrets:
    """TSIG secrets by name; each new one is the name's bytes, padded."""

    def __init__(self) -> None:
        self.secrets: dict[str, bytes] = {}

    def secret(self, name: str) -> bytes | None:
        return self.secrets.get(name)

    def create_secret(self, name: str) -> bytes:
        self.secrets[name] = name.encode().ljust(32, b"-")[:32]
        return self.secrets[name]


class Notifications:
    """A notifier that records what it was asked to send."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[str]]] = []

    def __call__(self, zone, secondaries, keyring) -> None:  # type: ignore[no-untyped-def]
        self.sent.append((zone.origin.to_text(), [s.address for s in secondaries]))
