"""A local federation for development and tests: N nodes on one machine, one genesis.

::

    DIR/                 0700
      devnet.json        the manifest: network, genesis pin, each node's ports and process
      passphrase         a random passphrase for every node's key store (devnet only)
      node-1/ … node-N/  complete node data directories, as ``trustchain init`` makes them

Every node is a founding validator of the one genesis (equal stake); the
genesis root key is kept only in node-1's key store, and signed every node's
infrastructure intermediate at creation.  Each node listens on the loopback
address on its own fixed ports and names the others' QUIC addresses as its
``peers``.

Creation happens in ``DIR/.devnet.tmp`` and the manifest is written last, so
a directory with nodes but no manifest is an interrupted creation: it is
reported, never used (:func:`load_manifest`).  Running the nodes is the
CLI's part (``trustchain devnet up|status|down``).
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import shutil
import socket
import tomllib
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from transport.sockets import format_address
from trustchain.config import DEFAULT_NETWORK_NAME, DEFAULT_ORIGIN, NodeConfig, default_config_text
from trustchain.consensus.parameters import ProofParameters
from trustchain.errors import LocalError
from trustchain.fsutil import ensure_private_dir, fsync_dir, write_private_file
from trustchain.keystore import KdfParams

MANIFEST_FILE = "devnet.json"
PASSPHRASE_FILE = "passphrase"
STAGING_DIR = ".devnet.tmp"
MAX_NODES = 16
DEFAULT_NODES = 4
#: The development default listen address (loopback), from the configuration defaults.
DEFAULT_HOST = NodeConfig().local_address()
#: The proofs' parameters of a devnet, cheaper than the genesis defaults (20 bits of work,
#: 100,000 squarings, k = 25) so that a node joins, and a network registers, in a second or
#: two: 16 bits of work (65,536 hashes on average), 10,000 squarings (0.1 s) and the
#: smallest plot chiapos builds (k = 19: 8 MB, seconds to plot).
DEVNET_PARAMETERS = ProofParameters(work_difficulty_bits=16, time_vdf_iterations=10_000,
                                    space_plot_k=19)
#: The services of a node, in the order they are shown.
SERVICES = ("dns", "quic", "https", "http")
#: Ports are drawn from here, below the usual ephemeral range, so that the outgoing
#: connections of clients (which take ephemeral ports) do not collide with them later.
_PORT_RANGE = (10000, 32768)


class DevnetError(LocalError):
    """The base directory holds no usable devnet, or one that does not fit the request."""


class NodePorts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    dns: int = Field(ge=1, le=65535)  # UDP and TCP
    quic: int = Field(ge=1, le=65535)  # UDP
    https: int = Field(ge=1, le=65535)  # TCP
    http: int = Field(ge=1, le=65535)  # TCP


class DevnetNode(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^node-\d+$")
    node_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    #: Relative to the base directory, so the devnet can be moved as a whole.
    data_dir: str
    ports: NodePorts
    #: The ``trustchain serve`` process last started, and its start time (in clock
    #: ticks since boot, from /proc), so that a reused pid is never taken for it.
    pid: int | None = None
    pid_start: int | None = None

    def address(self, host: str, service: str) -> str:
        return format_address(host, getattr(self.ports, service))


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: Literal["trustchain-devnet/1"] = "trustchain-devnet/1"
    network_name: str
    origin: str
    genesis_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    host: str
    created_at: str
    nodes: list[DevnetNode] = Field(min_length=1, max_length=MAX_NODES)


def manifest_path(base_dir: Path) -> Path:
    return base_dir / MANIFEST_FILE


def load_manifest(base_dir: Path) -> Manifest | None:
    """The devnet in ``base_dir``, or ``None`` if there is none yet (a new devnet may go there).

    :raises DevnetError: if ``base_dir`` holds an interrupted creation, other files,
        or a damaged manifest.
    """
    path = manifest_path(base_dir)
    try:
        return Manifest.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        pass
    except (OSError, ValidationError) as exc:
        raise DevnetError(f"{path}: not a devnet manifest ({exc})") from None
    if not base_dir.exists():
        return None
    if not base_dir.is_dir():
        raise DevnetError(f"{base_dir} is not a directory")
    entries = sorted(p.name for p in base_dir.iterdir() if p.name != STAGING_DIR)
    if any(name.startswith("node-") or name == PASSPHRASE_FILE for name in entries):
        raise DevnetError(
            f"{base_dir} holds an incomplete devnet ({', '.join(entries)} but no {MANIFEST_FILE}): "
            f"its creation was interrupted; remove {base_dir} and run `devnet up` again")
    if entries:
        raise DevnetError(f"{base_dir} is not empty and holds no devnet ({', '.join(entries[:5])}); "
                          "choose a new or empty directory")
    return None


def save_manifest(base_dir: Path, manifest: Manifest) -> None:
    """Replace the manifest atomically (mode 0600)."""
    data = json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n"
    write_private_file(manifest_path(base_dir), data.encode())


def create_devnet(
    base_dir: Path,
    nodes: int,
    *,
    passphrase: str,
    now: datetime,
    progress: Callable[[str], None],
    host: str = DEFAULT_HOST,
    network_name: str = DEFAULT_NETWORK_NAME,
    origin: str = DEFAULT_ORIGIN,
    kdf: KdfParams | None = None,
) -> Manifest:
    """Create ``nodes`` nodes sharing one new genesis in ``base_dir`` (new or empty).

    The caller holds ``DataDir(base_dir).lock()``, so two runs cannot interleave.

    :raises DevnetError: if ``base_dir`` already holds anything but creation debris.
    """
    # Imported here: status and down, which read the manifest only, stay quick to start.
    from bootstrap.init import DEFAULT_FOUNDER_STAKE, finish_node, found_network, stage_node
    from trustchain.datadir import DataDir

    if not 1 <= nodes <= MAX_NODES:
        raise DevnetError(f"a devnet has 1 to {MAX_NODES} nodes, not {nodes}")
    if load_manifest(base_dir) is not None:
        raise DevnetError(f"{base_dir} already holds a devnet")
    ensure_private_dir(base_dir)
    staging = base_dir / STAGING_DIR
    shutil.rmtree(staging, ignore_errors=True)  # debris of an interrupted creation
    ensure_private_dir(staging)
    write_private_file(staging / PASSPHRASE_FILE, (passphrase + "\n").encode())
    names = [f"node-{i}" for i in range(1, nodes + 1)]
    ports = pick_ports(host, nodes)
    with ExitStack() as locks:
        staged = []
        for name in names:
            layout = DataDir(staging / name)
            ensure_private_dir(layout.path)
            locks.enter_context(layout.lock())
            staged.append(stage_node(layout, passphrase, now=now, kdf=kdf,
                                     stake=DEFAULT_FOUNDER_STAKE, progress=_prefixed(progress, name)))
        founding = found_network(
            staged[0].keystore, [node.founder for node in staged], network_name=network_name,
            origin=origin, now=now, parameters=DEVNET_PARAMETERS,
            progress=_prefixed(progress, names[0]),
        )
        for index, (name, node) in enumerate(zip(names, staged, strict=True)):
            peers = [format_address(host, p.quic) for i, p in enumerate(ports) if i != index]
            finish_node(node, founding, config_text=node_config_text(host, ports[index], peers),
                        now=now, progress=_prefixed(progress, name))
    for name in [*names, PASSPHRASE_FILE]:
        (staging / name).rename(base_dir / name)
    fsync_dir(base_dir)
    manifest = Manifest(
        network_name=founding.genesis.body.network_name, origin=founding.genesis.body.origin,
        genesis_sha256=founding.pin, host=host,
        created_at=now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        nodes=[DevnetNode(name=name, node_id=node.founder.node_id, data_dir=name, ports=port)
               for name, node, port in zip(names, staged, ports, strict=True)],
    )
    save_manifest(base_dir, manifest)  # last: it marks the devnet complete
    staging.rmdir()
    return manifest


def new_passphrase() -> str:
    """A random passphrase for a devnet's key stores (as ``make run`` makes one)."""
    return secrets.token_urlsafe(32)


