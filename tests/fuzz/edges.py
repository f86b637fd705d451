"""The edges: request arguments (HTTP JSON bodies), the node's stoq/1 router and its ASGI app.

* ``http-json``: :func:`transport.methods.json_args` and every method table's
  argument model; the rule is "a JSON object of arguments, or
  :class:`BadRequest`", and what parses holds no float, no NaN and no
  nesting deeper than :data:`~transport.methods.MAX_JSON_DEPTH`.
* ``stoq-router``: a request stream read by the stoq/1 framing and dispatched
  by the node's real router (every service's methods, as an anonymous
  client, a node, a network credential or the admin); the answer must be a
  documented status with a problem document, never an exception (which the
  transport turns into a reset with INTERNAL_ERROR).
* ``http-app``: a request to the node's ASGI app (every route, HTTP/1.1 and
  HTTP/3 alike); never a 500.
"""

from __future__ import annotations

import base64
import json
import random
from typing import Any

import dns.message
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from pydantic import BaseModel

from bootstrap.enrolment import EnrolmentRequest, NodeIdRequest
from tests.fuzz.ca import simple_csr
from tests.fuzz.engine import Target, mutate
from tests.fuzz.mutators import JSON_TOKENS, mutate_json
from tests.fuzz.node import ADMIN, PEERS, FuzzNode, fuzz_node, peer_of
from tests.pki import cert_builder, signed
from transport.methods import MAX_JSON_DEPTH, Call, json_args
from trustchain.errors import BadRequest
from trustchain.stoq.framing import FrameType, MessageReader, Request, StoqError, encode_request
from trustchain.stoq.permissions import PERMISSIONS, Access
from trustchain.stoq.router import parse_message
from trustchain.wiring import ca as ca_wiring
from trustchain.wiring import ct as ct_wiring
from trustchain.wiring import dns as dns_wiring

MODELS: tuple[type[BaseModel], ...] = (
    ct_wiring._Args, ct_wiring.Submission, ct_wiring.Consistency, ct_wiring.ProofByHash,
    ct_wiring.Entries, ct_wiring.EntryAndProof, ca_wiring.IssueRequest, ca_wiring.RevokeRequest,
    ca_wiring.RevokeByKey, ca_wiring.NetworkRequest, dns_wiring.ZoneName, dns_wiring.ZoneCreate,
    dns_wiring.SecondaryRequest, dns_wiring.Rollover, dns_wiring.NetworkRegister,
    dns_wiring.ZoneImport, dns_wiring.ChangeSet, EnrolmentRequest, NodeIdRequest)
OK_STATUSES = {200, 201, 400, 403, 404, 405, 413, 429, 503}


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    assert not isinstance(value, float), "a float among the arguments"
    return 0


# --- seeds: one valid request per method ---------------------------------------------------


def _chain_seeds(fn: FuzzNode) -> tuple[list[str], list[str]]:
    """A certificate and a precertificate chain under this node's intermediate (base64)."""
    issuer = fn.node.credentials.issuer
    assert issuer is not None
    key = ec.generate_private_key(ec.SECP256R1())
    now = fn.node.credentials.node.certificate.not_valid_before_utc
    chains = []
    for poison in (False, True):
        leaf = signed(cert_builder("fuzz leaf", key.public_key(), issuer=issuer.certificate,
                                   not_before=now, days=30, dns_names=["www.fuzz.example"],
                                   poison=poison), issuer.private_key)
        chains.append([base64.b64encode(c.public_bytes(Encoding.DER)).decode()
                       for c in (leaf, issuer.certificate)])
    return chains[0], chains[1]


def _csr() -> str:
    return simple_csr(Encoding.PEM).decode()


def _ocsp_request(fn: FuzzNode) -> bytes:
    issuer = fn.node.credentials.issuer
    assert issuer is not None
    return ocsp.OCSPRequestBuilder().add_certificate(
        fn.node.credentials.node.certificate, issuer.certificate, hashes.SHA1()
    ).build().public_bytes(Encoding.DER)


