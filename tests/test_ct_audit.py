"""An outside auditor follows a log over HTTP for twenty minutes of log time.

The auditor is tests/rfc6962_reference.py (written from the RFCs, no
trustchain.ct code). The log is the node's own (Log over SQLite, LogRunner,
the REST app served by the HTTP listener); only its wall clock is a fake, so
that heads taken five minutes apart cost no real minutes. The auditor keeps
every head it saw and checks, as a monitor would: each head's signature, that
time and size never go back, a consistency proof between every pair of
heads, each SCT's signature, and an inclusion proof for every entry, with
every entry's timestamp no later than the first head that covers it.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import urllib.parse
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from tests import rfc6962_reference as ref
from tests.trustchain.ct.test_log import CA_B64, LOG_KEY, ROOT, leaf
from transport.ct import LogRunner
from transport.http import HttpListener
from trustchain.ct.log import Log
from trustchain.storage.ct import CT_SCHEMA, SqliteLogStore
from trustchain.storage.database import open_database
from trustchain.storage.migrations import migrate
from trustchain.wiring.ct import ct_service
from trustchain.wiring.http import create_app

MINUTE = 60.0
WAVES = 5
PER_WAVE = 6


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def get(port: int, path: str, body: object = None) -> dict:
    conn = http.client.HTTPConnection("::1", port, timeout=30)
    try:
        if body is None:
            conn.request("GET", path)
        else:
            conn.request("POST", path, json.dumps(body), {"content-type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        assert response.status == 200, data
        return json.loads(data)
    finally:
        conn.close()


async def test_an_auditor_follows_the_log_across_twenty_minutes(tmp_path: Path) -> None:
    db = open_database(tmp_path)
    migrate(db, CT_SCHEMA)
    clock = FakeClock(1_790_000_000.0)
    runner = LogRunner([Log("a", LOG_KEY, SqliteLogStore(db, "a"), [ROOT])], clock=clock)
    listener = HttpListener(create_app(genesis_bytes=b"{}", services=[ct_service(runner)]), ["::1"], 0, 1.0)
    runner.start()
    port = (await listener.start())[0][1]
    key = LOG_KEY.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)

    async def call(path: str, body: object = None) -> dict:
        return await asyncio.to_thread(get, port, path, body)

    try:
        heads: list[dict] = []
        submitted: list[tuple[bytes, dict]] = []  # (certificate DER, its SCT)
        for wave in range(WAVES):
            if wave:
                clock.now += 5 * MINUTE
            leaves = [leaf(f"w{wave}n{i}") for i in range(PER_WAVE)]
            scts = await asyncio.gather(*(call("/logs/a/ct/v1/add-chain", {"chain": [c, CA_B64]})
                                          for c in leaves))
            submitted += [(base64.b64decode(c), s) for c, s in zip(leaves, scts, strict=True)]
            head = await call("/logs/a/ct/v1/get-sth")
            ref.check_sth(head, key)
            heads.append(head)

        for before, after in zip(heads, heads[1:], strict=False):
            assert after["tree_size"] >= before["tree_size"] + PER_WAVE
            assert after["timestamp"] - before["timestamp"] >= 5 * MINUTE * 1000
        assert heads[-1]["timestamp"] - heads[0]["timestamp"] >= 20 * MINUTE * 1000

        for i, old in enumerate(heads):
            for new in heads[i + 1:]:
                proof = await call("/logs/a/ct/v1/get-sth-consistency?"
                                   f"first={old['tree_size']}&second={new['tree_size']}")
                ref.check_consistency(
                    old["tree_size"], new["tree_size"],
                    base64.b64decode(old["sha256_root_hash"]),
                    base64.b64decode(new["sha256_root_hash"]),
                    [base64.b64decode(p) for p in proof["consistency"]])

        for certificate, sct in submitted:
            ref.check_x509_sct(sct, certificate, key)

        final = heads[-1]
        size, root = final["tree_size"], base64.b64decode(final["sha256_root_hash"])
        entries = (await call(f"/logs/a/ct/v1/get-entries?start=0&end={size - 1}"))["entries"]
        assert len(entries) == size == WAVES * PER_WAVE
        sct_times = sorted(s["timestamp"] for _, s in submitted)
        assert sorted(ref.leaf_timestamp(base64.b64decode(e["leaf_input"]))
                      for e in entries) == sct_times
        for index, item in enumerate(entries):
            leaf_input = base64.b64decode(item["leaf_input"])
            hashed = ref.hash_leaf(leaf_input)
            quoted = urllib.parse.quote(base64.b64encode(hashed).decode(), safe="")
            proof = await call(f"/logs/a/ct/v1/get-proof-by-hash?tree_size={size}&hash={quoted}")
            assert proof["leaf_index"] == index
            ref.check_inclusion(index, size, hashed,
                                [base64.b64decode(p) for p in proof["audit_path"]], root)
            covering = next(h for h in heads if h["tree_size"] > index)
            assert ref.leaf_timestamp(leaf_input) <= covering["timestamp"]
    finally:
        await listener.stop()
        await runner.stop()
        db.close()
