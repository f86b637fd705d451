"""``ct logs|get-sth|verify-inclusion|verify-consistency``: a node's CT logs, checked as a
monitor would (trustchain/ct/monitor.py) from what the node or its static files answer."""

from __future__ import annotations

import argparse
import base64
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from trustchain.cli.common import add_command, add_group, add_json, print_json
from trustchain.cli.remote import CtCall, Node, add_trust_anchor, ct_session, parse_server, trust_anchor
from trustchain.errors import LocalError, RemoteError

if TYPE_CHECKING:
    from trustchain.ct.structs import TreeHead

T = TypeVar("T")


def register(commands: argparse._SubParsersAction) -> None:
    sub = add_group(commands, "ct", "certificate transparency logs of a node", examples="""
trustchain ct logs --server '[::1]:8853' --data-dir data
trustchain ct get-sth a --server '[::1]:8853' --data-dir data
trustchain ct verify-inclusion www.pem --server '[::1]:8853' --data-dir data
trustchain ct verify-consistency a 10 20 --server '[::1]:8853' --data-dir data
""")
    p = add_command(sub, "logs", "the node's logs as Chrome/Apple log-list JSON", cmd_ct_logs)
    add_json(p, "JSON (the output is the log list's JSON either way)")
    _node_options(p)
    p = add_command(sub, "get-sth", "a log's signed tree head, its signature checked",
                    cmd_ct_get_sth)
    p.add_argument("log", metavar="LOG")
    add_json(p, "the tree head as RFC 6962 get-sth JSON")
    _node_options(p)
    p = add_command(sub, "verify-inclusion", "prove a certificate is in a log",
                    cmd_ct_verify_inclusion)
    p.add_argument("cert", metavar="CERT")
    p.add_argument("--log", default="a", help="log name (default: a)")
    p.add_argument("--tiles", metavar="URL",
                   help="read only the log's static-ct-api files under URL (its monitoring "
                        "prefix) instead of asking a node; needs --log-key (and a --policy "
                        "FILE to check the checkpoint's cosignatures)")
    p.add_argument("--log-key", metavar="BASE64",
                   help="the log's public key (SubjectPublicKeyInfo, base64, as in log lists)")
    _policy_option(p)
    _node_options(p, server_required=False)
    p = add_command(sub, "verify-consistency", "prove tree FIRST is a prefix of tree SECOND",
                    cmd_ct_verify_consistency)
    p.add_argument("log", metavar="LOG")
    p.add_argument("first", metavar="FIRST", type=int)
    p.add_argument("second", metavar="SECOND", type=int)
    _policy_option(p)
    _node_options(p)


def _policy_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--policy", metavar="FILE",
        help="C2SP tlog-policy: the witnesses whose cosignatures the log's checkpoint must "
             "carry (default: the federation's validators, more than 2/3 of the stake, as "
             "the node reports them)")
    parser.add_argument("--wait", type=float, default=QUORUM_WAIT, metavar="SECONDS",
                        help="how long to wait for a checkpoint with the witness quorum "
                             f"(default {QUORUM_WAIT:g})")


def _node_options(parser: argparse.ArgumentParser, server_required: bool = True) -> None:
    parser.add_argument("--server", required=server_required, metavar="[ADDR]:PORT",
                        help="the node's QUIC address")
    add_trust_anchor(parser, "trust anchor (default: the node in --data-dir)")


def _session(args: argparse.Namespace, work: Callable[[CtCall], Awaitable[T]]) -> T:
    """Run ``work`` on the node at --server, checked against the trust anchor given."""
    host, port = parse_server(args.server)
    root, origin = trust_anchor(args.genesis, args.pin, args.data_dir)
    return ct_session(Node(host, port, root, args.server_name or origin), work)


#: How long a command waits for a checkpoint that carries the witness quorum (a log that
#: just took an entry has its new checkpoint cosigned within a second or two).
QUORUM_WAIT = 15.0


class _QuorumWait:
    """Polling for a checkpoint that carries the quorum, within a bound: ``again()`` in
    the handler of a quorum refusal re-raises it once past the deadline, tells a terminal
    once that it waits, and returns how long to wait before the next look."""

    POLL = 0.5

    def __init__(self, wait: float) -> None:
        import time

        self._clock = time.monotonic
        self._deadline = time.monotonic() + wait
        self._told = False

    def again(self) -> float:
        if self._clock() > self._deadline:
            raise  # noqa: PLE0704 - called in the handler: the refusal, as it is
        if not self._told and sys.stderr.isatty():
            print("waiting for the witnesses' cosignatures ...", file=sys.stderr)
            self._told = True
        return self.POLL