def stoq_messages(fn: FuzzNode) -> list[tuple[str, str, bytes]]:
    """(service, method, message): a request every method would take, and the issue's
    reproductions of what it must refuse."""
    chain, prechain = _chain_seeds(fn)
    dump = json.dumps

    def js(value: Any) -> bytes:
        return dump(value, separators=(",", ":")).encode()

    zone = {"zone": "fuzz.example."}
    return [
        ("dns", "query", dns.message.make_query("www.trust.example.net.", "AAAA").to_wire()),
        ("ca", "enrol-challenge", b""),
        ("ca", "enrol-status", js({"node_id": "0" * 32})),
        ("ca", "enrol-request", js({k: "AAAA" for k in EnrolmentRequest.model_fields})),
        ("ct", "logs", b""),
        ("ct", "add-chain", js({"log": "a", "chain": chain})),
        ("ct", "add-pre-chain", js({"log": "b", "chain": prechain})),
        ("ct", "add-chain", js({"log": "a", "chain": [1, 2]})),
        ("ct", "get-sth", js({"log": "a"})),
        ("ct", "get-sth-consistency", b'{"log":"a","first":0,"second":Infinity}'),
        ("ct", "get-proof-by-hash", js({"log": "a", "hash": "A" * 44, "tree_size": 1})),
        ("ct", "get-entries", js({"log": "a", "start": "abc", "end": 1})),
        ("ct", "get-entries", b'{"log":"a","start":NaN,"end":1}'),
        ("ct", "get-entry-and-proof", b'{"log":"a","leaf_index":1e400,"tree_size":1}'),
        ("ct", "get-roots", js({"log": "a"})),
        ("ca", "issue", js({"csr": _csr(), "network": "alpha"})),
        ("ca", "revoke", js({"serial": "01", "reason": "keyCompromise"})),
        ("ca", "rotate", js({"network": "alpha"})),
        ("ca", "list", js({"network": "alpha"})),
        ("ca", "ocsp", _ocsp_request(fn)),
        ("consensus", "validators", b""),
        ("admin", "status", b""),
        ("admin", "enrolments", b""),
        ("admin", "approve", js({"node_id": "0" * 32})),
        ("admin", "reject", js({"node_id": "0" * 32})),
        ("admin", "zone-create", js({**zone, "addresses": ["2001:db8::1"]})),
        ("admin", "zone-delete", js(zone)),
        ("admin", "zone-list", b""),
        ("admin", "zone-ttl", js({"zone": "trust.example.net.", "ttl": 60})),
        ("admin", "zone-export", js({"zone": "trust.example.net."})),
        ("admin", "zone-import", js({"text": "$ORIGIN fuzz.example.\n@ 60 IN SOA ns h 1 2 3 4 5\n"
                                             "@ 60 IN NS ns.elsewhere.org.\n", "replace": True})),
        ("admin", "records-list", js({"zone": "trust.example.net."})),
        ("admin", "records-change", js({"add": [{"name": "x.trust.example.net.", "type": "TXT",
                                                  "data": '"fuzz"'}],
                                         "delete": [{"name": "y.trust.example.net."}]})),
        ("admin", "secondary-add", js({"zone": "trust.example.net.", "address": "192.0.2.7"})),
        ("admin", "secondary-list", b""),
        ("admin", "secondary-remove", js({"zone": "trust.example.net.", "address": "192.0.2.7"})),
        ("admin", "network-register", js({"name": "beta", "prefixes": ["192.0.2.0/24"]})),
        ("admin", "network-list", b""),
        ("admin", "dnssec-ds", js({"zone": "trust.example.net."})),
        ("admin", "dnssec-status", js({"zone": "trust.example.net."})),
        ("admin", "dnssec-rollover", js({"zone": "trust.example.net.", "role": "zsk"})),
        ("admin", "dnssec-ds-published", js({"zone": "trust.example.net."})),
    ]


# --- http-json ------------------------------------------------------------------------------


def json_target() -> Target:
    def run(data: bytes) -> None:
        refused: BadRequest | None = None
        try:
            args = json_args(data)
        except BadRequest:
            args = None
        if args is not None:
            assert isinstance(args, dict) and _depth(args) <= MAX_JSON_DEPTH
        for model in MODELS:
            try:
                if args is not None:
                    Call(args, data, None).parse(model)
                parse_message(model, data)  # the enrolment methods' own parse
            except BadRequest as exc:
                refused = exc
        if refused is not None:
            raise refused

    seeds = [m for _, _, m in stoq_messages(fuzz_node()) if m.startswith(b"{")]
    seeds += [b"[" * 100_000, b'{"chain":' + b"[" * 40 + b"]" * 40 + b"}"]
    return Target("http-json", run, (BadRequest,), seeds, JSON_TOKENS, mutate_json)


# --- stoq-router ------------------------------------------------------------------------------


def router_target() -> Target:
    fn = fuzz_node()
    admin = PEERS.index(ADMIN)
    seeds = [bytes([admin if PERMISSIONS[(service, method)] is not Access.PUBLIC else i % 2])
             + encode_request(service, method, message)
             for i, (service, method, message) in enumerate(stoq_messages(fn))]
    names = sorted({(s, m) for s, m, _ in stoq_messages(fn)})

    def read(data: bytes) -> Request:
        reader = MessageReader(expect=FrameType.REQUEST)
        reader.feed(data)
        result = reader.finish()
        assert isinstance(result, Request)
        return result

    def run(data: bytes) -> None:
        if not data:
            return
        request = read(data[1:])
        outcome = fn.router.dispatch(request, peer_of(data[0]))
        status, body = outcome if isinstance(outcome, tuple) else fn.run(outcome)
        assert status in OK_STATUSES, (status, body[:200])
        if status != 200:
            assert json.loads(body)["status"] == status

    def structured(rng: random.Random, seed: bytes) -> bytes:
        try:
            request = read(seed[1:])
        except StoqError:
            return mutate(rng, seed)
        service, method = request.service, request.method
        if rng.random() < 0.1:
            service, method = rng.choice(names)
        message = request.message
        if (message.startswith(b"{") or not message) and rng.random() < 0.8:
            message = mutate_json(rng, message or b"{}")
        else:
            message = mutate(rng, message, JSON_TOKENS)
        peer = rng.randrange(len(PEERS)) if rng.random() < 0.2 else seed[0]
        return bytes([peer]) + encode_request(service, method, message)

    return Target("stoq-router", run, (StoqError,), seeds, JSON_TOKENS, structured,
                  structured_share=0.85)


