"""Tables owned by the DNS service: zones, their RRsets, and the change journal.

Contract: every write method commits before it returns (``synchronous=FULL``),
so a change acknowledged to a client survives a crash.  A change is applied
as one transaction: the RRsets that differ, the new serial and the journal
entry (kept for IXFR) are written together or not at all; a version made from
the stored one says which RRsets differ, so a change writes (and compares) only
those, whatever the size of the zone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from trustchain.dns.zone import Key, Secondary, Zone, same_rrset
from trustchain.errors import StorageError
from trustchain.storage.database import Database
from trustchain.storage.migrations import Migration, Schema

DNS_SCHEMA = Schema(
    "dns",
    (
        Migration(
            1,
            "zones, RRsets and the change journal",
            """
            CREATE TABLE dns_zones (
                origin TEXT PRIMARY KEY,
                serial INTEGER NOT NULL,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL
            ) STRICT;
            CREATE TABLE dns_rrsets (
                zone TEXT NOT NULL REFERENCES dns_zones (origin) ON DELETE CASCADE,
                owner_key TEXT NOT NULL,
                rdtype INTEGER NOT NULL,
                owner TEXT NOT NULL,
                ttl INTEGER NOT NULL,
                rdatas TEXT NOT NULL,
                PRIMARY KEY (zone, owner_key, rdtype)
            ) STRICT;
            CREATE TABLE dns_journal (
                id INTEGER PRIMARY KEY,
                zone TEXT NOT NULL REFERENCES dns_zones (origin) ON DELETE CASCADE,
                serial_from INTEGER NOT NULL,
                serial_to INTEGER NOT NULL,
                changed_at TEXT NOT NULL,
                removed TEXT NOT NULL,
                added TEXT NOT NULL
            ) STRICT;
            CREATE INDEX dns_journal_by_zone ON dns_journal (zone, id);
            """,
        ),
        Migration(
            2,
            "secondaries: who gets NOTIFY and may transfer, with which TSIG key",
            """
            CREATE TABLE dns_secondaries (
                zone TEXT NOT NULL REFERENCES dns_zones (origin) ON DELETE CASCADE,
                address TEXT NOT NULL,
                port INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
                key_name TEXT NOT NULL,
                PRIMARY KEY (zone, address, port)
            ) STRICT;
            """,
        ),
        Migration(
            3,
            "federated networks registered under the origin",
            """
            CREATE TABLE dns_networks (
                name TEXT PRIMARY KEY,
                zone TEXT NOT NULL,
                mode TEXT NOT NULL CHECK (mode IN ('hosted', 'delegated')),
                registered_at TEXT NOT NULL
            ) STRICT;
            """,
        ),
        Migration(
            4,
            "DNSSEC keys of each zone and their states",
            """
            CREATE TABLE dns_keys (
                zone TEXT NOT NULL REFERENCES dns_zones (origin) ON DELETE CASCADE,
                key_id TEXT NOT NULL,
                role TEXT NOT NULL CHECK (role IN ('ksk', 'zsk', 'csk')),
                algorithm INTEGER NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('published', 'active', 'retired', 'removed')),
                created_at TEXT NOT NULL,
                changed_at TEXT NOT NULL,
                PRIMARY KEY (zone, key_id)
            ) STRICT;
            """,
        ),
        Migration(
            5,
            "when the parent was seen to publish a KSK's DS",
            "ALTER TABLE dns_keys ADD COLUMN ds_published_at TEXT;",
        ),
        Migration(
            6,
            "per-zone DNSSEC choices",
            """
            CREATE TABLE dns_dnssec_policy (
                zone TEXT PRIMARY KEY,
                algorithm INTEGER NOT NULL CHECK (algorithm IN (13, 15)),
                csk INTEGER NOT NULL CHECK (csk IN (0, 1)),
                nsec3 INTEGER NOT NULL CHECK (nsec3 IN (0, 1))
            ) STRICT;
            """,
        ),
        Migration(
            7,
            "address blocks a federated network registered (its CA may certify addresses in them)",
            "ALTER TABLE dns_networks ADD COLUMN prefixes TEXT NOT NULL DEFAULT '[]';",
        ),
    ),
)



def _key(origin: dns.name.Name) -> str:
    return origin.to_text().lower()


def _row(zone_key: str, rrset: dns.rrset.RRset, owner: str | None = None,
         rdatas: list[str] | None = None) -> tuple[str, str, int, str, int, str]:
    """The ``dns_rrsets`` row; ``owner`` and ``rdatas``: the texts, if already made."""
    owner = rrset.name.to_text() if owner is None else owner
    rdatas = [r.to_text() for r in rrset] if rdatas is None else rdatas
    return (zone_key, owner.lower(), rrset.rdtype, owner, rrset.ttl, json.dumps(sorted(rdatas)))


def _lines(rrset: dns.rrset.RRset, owner: str, rdatas: list[str]) -> list[str]:
    """``rrset.to_text().splitlines()`` from texts already made (names are text in Python,
    label by label: making them once per change matters)."""
    head = (f"{owner} {rrset.ttl} {dns.rdataclass.to_text(rrset.rdclass)} "
            f"{dns.rdatatype.to_text(rrset.rdtype)} ")
    return [head + text for text in rdatas]


class SqliteZoneStore:
    """The zone store of a node (see :class:`trustchain.dns.service.DnsStore`)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def zones(self) -> list[Zone]:
        rows = self.db.conn.execute(
            "SELECT zone, owner, rdtype, ttl, rdatas FROM dns_rrsets ORDER BY zone"
        ).fetchall()
        grouped: dict[str, list[dns.rrset.RRset]] = {}
        for zone_key, owner, rdtype, ttl, rdatas in rows:
            grouped.setdefault(zone_key, []).append(dns.rrset.from_text_list(
                owner, ttl, dns.rdataclass.IN, dns.rdatatype.RdataType(rdtype), json.loads(rdatas)
            ))
        return [Zone.build(dns.name.from_text(k), rrsets) for k, rrsets in sorted(grouped.items())]

    def create(self, zone: Zone, now: datetime) -> None:
        key = _key(zone.origin)
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM dns_zones WHERE origin = ?", (key,)).fetchone():
                raise StorageError(f"zone {zone.origin} already exists")
            conn.execute(
                "INSERT INTO dns_zones (origin, serial, created_at, updated_at) VALUES (?, ?, ?, ?)",
                (key, zone.serial, now.isoformat(), now.isoformat()),
            )
            conn.executemany(
                "INSERT INTO dns_rrsets (zone, owner_key, rdtype, owner, ttl, rdatas) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [_row(key, r) for r in zone.rrsets.values()],
            )

    def replace(self, old: Zone, new: Zone, now: datetime) -> None:
        """Store ``new`` in place of ``old`` (which must be what is stored).

        A version made from ``old`` (``Zone.apply``) names the RRsets it changed, and
        only those are compared and written: the cost of the change, not of the zone.
        Otherwise every RRset of both is compared.
        """
        key = _key(old.origin)
        removed: list[str] = []
        added: list[str] = []
        changed = new.changes_since(old)
        keys: Iterable[Key] = changed if changed is not None else set(old.rrsets) | set(new.rrsets)
        with self.db.transaction() as conn:
            stored = conn.execute("SELECT serial FROM dns_zones WHERE origin = ?", (key,)).fetchone()
            if stored is None or stored[0] != old.serial:
                raise StorageError(f"zone {old.origin} changed meanwhile; retry")
            for name, rdtype in keys:
                before, after = old.rrsets.get((name, rdtype)), new.rrsets.get((name, rdtype))
                if same_rrset(before, after):
                    continue
                if before is not None:
                    owner = before.name.to_text()
                    removed.extend(_lines(before, owner, [r.to_text() for r in before]))
                    conn.execute(
                        "DELETE FROM dns_rrsets WHERE zone = ? AND owner_key = ? AND rdtype = ?",
                        (key, owner.lower(), rdtype),  # the key's name, case aside
                    )
                if after is not None:
                    owner = after.name.to_text()
                    texts = [r.to_text() for r in after]
                    added.extend(_lines(after, owner, texts))
                    conn.execute(
                        "INSERT INTO dns_rrsets (zone, owner_key, rdtype, owner, ttl, rdatas) "
                        "VALUES (?, ?, ?, ?, ?, ?)", _row(key, after, owner, texts),
                    )
            conn.execute(
                "UPDATE dns_zones SET serial = ?, updated_at = ? WHERE origin = ?",
                (new.serial, now.isoformat(), key),
            )
            conn.execute(
                "INSERT INTO dns_journal (zone, serial_from, serial_to, changed_at, removed, added) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (key, old.serial, new.serial, now.isoformat(), json.dumps(removed),
                 json.dumps(added)),
            )

    def delete(self, origin: dns.name.Name) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM dns_dnssec_policy WHERE zone = ?", (_key(origin),))
            deleted = conn.execute("DELETE FROM dns_zones WHERE origin = ?", (_key(origin),))
            if deleted.rowcount == 0:
                raise StorageError(f"no zone {origin}")

    def journal(self, origin: dns.name.Name) -> list[tuple[int, int, list[str], list[str]]]:
        """(serial_from, serial_to, removed, added) for every change, oldest first."""
        rows = self.db.conn.execute(
            "SELECT serial_from, serial_to, removed, added FROM dns_journal WHERE zone = ? "
            "ORDER BY id", (_key(origin),),
        ).fetchall()
        return [(a, b, json.loads(r), json.loads(d)) for a, b, r, d in rows]

    def add_secondary(self, secondary: Secondary) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO dns_secondaries (zone, address, port, key_name) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (zone, address, port) DO UPDATE SET key_name = excluded.key_name",
                (_key(secondary.zone), secondary.address, secondary.port, secondary.key_name),
            )

    def remove_secondary(self, zone: dns.name.Name, address: str, port: int) -> bool:
        with self.db.transaction() as conn:
            cursor = conn.execute(
                "DELETE FROM dns_secondaries WHERE zone = ? AND address = ? AND port = ?",
                (_key(zone), address, port),
            )
        return cursor.rowcount > 0

    def secondaries(self) -> list[Secondary]:
        rows = self.db.conn.execute(
            "SELECT zone, address, port, key_name FROM dns_secondaries ORDER BY zone, address, port"
        ).fetchall()
        return [Secondary(dns.name.from_text(z), a, p, k) for z, a, p, k in rows]

    def add_network(self, name: str, zone: dns.name.Name, mode: str, now: datetime,
                    prefixes: list[str] | None = None) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO dns_networks (name, zone, mode, registered_at, prefixes) "
                "VALUES (?, ?, ?, ?, ?)",
                (name, _key(zone), mode, now.isoformat(), json.dumps(prefixes or [])),
            )

    def network(self, name: str) -> dict[str, Any] | None:
        row = self.db.conn.execute(
            "SELECT name, zone, mode, registered_at, prefixes FROM dns_networks WHERE name = ?",
            (name,)).fetchone()
        if row is None:
            return None
        n, z, m, t, p = row
        return {"name": n, "zone": z, "mode": m, "registered_at": t, "prefixes": json.loads(p)}

    def networks(self) -> list[dict[str, Any]]:
        rows = self.db.conn.execute(
            "SELECT name, zone, mode, registered_at, prefixes FROM dns_networks ORDER BY name"
        ).fetchall()
        return [{"name": n, "zone": z, "mode": m, "registered_at": t, "prefixes": json.loads(p)}
                for n, z, m, t, p in rows]

    def add_key(self, zone: dns.name.Name, key_id: str, role: str, algorithm: int, state: str,
                now: datetime) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO dns_keys (zone, key_id, role, algorithm, state, created_at, changed_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (_key(zone), key_id, role, algorithm, state, now.isoformat(), now.isoformat()),
            )

    def keys(self, zone: dns.name.Name) -> list[dict[str, object]]:
        rows = self.db.conn.execute(
            "SELECT key_id, role, algorithm, state, created_at, changed_at, ds_published_at "
            "FROM dns_keys WHERE zone = ? ORDER BY created_at, key_id", (_key(zone),),
        ).fetchall()
        columns = ("key_id", "role", "algorithm", "state", "created_at", "changed_at",
                   "ds_published_at")
        return [dict(zip(columns, row, strict=True)) for row in rows]

    def set_key_state(self, zone: dns.name.Name, key_id: str, state: str, now: datetime) -> None:
        with self.db.transaction() as conn:
            conn.execute("UPDATE dns_keys SET state = ?, changed_at = ? WHERE zone = ? AND key_id = ?",
                         (state, now.isoformat(), _key(zone), key_id))

    def set_ds_published(self, zone: dns.name.Name, key_id: str, now: datetime) -> None:
        with self.db.transaction() as conn:
            conn.execute("UPDATE dns_keys SET ds_published_at = ? WHERE zone = ? AND key_id = ?",
                         (now.isoformat(), _key(zone), key_id))

    def set_dnssec_policy(self, zone: dns.name.Name, algorithm: int, csk: bool,
                          nsec3: bool) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO dns_dnssec_policy (zone, algorithm, csk, nsec3) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (zone) DO UPDATE SET algorithm = excluded.algorithm, "
                "csk = excluded.csk, nsec3 = excluded.nsec3",
                (_key(zone), algorithm, int(csk), int(nsec3)),
            )

    def dnssec_policy(self, zone: dns.name.Name) -> tuple[int, bool, bool]:
        """(algorithm, CSK instead of KSK+ZSK, NSEC3 instead of NSEC); defaults 13, no, no."""
        row = self.db.conn.execute(
            "SELECT algorithm, csk, nsec3 FROM dns_dnssec_policy WHERE zone = ?", (_key(zone),)
        ).fetchone()
        return (int(row[0]), bool(row[1]), bool(row[2])) if row else (13, False, False)
