"""The CA's audit log: an append-only chain of records, each hashing the one before.

Pure: :func:`next_record` builds the record that follows a head, and
:func:`verify_chain` (or :class:`ChainVerifier`, one record at a time)
checks a sequence of records; storage is :mod:`trustchain.storage.audit`.

Each record's hash is::

    SHA-256(b"trustchain-audit/1\\n" || prev_hash ||
            canonical_json({"seq", "time", "kind", "actor", "details"}))

with ``time`` in RFC 3339 UTC with microseconds (``2026-11-25T12:00:00.000000Z``),
``details`` any canonical-JSON object (:mod:`trustchain.canonical`), and the
first record (``seq`` 0) chained to 32 zero bytes.  Editing, inserting,
deleting or reordering any record therefore breaks the chain at that record,
unless every later record is rewritten too: the chain proves the log was not
edited *relative to a head hash known from elsewhere* (a copy an operator or
another node kept), and it cannot show that records were cut off the end.

Record times never go backwards: if the clock steps back, the new record
carries its predecessor's time.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from trustchain.canonical import canonical_json
from trustchain.errors import CanonicalJSONError

DOMAIN_TAG = b"trustchain-audit/1\n"
GENESIS_HASH = bytes(32)
HASH_SIZE = 32

# Record kinds written today (open-ended: any name matching KIND_PATTERN is accepted).
KIND_KEY_GENERATE = "key.generate"
KIND_KEY_EXPORT = "key.export"
KIND_KEY_RETIRE = "key.retire"
KIND_CERT_ISSUE = "cert.issue"
KIND_CERT_REVOKE = "cert.revoke"
KIND_RATELIMIT_REFUSE = "ratelimit.refuse"
KIND_LINT_REFUSE = "lint.refuse"
KIND_CA_ROTATE = "ca.rotate"
KIND_CA_SIGN_INTERMEDIATE = "ca.sign-intermediate"
KIND_PATTERN = re.compile(r"[a-z]+(\.[a-z-]+)+")

# Problem kinds reported by the verifier.
PROBLEM_SEQ = "seq"
PROBLEM_PREV_HASH = "prev_hash"
PROBLEM_HASH = "hash"
PROBLEM_TIME = "time"
PROBLEM_MALFORMED = "malformed"

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def format_time(time: datetime) -> str:
    """RFC 3339 in UTC with microseconds, e.g. ``2026-11-25T12:00:00.000000Z``."""
    if time.tzinfo is None:
        raise ValueError("audit times must be aware datetimes")
    return time.astimezone(UTC).strftime(_TIME_FORMAT)


def parse_time(text: str) -> datetime:
    """The inverse of :func:`format_time`; anything else is refused.

    :raises ValueError: if ``text`` is not exactly in that form.
    """
    time = datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=UTC)
    if format_time(time) != text:
        raise ValueError(f"{text!r} is not an audit time")
    return time


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    time: datetime
    kind: str
    actor: str
    details: dict[str, Any]
    prev_hash: bytes
    hash: bytes
    #: ``details`` as canonical JSON, as hashed (kept so that storing it encodes nothing again).
    details_json: bytes = field(default=b"", compare=False, repr=False)


def record_hash(prev_hash: bytes, seq: int, time: datetime, kind: str, actor: str,
                details: dict[str, Any]) -> bytes:
    """The hash of a record (see the module docstring).

    :raises CanonicalJSONError: if ``details`` is not canonical-JSON-able.
    """
    return _record_hash(prev_hash, seq, time, kind, actor, canonical_json(details))


def _record_hash(prev_hash: bytes, seq: int, time: datetime, kind: str, actor: str,
                 details_json: bytes) -> bytes:
    """:func:`record_hash` from the details' canonical JSON, encoded once by the caller.

    The body is the canonical JSON of the record object, its keys in code-point
    order (actor, details, kind, seq, time); only ``details`` is spliced in.
    """
    head = canonical_json({"actor": actor})[:-1]
    tail = canonical_json({"kind": kind, "seq": seq, "time": format_time(time)})[1:]
    body = head + b',"details":' + details_json + b"," + tail
    return hashlib.sha256(DOMAIN_TAG + prev_hash + body).digest()


def next_record(previous: AuditRecord | None, now: datetime, kind: str, actor: str,
                details: dict[str, Any]) -> AuditRecord:
    """The record that follows ``previous`` (``None``: the first record).

    ``details`` is copied (as its canonical JSON reads back), so later changes
    by the caller do not reach the record.

    :raises ValueError: for a kind not matching :data:`KIND_PATTERN`, an empty
        actor, naive ``now``, or details that are not a canonical-JSON object.
    """
    if not KIND_PATTERN.fullmatch(kind):
        raise ValueError(f"audit kind {kind!r} must look like 'cert.issue'")
    if not actor:
        raise ValueError("an audit record needs an actor")
    if not isinstance(details, dict):
        raise ValueError("audit details must be a JSON object")
    if now.tzinfo is None:
        raise ValueError("audit times must be aware datetimes")
    time = now.astimezone(UTC)
    if previous is None:
        seq, prev_hash = 0, GENESIS_HASH
    else:
        seq, prev_hash = previous.seq + 1, previous.hash
        time = max(time, previous.time)
    try:
        details_json = canonical_json(details)
        copied = json.loads(details_json)
        digest = _record_hash(prev_hash, seq, time, kind, actor, details_json)
    except CanonicalJSONError as exc:
        raise ValueError(f"audit details: {exc}") from None
    return AuditRecord(seq, time, kind, actor, copied, prev_hash, digest, details_json)


@dataclass(frozen=True)
class AuditProblem:
    """The first break in a chain.

    ``seq`` is the position at which the chain breaks: every record before it
    verified.  ``kind`` is one of ``seq`` (a record missing, duplicated or out
    of order), ``prev_hash`` (not chained to its predecessor), ``hash`` (the
    record's contents do not match its hash: an edited record), ``time``
    (earlier than its predecessor), ``malformed`` (a stored record that cannot
    be read back).
    """

    seq: int
    kind: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind} problem at record {self.seq}: {self.message}"


@dataclass(frozen=True)
class AuditReport:
    """``count`` records read; the first ``verified`` form an intact chain ending at
    ``head_seq``/``head_hash`` (``None``/:data:`GENESIS_HASH` when empty);
    ``problem`` is the first break, if any."""

    count: int
    verified: int
    head_seq: int | None
    head_hash: bytes
    problem: AuditProblem | None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def as_dict(self) -> dict[str, Any]:
        """JSON-able (hashes in hex), for ``--json`` output and the API."""
        problem = self.problem
        return {
            "ok": self.ok,
            "count": self.count,
            "verified": self.verified,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash.hex(),
            "problem": None if problem is None else {
                "seq": problem.seq, "kind": problem.kind, "message": problem.message},
        }


class ChainVerifier:
    """Verifies records fed one at a time, in order; keeps only the last good one.

    ``after``: a record trusted to precede the first one fed (to verify the
    rest of a chain from a known head); by default the first record must be
    the chain's first (seq 0, chained to :data:`GENESIS_HASH`).
    """

    def __init__(self, after: AuditRecord | None = None) -> None:
        self._head = after
        self._count = 0
        self._verified = 0
        self.problem: AuditProblem | None = None

    @property
    def _expected_seq(self) -> int:
        return 0 if self._head is None else self._head.seq + 1

    def feed(self, record: AuditRecord) -> AuditProblem | None:
        """Check ``record``; return the chain's first problem (this one's or an earlier one)."""
        self._count += 1
        if self.problem is None:
            self.problem = self._check(record)
            if self.problem is None:
                self._head = record
                self._verified += 1
        return self.problem

    def fail(self, seq: int, kind: str, message: str) -> AuditProblem | None:
        """Count a record the caller could not even read (``seq``: its position as stored).

        The problem is ``kind`` unless the position is itself wrong.
        """
        self._count += 1
        if self.problem is None:
            self.problem = self._check_seq(seq) or AuditProblem(self._expected_seq, kind, message)
        return self.problem

    def _check_seq(self, seq: int) -> AuditProblem | None:
        expected = self._expected_seq
        if seq == expected:
            return None
        if seq > expected:
            missing = (f"record {expected} is" if seq == expected + 1
                       else f"records {expected} to {seq - 1} are")
            return AuditProblem(expected, PROBLEM_SEQ, f"{missing} missing (found {seq})")
        return AuditProblem(expected, PROBLEM_SEQ, f"record {seq} is out of order (expected {expected})")

    def _check(self, record: AuditRecord) -> AuditProblem | None:
        expected = self._expected_seq
        problem = self._check_seq(record.seq)
        if problem is not None:
            return problem
        want_prev = GENESIS_HASH if self._head is None else self._head.hash
        if record.prev_hash != want_prev:
            return AuditProblem(expected, PROBLEM_PREV_HASH,
                                f"record {expected} is not chained to its predecessor")
        try:
            digest = record_hash(record.prev_hash, record.seq, record.time, record.kind,
                                 record.actor, record.details)
        except (CanonicalJSONError, ValueError) as exc:
            return AuditProblem(expected, PROBLEM_MALFORMED, f"record {expected} cannot be hashed: {exc}")
        if digest != record.hash:
            return AuditProblem(expected, PROBLEM_HASH,
                                f"record {expected} does not match its hash (edited)")
        if self._head is not None and record.time < self._head.time:
            return AuditProblem(expected, PROBLEM_TIME,
                                f"record {expected} is dated {format_time(record.time)}, before "
                                f"its predecessor ({format_time(self._head.time)})")
        return None

    def report(self) -> AuditReport:
        head = self._head
        return AuditReport(self._count, self._verified, None if head is None else head.seq,
                           GENESIS_HASH if head is None else head.hash, self.problem)


def verify_chain(records: Iterable[AuditRecord], after: AuditRecord | None = None) -> AuditReport:
    """Verify ``records`` (streamed, in order); report the first problem rather than raise."""
    verifier = ChainVerifier(after)
    for record in records:
        verifier.feed(record)
    return verifier.report()
