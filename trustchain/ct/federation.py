"""The federation's CT logs, as the committed blocks make them: pure and deterministic.

Every node runs its own logs and makes them known with a ``node-logs`` operation:
for each log its name, public key (SubjectPublicKeyInfo), submission prefix, MMD
and the notAfter range it accepts.  Each node is one log *operator* (in the sense
of Chrome's CT policy: SCTs must come from at least two distinct operators), so
the federation's log list (:meth:`FederationLogs.log_list`, Chrome's v3 shape
with ``tiled_logs`` for the static-ct-api read path) is derived from the
committed state alone and is the same at every node, and a node's CA takes its
SCTs from logs of two *other* nodes (:meth:`FederationLogs.candidates`).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from trustchain.ct.log import ExpiryRange
from trustchain.ct.merkle import ProofError, verify_consistency
from trustchain.ct.note import (
    CosignatureV1Verifier,
    Ed25519Verifier,
    NoteError,
    cosigners,
    parse_checkpoint,
    parse_note,
    parse_vkey,
    verify_note,
)

MAX_LOGS = 16
MAX_CHECKPOINT = 16 * 1024
MAX_URL = 256
#: A log's name in its operator's URLs (``/logs/<name>/``).
LOG_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
#: Chrome's list writes an open end of a temporal interval as the far past or future.
FAR_PAST, FAR_FUTURE = datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, tzinfo=UTC)


class LogsRefused(ValueError):
    """A ``node-logs`` operation the federation does not take; the message says why."""


@dataclass(frozen=True)
class FederatedLog:
    """One log of one operator (node), as committed."""

    operator: str  # the node that runs it
    name: str
    key: bytes  # SubjectPublicKeyInfo, DER (P-256)
    url: str  # the submission (and monitoring) prefix, with its trailing slash
    mmd: int
    expiry: ExpiryRange
    #: The Ed25519 note key the log signs checkpoints with, for witnesses (a vkey named
    #: after the origin).
    note_key: str = ""

    @property
    def origin(self) -> str:
        """The checkpoint origin (static-ct-api): the prefix without scheme or last slash."""
        return self.url.removeprefix("https://").rstrip("/")

    @property
    def log_id(self) -> bytes:
        """RFC 6962 3.2: SHA-256 of the log's key."""
        return hashlib.sha256(self.key).digest()

    def entry(self) -> dict[str, Any]:
        """This log in a Chrome v3 log list's ``logs`` (and ``tiled_logs``) array."""
        entry: dict[str, Any] = {
            "description": f"TrustChain node {self.operator} log {self.name}",
            "log_id": base64.b64encode(self.log_id).decode(),
            "key": base64.b64encode(self.key).decode(), "url": self.url, "mmd": self.mmd,
            "state": {"usable": {}}}
        if self.expiry.start is not None or self.expiry.end is not None:
            entry["temporal_interval"] = {
                "start_inclusive": _rfc3339(self.expiry.start or FAR_PAST),
                "end_exclusive": _rfc3339(self.expiry.end or FAR_FUTURE)}
        return entry


