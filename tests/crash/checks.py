"""What must hold each time the killed node is back: nothing it acknowledged is lost.

Run on the restarted node before any new load: every acknowledged CT entry is at its
index with the same SCT (in the database; the last life's also by an inclusion proof
from the API), so is every SCT embedded in an acknowledged certificate; each log's head
is consistent with the last head a client saw (a consistency proof, or the same root at
the same size); every acknowledged certificate is stored and issued; every acknowledged
record is listed (the last life's also answered over DNS) with a zone serial at least
the one acknowledged; ``PRAGMA integrity_check`` is ok; ``trustchain audit verify``
passes; and no reservation is left in state ``precertificate``: each one reconciled has
exactly one ``cert.reconcile`` audit record.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import dns.asyncquery
import dns.message
import dns.rdatatype
from cryptography import x509

from tests.crash.load import LOGS, Acks, Head, http_json
from tests.crash.node import ORIGIN, Credentials, Node
from transport.client import connect
from trustchain.ct.merkle import ProofError, leaf_hash, verify_consistency, verify_inclusion
from trustchain.ct.structs import SCT, Entry, EntryType, merkle_tree_leaf

#: How many of one life's acknowledged records are also asked for over UDP DNS.
DNS_SAMPLE = 5
#: cryptography gives an SCT's time as a naive UTC datetime.
EPOCH = datetime(1970, 1, 1)


def embedded_scts(der: bytes) -> list[SCT]:
    """The SCTs in a certificate's SCT list, as cryptography's parser reads them."""
    extension = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
        x509.PrecertificateSignedCertificateTimestamps).value
    return [SCT(s.log_id, (s.timestamp - EPOCH) // timedelta(milliseconds=1), s.extension_bytes,
                s.signature) for s in extension]


@dataclass
class Verdict:
    """Checks passed, by name, and every violation found."""

    passed: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        if ok:
            self.passed[name] += 1
        else:
            self.violations.append(f"{name}: {detail}" if detail else name)
        return ok


@contextmanager
def read_only(node: Node) -> Iterator[sqlite3.Connection]:
    """The node's database as a reader sees it while the node runs (WAL)."""
    conn = sqlite3.connect(f"file:{node.data_dir / 'node.db'}?mode=ro", uri=True)
    try:
        yield conn
    finally:
        conn.close()