async def _witnessed_head(call: CtCall, log: str, policy_file: str | None,
                          wait: float = QUORUM_WAIT) -> tuple[TreeHead, set[str]]:
    """The log's checkpoint as a tree head, its RFC 6962 signature checked with the key of
    the node's log list, and the witnesses whose cosignatures on it meet the policy's
    quorum (waited for up to ``wait`` seconds).

    :raises MonitorError: no checkpoint with the quorum by then.
    """
    import asyncio

    from trustchain.ct import monitor, tiles
    from trustchain.ct.policy import PolicyError, parse_policy
    from trustchain.ct.structs import log_id

    key = monitor.log_key(await call("logs", {}), log)
    if policy_file is not None:
        policy = _read_policy(policy_file)
    else:
        try:
            policy = parse_policy((await call("witness-policy", {}))["policy"])
        except PolicyError as exc:
            raise RemoteError(f"the node's witness policy: {exc}") from None
    waiting = _QuorumWait(wait)
    while True:
        text = (await call("checkpoint", {"log": log}))["checkpoint"]
        origin = text.split("\n", 1)[0]
        try:
            head = tiles.verify_checkpoint(text, origin, log_id(key), key)
        except tiles.TileError as exc:
            raise monitor.MonitorError(f"checkpoint of log {log}: {exc}") from None
        try:
            return head, monitor.require_quorum(text, policy)
        except monitor.MonitorError:
            await asyncio.sleep(waiting.again())  # polling the log with a bound


async def _signed_head(call: CtCall, log: str) -> tuple[TreeHead, Any]:
    """The log's tree head, its signature checked with the key the node's log list gives,
    and the ``get-sth`` answer as the node sent it."""
    from trustchain.ct import monitor

    key = monitor.log_key(await call("logs", {}), log)
    sth = await call("get-sth", {"log": log})
    return monitor.verify_sth(sth, key), sth


def cmd_ct_logs(args: argparse.Namespace) -> int:
    async def logs(call: CtCall) -> Any:
        return await call("logs", {})

    print_json(_session(args, logs))
    return 0


def cmd_ct_get_sth(args: argparse.Namespace) -> int:
    async def sth(call: CtCall) -> Any:
        return (await _signed_head(call, args.log))[1]

    head = _session(args, sth)
    if args.json:
        print_json(head)
    else:
        when = datetime.fromtimestamp(head["timestamp"] / 1000, UTC)
        print(f"log {args.log}: tree size {head['tree_size']}, signed "
              f"{when.isoformat(timespec='milliseconds').replace('+00:00', 'Z')}, "
              f"root hash {base64.b64decode(head['sha256_root_hash']).hex()}")
    print("tree head signature verified with the log's key", file=sys.stderr)
    return 0


def cmd_ct_verify_consistency(args: argparse.Namespace) -> int:
    from trustchain.ct import monitor

    first, second = args.first, args.second

    async def consistency(call: CtCall) -> str:
        head, witnesses = await _witnessed_head(call, args.log, args.policy, args.wait)
        if not 0 <= first <= second <= head.size:
            raise LocalError(f"need 0 <= FIRST <= SECOND <= {head.size}")
        hashes: list[bytes] = []
        while len(hashes) < second:
            hashes += monitor.leaf_hashes(await call("get-entries", {
                "log": args.log, "start": len(hashes), "end": second - 1}))
        proof = await call("get-sth-consistency", {"log": args.log, "first": first,
                                                   "second": second})
        monitor.verify_consistency(first, second, head, hashes, proof)
        return (f"OK: tree {first} is a prefix of tree {second} in log {args.log}; its "
                f"checkpoint of {head.size} is cosigned by {len(witnesses)} witnesses "
                "(the policy's quorum)")

    print(_session(args, consistency))
    return 0