def node_config_text(host: str, ports: NodePorts, peers: list[str]) -> str:
    """``trustchain init``'s commented configuration with the devnet's address, ports and
    peers; its validators endorse a joining node's stake up to a founder's."""
    from bootstrap.init import DEFAULT_FOUNDER_STAKE

    settings = {
        "listen": json.dumps([host]), "peers": json.dumps(peers),
        "admission_max_stake": str(DEFAULT_FOUNDER_STAKE),
        "dns_port": str(ports.dns), "quic_port": str(ports.quic),
        "https_port": str(ports.https), "http_port": str(ports.http),
    }
    lines = []
    for line in default_config_text().splitlines():
        name = line.partition(" = ")[0]
        lines.append(f"{name} = {settings.pop(name)}" if name in settings else line)
    # Any setting the default text did not show goes first, before any TOML table.
    text = "".join(f"{name} = {value}\n" for name, value in settings.items())
    text = "# A devnet node (trustchain devnet): address, ports and peers are the devnet's.\n" \
        + text + "\n".join(lines) + "\n"
    NodeConfig.model_validate(tomllib.loads(text))  # never write a file the node would refuse
    return text


def pick_ports(host: str, nodes: int) -> list[NodePorts]:
    """Distinct ports, each free for both UDP and TCP on ``host`` now, four per node."""
    family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    avoid = {getattr(NodeConfig(), f"{s}_port") for s in SERVICES}  # `make run`'s node
    chosen: list[int] = []
    for _attempt in range(10_000):
        port = _PORT_RANGE[0] + secrets.randbelow(_PORT_RANGE[1] - _PORT_RANGE[0])
        if port not in avoid and port not in chosen and _free(family, host, port):
            chosen.append(port)
            if len(chosen) == 4 * nodes:
                break
    else:
        raise DevnetError(f"cannot find {4 * nodes} free ports on {host}")
    return [NodePorts(**dict(zip(SERVICES, chosen[i:i + 4], strict=True)))
            for i in range(0, len(chosen), 4)]


def _free(family: socket.AddressFamily, host: str, port: int) -> bool:
    try:
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            with socket.socket(family, kind) as probe:
                probe.bind((host, port))
    except OSError:
        return False
    return True


def _prefixed(progress: Callable[[str], None], name: str) -> Callable[[str], None]:
    return lambda message: progress(f"{name}: {message}")