# --- http-app ----------------------------------------------------------------------------------


def http_requests(fn: FuzzNode) -> list[bytes]:
    """``METHOD TARGET\\n`` and a body, after a peer byte."""
    chain, prechain = _chain_seeds(fn)
    key_id = fn.node.credentials.node.chain[0].extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier).value.digest.hex()
    base = "/logs/a/ct/v1/"
    lines = [
        ("GET /healthz", b""), ("GET /genesis.json", b""), ("GET /logs", b""),
        (f"POST {base}add-chain", json.dumps({"chain": chain}).encode()),
        ("POST /logs/b/ct/v1/add-pre-chain", json.dumps({"chain": prechain}).encode()),
        (f"POST {base}add-chain", b"[" * 100_000),
        (f"GET {base}get-sth", b""), (f"GET {base}get-sth-consistency?first=0&second=1", b""),
        (f"GET {base}get-proof-by-hash?hash={'A' * 43}%3D&tree_size=1", b""),
        (f"GET {base}get-entries?start=abc&end=1", b""),
        (f"GET {base}get-entry-and-proof?leaf_index=0&tree_size=1", b""),
        (f"GET {base}get-roots", b""), ("GET /logs/a/checkpoint", b""),
        ("GET /logs/a/tile/0/000", b""), ("GET /logs/a/tile/data/000.p/5", b""),
        ("GET /logs/a/issuer/" + "ab" * 32, b""),
        ("POST /ca/v1/issue", json.dumps({"csr": _csr(), "network": "alpha"}).encode()),
        ("POST /ocsp", _ocsp_request(fn)),
        ("GET /ocsp/" + base64.b64encode(_ocsp_request(fn)).decode(), b""),
        ("POST /ca/revoke", json.dumps({"certificate": chain[0], "signature": "AAAA"}).encode()),
        ("POST /ca/revoke", b"[" * 100_000),
        (f"GET /ca/crl/{key_id}/0.crl", b""), (f"GET /ca/issuers/{key_id}.der", b""),
    ]
    return [bytes([i % len(PEERS)]) + line.encode() + b"\n" + body
            for i, (line, body) in enumerate(lines)]


def app_target() -> Target:
    fn = fuzz_node()

    def run(data: bytes) -> None:
        line, _, body = data[1:].partition(b"\n")
        method, _, target = line.decode("latin-1").partition(" ")
        # What an HTTP parser lets through to the app: a token, and an origin-form target.
        if not (method.isalpha() and method.isupper() and target.startswith("/")
                and target.isascii() and target.isprintable() and " " not in target):
            return
        status, _ = fn.http(method, target, body, peer_of(data[0]))
        assert status in OK_STATUSES or status in (307, 308), status  # redirect: trailing /

    def structured(rng: random.Random, seed: bytes) -> bytes:
        line, _, body = seed.partition(b"\n")
        if body.startswith(b"{") and rng.random() < 0.7:
            return line + b"\n" + mutate_json(rng, body)
        head, _, query = line.partition(b"?")
        if query and rng.random() < 0.6:
            params = [p.partition(b"=") for p in query.split(b"&")]
            i = rng.randrange(len(params))
            params[i] = (params[i][0], b"=", rng.choice(_QUERY_VALUES))
            return head + b"?" + b"&".join(k + e + v for k, e, v in params) + b"\n" + body
        return mutate(rng, line, _PATH_TOKENS) + b"\n" + body

    return Target("http-app", run, (), http_requests(fn), JSON_TOKENS + _PATH_TOKENS, structured)


_QUERY_VALUES = (b"", b"abc", b"-1", b"1e400", b"NaN", b"Infinity", b"0x10", b"9" * 5000,
                 b"%00", b"%ff", b"1.5", b"4611686018427387905", b" 1", b"+1", b"%2B1")
_PATH_TOKENS = (b"/", b"..", b"%2F", b"%00", b"%ff", b"9" * 5000, b"-1", b"?", b"&", b"=",
                b"/tile/", b"/data/", b".p/", b".crl", b".der", b"\xff")