def cmd_ct_verify_inclusion(args: argparse.Namespace) -> int:
    if args.tiles is None and args.server is None:
        raise LocalError("give --server (a node) or --tiles URL --log-key KEY (static files)")
    der, issuer = _certificate(args.cert)
    if args.tiles is not None:
        if args.log_key is None:
            raise LocalError("--tiles needs --log-key (the log's key from a log list)")
        print(_inclusion_by_tiles(args.tiles, args.log_key, der, issuer, args.policy,
                                  args.wait))
        return 0
    print(_session(args, lambda call: _inclusion(call, args.log, der, issuer, args.policy,
                                                 args.wait)))
    return 0


def _certificate(path: str) -> tuple[bytes, bytes | None]:
    """The DER of the certificate in ``path`` (PEM or DER), and of its issuer if the PEM
    file holds the chain (as ``ca issue`` writes it): a certificate with embedded SCTs
    was logged as its precertificate, which names the issuer's key."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise LocalError(f"cannot read {path}: {exc.strerror}") from None
    try:
        certs = (x509.load_pem_x509_certificates(raw) if b"-----BEGIN" in raw
                 else [x509.load_der_x509_certificate(raw)])
    except ValueError:
        raise LocalError(f"{path} is not a certificate (PEM or DER)") from None
    ders = [c.public_bytes(Encoding.DER) for c in certs]
    return ders[0], ders[1] if len(ders) > 1 else None


async def _inclusion(call: CtCall, log: str, der: bytes, issuer: bytes | None,
                     policy: str | None, wait: float) -> str:
    """Page through the log's entries up to its witnessed checkpoint for ``der``, then
    prove it."""
    from trustchain.ct import monitor

    head, witnesses = await _witnessed_head(call, log, policy, wait)
    start = 0
    while start < head.size:
        page = await call("get-entries", {"log": log, "start": start, "end": head.size - 1})
        found = monitor.find_certificate(page, start, der, issuer)
        if found is not None:
            proof = await call("get-proof-by-hash", {
                "log": log, "hash": base64.b64encode(found.leaf_hash).decode(),
                "tree_size": head.size})
            monitor.verify_inclusion(found, proof, head)
            return (f"OK: entry {found.index} of log {log}, included in its signed tree of "
                    f"{head.size} (cosigned by {len(witnesses)} witnesses: the policy's quorum)")
        start += len(page["entries"])
    raise RemoteError(f"the certificate is not in log {log}")


def _read_policy(path: str) -> Any:
    from trustchain.ct.policy import PolicyError, parse_policy

    try:
        return parse_policy(Path(path).read_bytes())
    except OSError as exc:
        raise LocalError(f"cannot read {path}: {exc.strerror}") from None
    except PolicyError as exc:
        raise LocalError(f"{path}: {exc}") from None


def _inclusion_by_tiles(url: str, key_b64: str, der: bytes, issuer: bytes | None,
                        policy_file: str | None, wait: float) -> str:
    """Check ``der`` against the log's static-ct-api files under ``url`` (over HTTP), and
    with a policy, that the checkpoint file carries its quorum of cosignatures (the node
    adds them to the file within a second or two of a new checkpoint: waited for)."""
    import binascii
    import time
    import urllib.error
    import urllib.request

    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    from trustchain.ct import monitor

    try:
        key = load_der_public_key(base64.b64decode(key_b64, validate=True))
    except (binascii.Error, ValueError):
        raise LocalError("--log-key is not a base64 public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise LocalError("--log-key is not an ECDSA key")
    base = url.rstrip("/")

    def fetch(path: str) -> bytes:
        try:
            with urllib.request.urlopen(f"{base}/{path}", timeout=30) as response:
                return bytes(response.read())
        except (urllib.error.URLError, OSError) as exc:
            raise RemoteError(f"cannot fetch {base}/{path}: {exc}") from None

    policy = _read_policy(policy_file) if policy_file is not None else None
    waiting = _QuorumWait(wait)
    while True:
        proven = monitor.verify_tiles(fetch, key, der, issuer)
        if policy is None:
            return (f"OK: entry {proven.index} of {proven.origin}, included in its signed "
                    f"checkpoint of {proven.tree_size}")
        try:
            witnesses = monitor.require_quorum(proven.checkpoint, policy)
        except monitor.MonitorError:
            time.sleep(waiting.again())  # polling the static files with a bound
            continue
        return (f"OK: entry {proven.index} of {proven.origin}, included in its signed "
                f"checkpoint of {proven.tree_size}, cosigned by {len(witnesses)} witnesses "
                "(the policy's quorum)")