@dataclass
class FederationLogs:
    #: operator -> log name -> the log, as committed.
    logs: dict[str, dict[str, FederatedLog]] = field(default_factory=dict)
    #: log ID (hex) -> why the log is no longer trusted (split-view evidence, issue 17).
    untrusted: dict[str, str] = field(default_factory=dict)
    #: operator -> its witness's cosigning key (a cosignature/v1 vkey).
    witnesses: dict[str, str] = field(default_factory=dict)
    #: origin -> (size, root hash, height): the newest checkpoint made final (cosigned by
    #: witnesses of more than 2/3 of the stake, consistent with the one before).
    final: dict[str, tuple[int, bytes, int]] = field(default_factory=dict)
    #: origin -> that final checkpoint's signed note (evidence against a fork of it).
    final_notes: dict[str, str] = field(default_factory=dict)
    #: log ID (hex) -> the evidence that made it untrusted: two checkpoint notes, signed
    #: with its key, that cannot both be true (``log-fork``), and the height.
    forks: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    #: The validators' stakes as of the block being checked (set by the node's wiring:
    #: the ledger's, so every node weighs a checkpoint's witnesses alike).
    stakes: Callable[[], Mapping[str, int]] = field(default=dict, compare=False, repr=False)

    def check(self, kind: str, requester: str, body: Mapping[str, Any]) -> None:
        """:raises LogsRefused: naming why."""
        if kind == "node-logs":
            self._logs_of(requester, body)
        elif kind == "log-final":
            self._final_of(body)
        elif kind == "log-fork":
            self._fork_of(body)

    def apply(self, kind: str, requester: str, body: Mapping[str, Any], height: int) -> None:
        if kind == "log-final":
            origin, size, root = self._final_of(body)
            self.final[origin] = (size, root, height)
            self.final_notes[origin] = body["checkpoint"]
        elif kind == "log-fork":
            log, first, second, why = self._fork_of(body)
            key = log.log_id.hex()
            self.forks[key] = (first, second, height)
            self.untrusted[key] = f"{why} (committed at height {height})"
        elif kind == "node-logs":
            self.logs[requester] = self._logs_of(requester, body)
            self.witnesses[requester] = body["witness"]

    def remove_operator(self, node: str) -> None:
        """A node removed from the federation (slashed): its logs are no longer used."""
        for log in self.logs.pop(node, {}).values():
            self.untrusted.setdefault(log.log_id.hex(), f"operator {node} was removed")
        self.witnesses.pop(node, None)

    def by_origin(self) -> dict[str, FederatedLog]:
        """Every usable log by its checkpoint origin (what a witness knows them by)."""
        return {log.origin: log for log in self.usable()}

    def quorum(self, witnesses: set[str]) -> bool:
        """Whether ``witnesses`` hold more than 2/3 of the validators' stake."""
        stakes = self.stakes()
        total = sum(stakes.values())
        return total > 0 and 3 * sum(stakes.get(w, 0) for w in witnesses) > 2 * total

    def cosigned_by(self, text: str) -> set[str]:
        """The nodes whose committed witness keys cosigned the checkpoint note ``text``."""
        try:
            note = parse_note(text)
            return cosigners(note, parse_checkpoint(note.text),
                             {node: parse_vkey(vkey) for node, vkey in self.witnesses.items()})
        except NoteError:
            return set()

    def _final_of(self, body: Mapping[str, Any]) -> tuple[str, int, bytes]:
        """A ``log-final``: the log's checkpoint (signed with its note key, cosigned by
        witnesses of more than 2/3 of the stake) and the consistency proof from the last
        final one of that log."""
        if set(body) - {"nonce"} != {"log", "checkpoint", "proof"} \
                or not isinstance(body["checkpoint"], str) \
                or len(body["checkpoint"]) > MAX_CHECKPOINT or not isinstance(body["proof"], list) \
                or len(body["proof"]) > 63:
            raise LogsRefused("log-final: log, checkpoint (a signed note) and proof")
        log = self.by_origin().get(body["log"])
        if log is None:
            raise LogsRefused(f"log-final: no usable log {str(body['log'])[:100]!r}")
        try:
            note = parse_note(body["checkpoint"])
            verify_note(note, [parse_vkey(log.note_key)])
            checkpoint = parse_checkpoint(note.text)
            proof = [base64.b64decode(p, validate=True) for p in body["proof"]]
        except (NoteError, TypeError, ValueError) as exc:
            raise LogsRefused(f"log-final: not a checkpoint of that log: {exc}") from None
        if checkpoint.origin != log.origin:
            raise LogsRefused("log-final: the checkpoint names another log")
        witnesses = self.cosigned_by(body["checkpoint"])
        if not self.quorum(witnesses):
            raise LogsRefused(f"log-final: cosigned by {len(witnesses)} witnesses, not "
                              "more than 2/3 of the stake")
        prior = self.final.get(log.origin)
        if prior is not None:
            size, root, _ = prior
            if checkpoint.size <= size:
                raise LogsRefused(f"log-final: size {checkpoint.size} is not beyond the "
                                  f"final {size}")
            try:
                verify_consistency(size, checkpoint.size, proof, root, checkpoint.root_hash)
            except ProofError as exc:
                raise LogsRefused(f"log-final: not consistent with the final checkpoint "
                                  f"of {size}: {exc}") from None
        return log.origin, checkpoint.size, checkpoint.root_hash

    def _fork_of(self, body: Mapping[str, Any]) -> tuple[FederatedLog, str, str, str]:
        """``log-fork``: two checkpoint notes of one log, each signed with its note key, that
        cannot both be true, and why (for :attr:`untrusted`).  Either one size and two
        roots, or two sizes m < n with ``proof``, a consistency proof from m to n, and
        ``prefix``, the root of the first m leaves that it joins to the larger root: a
        prefix other than the smaller checkpoint's root means the larger tree does not
        extend it (and no proof can join them: that would take a hash collision)."""
        notes = body.get("checkpoints")
        extra = {"proof", "prefix"} & set(body)
        if set(body) - {"nonce"} - extra != {"log", "operator", "checkpoints"} \
                or not isinstance(notes, list) \
                or len(notes) != 2 or not all(isinstance(n, str) and len(n) <= MAX_CHECKPOINT
                                              for n in notes):
            raise LogsRefused("log-fork: log, operator and two checkpoints (signed notes), "
                              "with proof and prefix for two sizes")
        log = next((lg for lg in self.logs.get(str(body["operator"]), {}).values()
                    if lg.origin == body["log"]), None)
        if log is None:
            raise LogsRefused(f"log-fork: node {str(body['operator'])[:40]} runs no log "
                              f"{str(body['log'])[:100]!r}")
        if log.log_id.hex() in self.forks:
            raise LogsRefused("log-fork: that log's split view is committed already")
        points = []
        for text in notes:
            try:
                note = parse_note(text)
                verify_note(note, [parse_vkey(log.note_key)])
                points.append((parse_checkpoint(note.text), text))
            except NoteError as exc:
                raise LogsRefused(f"log-fork: a checkpoint the log did not sign: {exc}") from None
        (small, first), (large, second) = sorted(points, key=lambda p: p[0].size)
        if small.origin != log.origin or large.origin != log.origin:
            raise LogsRefused("log-fork: checkpoints of another log")
        if small.size == large.size:
            if extra or small.root_hash == large.root_hash:
                raise LogsRefused("log-fork: two checkpoints of that log, one size, two roots "
                                  "(and no proof)")
            return log, first, second, (f"split view: two checkpoints of size {small.size} "
                                        "with different roots")
        if extra != {"proof", "prefix"}:
            raise LogsRefused("log-fork: checkpoints of two sizes need proof and prefix")
        try:
            proof = body["proof"]
            if not isinstance(proof, list) or len(proof) > 63:
                raise ValueError("proof: at most 63 hashes")
            prefix = base64.b64decode(str(body["prefix"]), validate=True)
            verify_consistency(small.size, large.size,
                               [base64.b64decode(str(p), validate=True) for p in proof],
                               prefix, large.root_hash)
        except (ValueError, ProofError) as exc:
            raise LogsRefused(f"log-fork: the proof does not join the prefix to the larger "
                              f"checkpoint: {exc}") from None
        if prefix == small.root_hash:
            raise LogsRefused(f"log-fork: the checkpoint of {large.size} extends the one of "
                              f"{small.size}: no split view")
        return log, first, second, (f"split view: the checkpoint of size {large.size} does "
                                    f"not extend the one of size {small.size}")

    def usable(self) -> list[FederatedLog]:
        return [log for operator in sorted(self.logs) for log in self.logs[operator].values()
                if log.log_id.hex() not in self.untrusted]

    def candidates(self, own: str, not_after: datetime) -> list[FederatedLog]:
        """The usable logs of operators other than ``own`` that accept a certificate
        expiring at ``not_after`` (the CA's candidates for SCTs)."""
        return [log for log in self.usable() if log.operator != own and not_after in log.expiry]

    def log_list(self, first: str | None = None) -> dict[str, Any]:
        """The federation's logs as a Chrome v3 log list: one operator per node (``first``,
        the node answering, leads), each log under ``logs`` (RFC 6962 API) and
        ``tiled_logs`` (static-ct-api: submission and monitoring prefix)."""
        operators = sorted(self.logs, key=lambda n: (n != first, n))
        out = []
        for node in operators:
            logs = list(self.logs[node].values())
            rows = []
            for log in logs:
                entry = log.entry()
                if log.log_id.hex() in self.untrusted:
                    entry["state"] = {"rejected": {}}
                rows.append(entry)
            tiled = [{**{k: v for k, v in row.items() if k != "url"},
                      "submission_url": row["url"], "monitoring_url": row["url"]}
                     for row in rows]
            out.append({"name": node, "email": [], "logs": rows, "tiled_logs": tiled})
        return {"version": "3.0", "operators": out}

    def _logs_of(self, node: str, body: Mapping[str, Any]) -> dict[str, FederatedLog]:
        items = body.get("logs")
        if set(body) - {"nonce"} != {"logs", "witness"} or not isinstance(items, list) \
                or not 1 <= len(items) <= MAX_LOGS:
            raise LogsRefused(f"node-logs: logs (1 to {MAX_LOGS}) and witness")
        try:
            witness = parse_vkey(body["witness"])
        except (NoteError, TypeError):
            raise LogsRefused("node-logs: witness is a cosignature/v1 vkey") from None
        if not isinstance(witness, CosignatureV1Verifier):
            raise LogsRefused("node-logs: witness is a cosignature/v1 vkey")
        out: dict[str, FederatedLog] = {}
        for item in items:
            log = _log(node, item)
            if log.name in out:
                raise LogsRefused(f"node-logs: log {log.name} is listed twice")
            for other, theirs in self.logs.items():
                if other != node and any(t.key == log.key for t in theirs.values()):
                    raise LogsRefused(f"node-logs: log {log.name}'s key is node {other}'s")
            out[log.name] = log
        return out


