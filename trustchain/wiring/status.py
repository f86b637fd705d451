"""``trustchain status``: what a node holds, read without its passphrase or lock."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

from bootstrap.genesis import genesis_pin, parse_genesis
from transport.sockets import format_address
from trustchain.config import load_config
from trustchain.datadir import DataDir
from trustchain.errors import GenesisError
from trustchain.keystore import KeyStore
from trustchain.storage.database import open_database
from trustchain.storage.migrations import current_version
from trustchain.storage.node import NodeStore


def is_running(layout: DataDir) -> bool:
    """True if a process holds the data directory's lock."""
    fd = os.open(layout.path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def node_status(data_dir: Path) -> dict[str, Any]:
    layout = DataDir(data_dir)
    layout.require_initialised()
    config = load_config(data_dir)
    with open_database(data_dir, readonly=True) as db:
        store = NodeStore(db)
        identity = store.identity()
        last_run = store.last_run()
        schema = {"node": current_version(db, "node")}
    genesis_bytes = layout.genesis_file.read_bytes()
    pin = genesis_pin(genesis_bytes)
    try:
        parse_genesis(genesis_bytes)
        genesis_state = "valid" if identity and identity.genesis_sha256 == pin else "MISMATCH"
    except GenesisError as exc:
        genesis_state = f"INVALID: {exc}"
    running = is_running(layout)
    return {
        "data_dir": str(data_dir.resolve()),
        "node_id": identity.node_id if identity else None,
        "network_name": identity.network_name if identity else None,
        "origin": identity.origin if identity else None,
        "genesis_sha256": pin,
        "genesis": genesis_state,
        "running": running,
        "last_run": None if last_run is None else {
            "pid": last_run.pid,
            "started_at": last_run.started_at,
            "stopped_at": last_run.stopped_at,
        },
        "schema_versions": schema,
        "keys": [
            {
                "id": r.id,
                "type": str(r.type),
                "purpose": r.purpose,
                "status": str(r.status),
                "created_at": r.created_at.isoformat(),
            }
            for r in KeyStore.list_records(layout.keys_dir)
        ],
        # The services that exist so far (DNS over UDP/TCP arrives with the DNS issue).
        "listeners": [
            listener
            for a in config.listen
            for listener in (
                f"http {format_address(a, config.http_port)}/tcp",
                f"https {format_address(a, config.https_port)}/tcp",
                f"quic {format_address(a, config.quic_port)}/udp (doq, stoq/1, h3)",
            )
        ],
    }


def render_status(status: dict[str, Any]) -> str:
    lines = [
        f"node        {status['node_id']}",
        f"network     {status['network_name']} (origin {status['origin']})",
        f"genesis     sha256:{status['genesis_sha256']} ({status['genesis']})",
        f"data dir    {status['data_dir']}",
    ]
    run = status["last_run"]
    if status["running"]:
        state = f"running (pid {run['pid']}, since {run['started_at']})" if run else "running"
    elif run is None:
        state = "never started"
    elif run["stopped_at"] is None:
        state = f"stopped; the last run (started {run['started_at']}) did not shut down cleanly"
    else:
        state = f"stopped (last run {run['started_at']} to {run['stopped_at']})"
    lines.append(f"state       {state}")
    lines.append(
        "schema      " + ", ".join(f"{k} v{v}" for k, v in status["schema_versions"].items())
    )
    lines.append(f"keys        {len(status['keys'])}")
    for key in status["keys"]:
        lines.append(
            f"  {key['id']}  {key['type']:<10}  {key['purpose']:<22}  {key['status']:<7}  "
            f"{key['created_at']}"
        )
    lines.append("listeners   " + "; ".join(status["listeners"]))
    return "\n".join(lines)
