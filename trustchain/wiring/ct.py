"""The CT logs' methods: RFC 6962 over HTTP (``/logs/<log>/ct/v1/...``) and stoq/1 ``ct``,
and the static-ct-api read path over HTTP.

One table: each RFC 6962 method is served over both transports from the same
handler, with its arguments from the JSON message (stoq/1) or the query
string and path (HTTP), validated by the same model.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from pydantic import BaseModel, ConfigDict, Field

from bootstrap.transport_certs import node_dns_names
from transport.ct import LogRunner
from transport.methods import Call, Method, Reply, Service
from trustchain.ct.log import MAX_CERT_BYTES, MAX_CHAIN, ExpiryRange, Log
from trustchain.ct.note import Ed25519Signer
from trustchain.ct.policy import PolicyError
from trustchain.errors import ConfigError, NotFound
from trustchain.keystore import KeyType
from trustchain.storage.ct import SqliteLogStore
from trustchain.wiring.node import OpenNode, utcnow

#: add-chain bodies: MAX_CHAIN certificates of MAX_CERT_BYTES, base64 and JSON.
MAX_SUBMISSION_BYTES = (MAX_CHAIN * MAX_CERT_BYTES * 4) // 3 + 64 * 1024
#: Tiles and issuers never change once served.
IMMUTABLE = "public, max-age=31536000, immutable"

Index = Field(ge=0, le=2**62)


class _Args(BaseModel):
    model_config = ConfigDict(extra="ignore")
    log: str = Field(max_length=64)


class Submission(_Args):
    chain: list[str] = Field(max_length=MAX_CHAIN)


class Consistency(_Args):
    first: int = Index
    second: int = Index


class ProofByHash(_Args):
    hash: str = Field(max_length=128)
    tree_size: int = Index


class Entries(_Args):
    start: int = Index
    end: int = Index


class EntryAndProof(_Args):
    leaf_index: int = Index
    tree_size: int = Index


def log_prefix(node: OpenNode, name: str) -> str:
    """Log ``name``'s submission prefix (also its monitoring prefix): this node's name in
    the federation's zone, its HTTPS port, ``/logs/<name>/``."""
    host = node_dns_names(node.identity.origin, node.identity.node_id)[1]
    port = node.config.https_port
    return f"https://{host}/logs/{name}/" if port in (443, 0) else \
        f"https://{host}:{port}/logs/{name}/"


def build_ct_logs(node: OpenNode) -> list[Log]:
    """The node's CT logs (``ct_logs`` in the configuration), each with its own
    P-256 key from the key store, generated on first start."""
    logs = []
    for spec in node.config.ct_logs:
        purpose = f"ct-log:{spec.name}"
        record = node.keystore.active_or_generate(KeyType.ECDSA_P256, purpose, utcnow())
        key = node.keystore.private_key(record.id)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        origin = log_prefix(node, spec.name).removeprefix("https://").rstrip("/")
        note = node.keystore.active_or_generate(KeyType.ED25519, f"ct-note:{spec.name}",
                                                utcnow())
        note_key = node.keystore.private_key(note.id)
        assert isinstance(note_key, ed25519.Ed25519PrivateKey)
        logs.append(Log(spec.name, key, SqliteLogStore(node.db, spec.name),
                        # static-ct-api: the origin is the submission prefix without
                        # its scheme (and trailing slash)
                        [node.genesis.root_certificate], origin=origin,
                        expiry=ExpiryRange(spec.not_after_start, spec.not_after_end),
                        note_signer=Ed25519Signer(origin, note_key)))
    return logs


def ct_tiles_root(node: OpenNode) -> Path:
    """Where the static-ct-api files go (``ct_tiles_dir``, relative to the data directory).

    :raises ConfigError: if the directory cannot be created.
    """
    configured = node.config.ct_tiles_dir
    root = node.layout.path / configured if configured is not None else node.layout.ct_tiles_dir
    try:
        root.mkdir(mode=0o755, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"ct_tiles_dir {root}: {exc.strerror}") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise ConfigError(f"ct_tiles_dir {root}: not writable by this user")
    return root