class Checker:
    """The checks, with what they remember between lives."""

    def __init__(self, node: Node, credentials: Credentials) -> None:
        self.node = node
        self.credentials = credentials
        #: Each log's last head a client saw (the harness passes it through the load).
        self.heads: dict[str, Head] = {}
        #: Serials abandoned so far (each start adds those it reconciled).
        self.reconciled = 0

    async def after_restart(self, every: Acks, last_life: Acks, verdict: Verdict) -> int:
        """Check everything against the running node; return how many reservations its
        start reconciled."""
        reconciled = self._database(every, verdict)
        await self._tree_heads(every, last_life, verdict)
        await self._records(every, last_life, verdict)
        audit = self.node.cli("audit", "verify", "--data-dir", str(self.node.data_dir), "--json")
        verdict.check("audit verify", audit.returncode == 0, audit.stdout + audit.stderr)
        return reconciled

    def _database(self, every: Acks, verdict: Verdict) -> int:
        with read_only(self.node) as db:
            integrity = db.execute("PRAGMA integrity_check").fetchall()
            verdict.check("integrity_check ok", integrity == [("ok",)], repr(integrity))
            verdict.check("foreign keys hold", db.execute("PRAGMA foreign_key_check").fetchall()
                          == [])
            for log in LOGS:
                stored = dict(db.execute("SELECT idx, sct FROM ct_entries WHERE log = ?", (log,)))
                lost = [a.index for a in every.ct if a.log == log
                        and stored.get(a.index) != a.sct.to_bytes()]
                verdict.check("CT entries at their index with their SCT", not lost,
                              f"log {log}: indexes {lost[:10]} lost or changed")
            honoured = set(db.execute("SELECT idx, sct FROM ct_entries"))
            unlogged = [f"{a.serial:x}" for a in every.certs for sct in embedded_scts(a.der)
                        if (sct.leaf_index, sct.to_bytes()) not in honoured]
            verdict.check("SCTs embedded in certificates honoured", not unlogged,
                          f"serials {unlogged[:10]}: an embedded SCT has no entry")
            certs = {int(serial, 16): (state, der) for serial, state, der in db.execute(
                "SELECT serial, state, der FROM ca_certificates")}
            lost_certs = [f"{a.serial:x}" for a in every.certs
                          if certs.get(a.serial) != ("issued", a.der)]
            verdict.check("issued certificates stored", not lost_certs,
                          f"serials {lost_certs[:10]} lost or changed")
            states = Counter(state for state, _ in certs.values())
            verdict.check("no precertificate left unreconciled", states["precertificate"] == 0,
                          f"{states['precertificate']} serial(s) still 'precertificate'")
            audited = Counter(json.loads(details)["serial"] for (details,) in db.execute(
                "SELECT details FROM audit_log WHERE kind = 'cert.reconcile'"))
            abandoned = {f"{serial:x}" for serial, (state, _) in certs.items()
                         if state == "abandoned"}
            verdict.check("each abandoned serial audited once", audited == Counter(abandoned),
                          f"{len(abandoned)} abandoned, audit records {sum(audited.values())}")
        reconciled, self.reconciled = len(abandoned) - self.reconciled, len(abandoned)
        return reconciled

    async def _tree_heads(self, every: Acks, last_life: Acks, verdict: Verdict) -> None:
        http = self.node.address("http")
        for log in LOGS:
            base = f"/logs/{log}/ct/v1"
            status, sth = await http_json(http, "GET", f"{base}/get-sth")
            if not verdict.check("get-sth answers", status == 200, f"log {log}: {status}"):
                continue
            head = Head.from_json(sth)
            indexes = [a.index for a in every.ct if a.log == log]
            verdict.check("heads cover every SCT", head.size > max(indexes, default=-1),
                          f"log {log}: size {head.size}, SCT index {max(indexes, default=-1)}")
            last = self.heads.get(log)
            if last is not None and last.size > 0:
                verdict.check("heads never go back", await self._consistent(
                    http, base, last, head), f"log {log}: {head} after {last}")
            self.heads[log] = head
            for ack in (a for a in last_life.ct if a.log == log):
                leaf = merkle_tree_leaf(ack.sct.timestamp, Entry(EntryType.X509, ack.leaf),
                                        ack.sct.extensions)
                status, answer = await http_json(
                    http, "GET", f"{base}/get-entry-and-proof?leaf_index={ack.index}"
                    f"&tree_size={head.size}")
                try:
                    assert status == 200 and base64.b64decode(answer["leaf_input"]) == leaf
                    verify_inclusion(leaf_hash(leaf), ack.index, head.size,
                                     [base64.b64decode(p) for p in answer["audit_path"]], head.root)
                    included = True
                except (AssertionError, ProofError, KeyError):
                    included = False
                verdict.check("CT entries proven included", included,
                              f"log {log}: index {ack.index}")

    @staticmethod
    async def _consistent(http: tuple[str, int], base: str, old: Head, new: Head) -> bool:
        """``new`` extends ``old``: proven by get-sth-consistency (or equal at one size)."""
        if new.size <= old.size:
            return new == old
        status, answer = await http_json(
            http, "GET", f"{base}/get-sth-consistency?first={old.size}&second={new.size}")
        try:
            verify_consistency(old.size, new.size, [base64.b64decode(p) for p in
                                                    answer["consistency"]], old.root, new.root)
        except (ProofError, KeyError, TypeError):
            return False
        return status == 200

    async def _records(self, every: Acks, last_life: Acks, verdict: Verdict) -> None:
        zone = ORIGIN
        async with connect(*self.node.address("quic"), root=self.credentials.root,
                           server_name=ORIGIN.rstrip("."),
                           identity=self.credentials.admin) as client:
            listed = await client.request("admin", "records-list",
                                          json.dumps({"zone": zone}).encode())
            zones = await client.request("admin", "zone-list", b"{}")
        present = {(r["name"].lower(), r["data"]) for r in json.loads(listed.message)
                   if r["type"] == "TXT"}
        lost = [a.name for a in every.records if (a.name, a.data) not in present]
        verdict.check("changed records present", listed.status == 200 and not lost,
                      f"{lost[:10]} missing")
        serial = {z["zone"]: z["serial"] for z in json.loads(zones.message)}.get(zone, 0)
        newest = max((a.serial for a in every.records), default=0)
        verdict.check("zone serial not behind an acknowledged one", serial >= newest,
                      f"zone serial {serial}, acknowledged {newest}")
        host, port = self.node.address("dns")
        for ack in last_life.records[-DNS_SAMPLE:]:
            reply = await dns.asyncquery.udp(dns.message.make_query(ack.name, "TXT"), host,
                                             port=port, timeout=10)
            answered = {rdata.to_text() for rrset in reply.answer
                        if rrset.rdtype == dns.rdatatype.TXT for rdata in rrset}
            verdict.check("changed records served over DNS", ack.data in answered,
                          f"{ack.name}: {sorted(answered)}")
