"""The core of a C2SP transparency-log witness: ``add-checkpoint``, sans I/O. Pure.

https://c2sp.org/tlog-witness, "HTTP Interface" / "add-checkpoint", as of
C2SP commit 95978ca (2026-07-06, "clarify size zero and size match handling"),
which changed the same-size-different-root answer from v1.0.0's 409 to 422.
Cosignatures are https://c2sp.org/tlog-cosignature Ed25519 cosignature/v1
(:mod:`trustchain.ct.note`); consistency proofs are RFC 6962 section 2.1.2,
checked by :func:`trustchain.ct.merkle.verify_consistency`.

The caller owns the I/O: it reads the body, looks up the stored state of the
origin, calls :meth:`Witness.add_checkpoint`, and for a 200 answer MUST
persist :attr:`Outcome.update` with a compare-and-swap on the old size
(:class:`trustchain.storage.witness.WitnessStore`) before it replies; if the
swap loses, it must not send the cosignature (decide again on the new state).
Checking the old size and persisting are then atomic, which the spec requires
so that two racing requests cannot roll the witness back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from trustchain.ct.merkle import EMPTY_ROOT, ProofError, verify_consistency
from trustchain.ct.note import (
    MAX_U63,
    Checkpoint,
    CosignatureV1Signer,
    Note,
    NoteError,
    NoteVerifier,
    parse_checkpoint,
    parse_decimal,
    parse_hash,
    parse_note,
    verify_note,
)
from trustchain.errors import RemoteError

#: "The client MUST NOT send more than 63 consistency proof lines."
MAX_PROOF_LINES = 63
#: The 409 answer's content type (tlog-witness).
SIZE_CONTENT_TYPE = "text/x.tlog.size"
#: The spec names no content type for the other answers; this is what Go's
#: net/http (litewitness) sends for both the cosignature lines and error text.
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"

OK, BAD_REQUEST, FORBIDDEN, NOT_FOUND, CONFLICT, UNPROCESSABLE = 200, 400, 403, 404, 409, 422


class RequestError(RemoteError):
    """An add-checkpoint request body is malformed."""


@dataclass(frozen=True)
class AddCheckpointRequest:
    """A parsed request body: the old size, the proof, and the signed checkpoint (unverified)."""

    old_size: int
    proof: tuple[bytes, ...]
    note: Note

    @property
    def origin(self) -> str:
        """The checkpoint's first line: which log's keys to check the note with."""
        return self.note.text.split("\n", 1)[0]


def parse_add_checkpoint(body: bytes) -> AddCheckpointRequest:
    """Split an add-checkpoint body: ``old <N>``, proof lines, a blank line, a signed note.

    The checkpoint text is not parsed here: it is only looked at once a
    trusted key has signed it (signed-note: the text "MUST be ignored unless").

    :raises RequestError: if the body breaks the request format.
    """
    end = body.find(b"\n\n")
    if end < 0:
        raise RequestError("the body has no empty line before the checkpoint")
    try:
        header = body[:end].decode("ascii").split("\n")
    except UnicodeError:
        raise RequestError("the old size and proof lines are ASCII") from None
    if not header[0].startswith("old "):
        raise RequestError("the body starts with an 'old <size>' line")
    if len(header) - 1 > MAX_PROOF_LINES:
        raise RequestError(f"more than {MAX_PROOF_LINES} consistency proof lines")
    try:
        old_size = parse_decimal(header[0][len("old "):])
        proof = tuple(parse_hash(line) for line in header[1:])
        note = parse_note(body[end + 2:])
    except NoteError as exc:
        raise RequestError(str(exc)) from None
    return AddCheckpointRequest(old_size, proof, note)


@dataclass(frozen=True)
class LogState:
    """The latest checkpoint a witness cosigned for one log."""

    size: int
    root_hash: bytes


@dataclass(frozen=True)
class StateUpdate:
    """What the caller must persist, by compare-and-swap on ``old_size``, before replying."""

    origin: str
    old_size: int
    new_size: int
    new_hash: bytes


@dataclass(frozen=True)
class Outcome:
    """The answer to one request: status, body and content type, and for a 200 the update.

    ``reason`` is for logs.  A 422 means a log whose signature verified
    presented an inconsistent checkpoint: the spec lets the witness keep the
    request as possible evidence of misbehaviour.
    """

    status: int
    body: bytes
    content_type: str
    reason: str
    update: StateUpdate | None = None
    checkpoint: Checkpoint | None = None


def _refuse(status: int, reason: str, checkpoint: Checkpoint | None = None) -> Outcome:
    return Outcome(status, reason.encode() + b"\n", TEXT_CONTENT_TYPE, reason, None, checkpoint)


def conflict(stored_size: int, checkpoint: Checkpoint | None = None) -> Outcome:
    """The 409 answer: the size the witness last cosigned, a newline, ``text/x.tlog.size``."""
    return Outcome(CONFLICT, f"{stored_size}\n".encode(), SIZE_CONTENT_TYPE,
                   f"the old size does not match the latest cosigned size {stored_size}",
                   None, checkpoint)


class Witness:
    """A witness's configuration: the logs it knows and its cosigning key(s).

    ``logs`` maps each origin to the keys it trusts for that log (any
    :class:`~trustchain.ct.note.NoteVerifier`, e.g. an Ed25519 vkey).
    """

    def __init__(self, logs: Mapping[str, Sequence[NoteVerifier]],
                 cosigners: Sequence[CosignatureV1Signer]) -> None:
        if not cosigners:
            raise ValueError("a witness needs at least one cosigning key")
        self.logs = {origin: tuple(keys) for origin, keys in logs.items()}
        self.cosigners = tuple(cosigners)

    def add_checkpoint(self, body: bytes, state: Callable[[str], LogState | None],
                       timestamp: int) -> Outcome:
        """Parse and decide one add-checkpoint request; ``state`` reads the stored state."""
        try:
            request = parse_add_checkpoint(body)
        except RequestError as exc:
            return _refuse(BAD_REQUEST, f"malformed request: {exc}")
        stored = state(request.origin) if request.origin in self.logs else None
        return self.decide(request, stored, timestamp)

    def decide(self, request: AddCheckpointRequest, stored: LogState | None,
               timestamp: int) -> Outcome:
        """The spec's checks, in its order; ``stored`` is None for a log never cosigned.

        ``timestamp`` (POSIX seconds) goes into the cosignature and must not be
        zero ("The cosignature MUST NOT omit the timestamp").
        """
        if not 0 < timestamp <= MAX_U63:
            raise ValueError("a witness cosignature's timestamp is 1 to 2**63 - 1")
        keys = self.logs.get(request.origin)
        if keys is None:
            return _refuse(NOT_FOUND, f"unknown log {request.origin[:100]!r}")
        try:
            verify_note(request.note, keys)
        except NoteError as exc:  # none verifies, a trusted key's fails, or ambiguous keys
            return _refuse(FORBIDDEN, str(exc))
        try:
            checkpoint = parse_checkpoint(request.note.text)
        except NoteError as exc:
            return _refuse(BAD_REQUEST, f"not a checkpoint: {exc}")
        if request.old_size > checkpoint.size:
            return _refuse(BAD_REQUEST, "the old size is larger than the checkpoint's", checkpoint)
        stored_size = stored.size if stored is not None else 0
        if request.old_size != stored_size:
            return conflict(stored_size, checkpoint)
        if checkpoint.size == 0 and checkpoint.root_hash != EMPTY_ROOT:
            return _refuse(UNPROCESSABLE, "a checkpoint of size 0 has the empty tree's root",
                           checkpoint)
        # Old size 0 (never cosigned, or the empty tree): the proof must be empty,
        # and verify_consistency checks exactly that from the empty root.
        old_root = stored.root_hash if stored is not None else EMPTY_ROOT
        try:
            verify_consistency(request.old_size, checkpoint.size, request.proof, old_root,
                               checkpoint.root_hash)
        except ProofError as exc:
            return _refuse(UNPROCESSABLE, f"inconsistent with the cosigned checkpoint: {exc}",
                           checkpoint)
        lines = "".join(c.cosign(checkpoint, timestamp).line() for c in self.cosigners)
        update = StateUpdate(checkpoint.origin, request.old_size, checkpoint.size,
                             checkpoint.root_hash)
        return Outcome(OK, lines.encode(), TEXT_CONTENT_TYPE,
                       f"cosigned {checkpoint.origin} at size {checkpoint.size}", update, checkpoint)