def _log(node: str, item: Any) -> FederatedLog:
    fields = {"name", "key", "url", "mmd", "not_after_start", "not_after_end", "note_key"}
    if not isinstance(item, dict) or set(item) != fields:
        raise LogsRefused(f"node-logs: each log has {', '.join(sorted(fields))}")
    name, url, mmd = item["name"], item["url"], item["mmd"]
    if not isinstance(name, str) or not LOG_NAME.match(name):
        raise LogsRefused("node-logs: a log's name is lower-case letters, digits and hyphens")
    if not isinstance(url, str) or len(url) > MAX_URL or \
            not re.fullmatch(r"https://[^\s/?#]+/([^\s?#]*/)?", url):
        raise LogsRefused("node-logs: url is an https prefix ending in /")
    if not isinstance(mmd, int) or isinstance(mmd, bool) or not 1 <= mmd <= 86400:
        raise LogsRefused("node-logs: mmd is 1 to 86400 seconds")
    try:
        key = base64.b64decode(item["key"], validate=True)
        public = load_der_public_key(key)
    except (TypeError, ValueError):
        raise LogsRefused("node-logs: key is a base64 SubjectPublicKeyInfo") from None
    if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != "secp256r1":
        raise LogsRefused("node-logs: a log's key is ECDSA P-256 (RFC 6962)")
    try:
        expiry = ExpiryRange(_time(item["not_after_start"]), _time(item["not_after_end"]))
    except ValueError as exc:
        raise LogsRefused(f"node-logs: {exc}") from None
    log = FederatedLog(node, name, key, url, mmd, expiry, item["note_key"])
    try:
        note_key = parse_vkey(log.note_key)
    except (NoteError, TypeError):
        raise LogsRefused("node-logs: note_key is an Ed25519 vkey") from None
    if not isinstance(note_key, Ed25519Verifier) or note_key.name != log.origin:
        raise LogsRefused(f"node-logs: note_key is an Ed25519 vkey named {log.origin}")
    return log


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 40:
        raise ValueError("not_after bounds are RFC 3339 times or null")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("not_after bounds are RFC 3339 times or null") from None
    if parsed.tzinfo is None:
        raise ValueError("not_after bounds need a time zone")
    return parsed


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def announcement(logs: list[FederatedLog], witness: str) -> dict[str, Any]:
    """The body of a ``node-logs`` operation announcing ``logs`` and the node's witness key
    (``witness``, a cosignature/v1 vkey)."""
    return {"witness": witness, "logs": [{
        "name": log.name, "key": base64.b64encode(log.key).decode(), "url": log.url,
        "mmd": log.mmd,
        "not_after_start": _rfc3339(log.expiry.start) if log.expiry.start else None,
        "not_after_end": _rfc3339(log.expiry.end) if log.expiry.end else None,
        "note_key": log.note_key}
        for log in logs]}