def ct_service(runner: LogRunner,
               log_list: Callable[[str], dict[str, object]] | None = None,
               checkpoint_of: Callable[[str], str] | None = None,
               witness_policy: Callable[[], str] | None = None) -> Service:
    """Every CT method of the node's logs; ``log_list`` (the federation's) answers
    ``GET /logs`` and ``ct.logs``, ``checkpoint_of`` a log's checkpoint (with its
    witnesses' cosignatures), ``witness_policy`` the federation's tlog-policy, if given."""

    def log_of(args: _Args) -> Log:
        found = runner.logs.get(args.log)
        if found is None:
            raise NotFound(f"no log {args.log!r}")
        return found

    def read(model: type[_Args], answer: Callable[[Log, Any], dict[str, object]]
             ) -> Callable[[Call], dict[str, object]]:
        def handler(call: Call) -> dict[str, object]:
            args = call.parse(model)
            return answer(log_of(args), args)
        return handler

    def submit(precert: bool) -> Callable[[Call], Any]:
        async def handler(call: Call) -> dict[str, object]:
            args = call.parse(Submission)
            return await runner.add_chain(log_of(args).name, args.chain, precert)
        return handler

    def logs(call: Call) -> dict[str, object]:
        return (log_list or runner.log_list)(call.base_url or runner.base_url)

    def checkpoint(call: Call) -> Reply:
        target = log_of(call.parse(_Args))
        text = checkpoint_of(target.name) if checkpoint_of else target.checkpoint()
        return Reply(text.encode(), "text/plain; charset=utf-8",
                     {"cache-control": "no-cache, max-age=0"})

    def checkpoint_json(call: Call) -> dict[str, object]:
        target = log_of(call.parse(_Args))
        return {"checkpoint": checkpoint_of(target.name) if checkpoint_of
                else target.checkpoint()}

    def policy_text() -> str:
        if witness_policy is None:
            raise NotFound("this node knows no witness policy")
        try:
            return witness_policy()
        except PolicyError as exc:  # stakes tlog-policy cannot express (see policy.py)
            raise NotFound(f"the federation's stakes make no tlog-policy: {exc}") from None

    def policy(call: Call) -> dict[str, object]:
        return {"policy": policy_text()}

    def policy_file(call: Call) -> Reply:
        """Over HTTP the tlog-policy file itself (``curl -o policy.txt``)."""
        return Reply(policy_text().encode(), "text/plain; charset=utf-8",
                     {"cache-control": "no-cache, max-age=0"})

    def tile(call: Call) -> Reply:
        data = log_of(call.parse(_Args)).tile(str(call.args["path"]))
        return Reply(data, "application/octet-stream", {"cache-control": IMMUTABLE})

    def issuer(call: Call) -> Reply:
        der = log_of(call.parse(_Args)).issuer(str(call.args["fingerprint"]))
        if der is None:
            raise NotFound("no submitted chain holds that issuer")
        return Reply(der, "application/pkix-cert", {"cache-control": IMMUTABLE})

    base = "/logs/{log}/ct/v1/"
    return Service("ct", (
        Method(logs, stoq="logs", http="GET /logs"),
        Method(submit(False), stoq="add-chain", http=f"POST {base}add-chain",
               max_body=MAX_SUBMISSION_BYTES),
        Method(submit(True), stoq="add-pre-chain", http=f"POST {base}add-pre-chain",
               max_body=MAX_SUBMISSION_BYTES),
        Method(read(_Args, lambda lg, a: lg.get_sth()), stoq="get-sth",
               http=f"GET {base}get-sth"),
        Method(read(Consistency, lambda lg, a: lg.get_sth_consistency(a.first, a.second)),
               stoq="get-sth-consistency", http=f"GET {base}get-sth-consistency"),
        Method(read(ProofByHash, lambda lg, a: lg.get_proof_by_hash(a.hash, a.tree_size)),
               stoq="get-proof-by-hash", http=f"GET {base}get-proof-by-hash"),
        Method(read(Entries, lambda lg, a: lg.get_entries(a.start, a.end)),
               stoq="get-entries", http=f"GET {base}get-entries"),
        Method(read(EntryAndProof, lambda lg, a: lg.get_entry_and_proof(a.leaf_index,
                                                                          a.tree_size)),
               stoq="get-entry-and-proof", http=f"GET {base}get-entry-and-proof"),
        Method(read(_Args, lambda lg, a: lg.get_roots()), stoq="get-roots",
               http=f"GET {base}get-roots"),
        # The static-ct-api monitoring prefix: the same as the submission prefix.
        Method(checkpoint, http="GET /logs/{log}/checkpoint"),
        Method(checkpoint_json, stoq="checkpoint"),
        Method(policy, stoq="witness-policy"),
        Method(policy_file, http="GET /witness/policy"),
        Method(tile, http="GET /logs/{log}/tile/{path:path}"),
        Method(issuer, http="GET /logs/{log}/issuer/{fingerprint}"),
    ))
