"""The wire form of consensus messages: canonical JSON, read strictly.

A message is one canonical JSON object (:mod:`trustchain.canonical`) with a
``"type"`` of ``"vote"``, ``"proposal"`` or ``"decision"``; bytes are
lower-case hex, a block carries its operations (hex).  Examples::

    {"block":"<32-byte hash or empty for nil>","height":5,"kind":"prevote",
     "pq_signature":"","round":0,"sender":"v1","signature":"<64 bytes>","type":"vote"}
    {"block":{"height":5,"operations":["<hex>"],"previous":"<hex>","proposer":"v2"},
     "height":5,"pq_signature":"","round":0,"sender":"v2","signature":"...",
     "type":"proposal","valid_round":-1}
    {"block":{...},"pq_signatures":[["v1","<hex>"]],"round":0,"sender":"v3",
     "signatures":[["v1","<hex>"],["v2","<hex>"]],"type":"decision"}

The signatures travel as they were made, so a decoded message verifies in
:meth:`~trustchain.consensus.tendermint.Tendermint.receive` exactly as the
sent one did.  Reading is strict because the bytes come from peers: only
the canonical byte form, exactly the listed fields, integers that are ints
(not booleans), no negative heights or rounds, fixed sizes for hashes and
signatures, and bounds on the total size and on every count.  Anything else
raises :class:`~trustchain.errors.ConsensusCodecError`, and nothing else is
raised (the fuzz suite holds the decoder to this).
"""

from __future__ import annotations

import re
from typing import Any

from trustchain.canonical import canonical_json, parse_canonical_json
from trustchain.consensus.messages import Block, Decision, Message, Proposal, Vote, VoteKind
from trustchain.errors import CanonicalJSONError, ConsensusCodecError

#: Largest encoded message: a proposal of a full block with its proofs fits many times over.
MAX_MESSAGE_SIZE = 4 * 1024 * 1024
#: Operations per block on the wire (the ledger accepts far fewer; this only bounds the work).
MAX_OPERATIONS = 4096
#: Signatures per commit certificate: one per validator at most.
MAX_SIGNATURES = 10_000
#: Longest validator id (node ids are 32 hex characters).
MAX_ID_LENGTH = 128
HASH_SIZE = 32
SIGNATURE_SIZE = 64  # Ed25519
PQ_SIGNATURE_SIZE = 3309  # ML-DSA-65

_HEX = re.compile(r"(?:[0-9a-f]{2})*")
_FIELDS = {
    "vote": {"type", "kind", "height", "round", "block", "sender", "signature", "pq_signature"},
    "proposal": {"type", "height", "round", "valid_round", "block", "sender", "signature",
                 "pq_signature"},
    "decision": {"type", "block", "round", "signatures", "pq_signatures", "sender"},
}
_BLOCK_FIELDS = {"height", "previous", "proposer", "operations"}


# --- encoding --------------------------------------------------------------------------------


def _block_json(block: Block) -> dict[str, Any]:
    return {"height": block.height, "previous": block.previous.hex(), "proposer": block.proposer,
            "operations": [op.hex() for op in block.operations]}


def encode_message(msg: Message) -> bytes:
    """The canonical JSON of a vote, proposal or decision, signatures included."""
    value: dict[str, Any]
    if isinstance(msg, Vote):
        value = {"type": "vote", "kind": msg.kind.value, "height": msg.height, "round": msg.round,
                 "block": msg.block.hex(), "sender": msg.sender,
                 "signature": msg.signature.hex(), "pq_signature": msg.pq_signature.hex()}
    elif isinstance(msg, Proposal):
        value = {"type": "proposal", "height": msg.height, "round": msg.round,
                 "valid_round": msg.valid_round, "block": _block_json(msg.block),
                 "sender": msg.sender, "signature": msg.signature.hex(),
                 "pq_signature": msg.pq_signature.hex()}
    elif isinstance(msg, Decision):
        value = {"type": "decision", "block": _block_json(msg.block), "round": msg.round,
                 "signatures": [[s, sig.hex()] for s, sig in msg.signatures],
                 "pq_signatures": [[s, sig.hex()] for s, sig in msg.pq_signatures],
                 "sender": msg.sender}
    else:
        raise TypeError(f"not a consensus message: {type(msg).__name__}")
    return canonical_json(value)


def encode_block(decision: Decision) -> bytes:
    """A committed block with its commit certificate: the decision's encoding."""
    return encode_message(decision)


def encode_bare_block(block: Block) -> bytes:
    """A block alone (what a node stores for the lock it may have to restore)."""
    return canonical_json(_block_json(block))


# --- decoding --------------------------------------------------------------------------------


def _parse(data: bytes) -> Any:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ConsensusCodecError("a consensus message is bytes")
    if len(data) > MAX_MESSAGE_SIZE:
        raise ConsensusCodecError(f"consensus message of {len(data)} bytes; at most "
                                  f"{MAX_MESSAGE_SIZE}")
    try:
        return parse_canonical_json(bytes(data))
    except (CanonicalJSONError, RecursionError) as exc:
        raise ConsensusCodecError(f"consensus message: {exc}") from None


def _fields(value: Any, expected: set[str], what: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise ConsensusCodecError(f"{what}: an object is required")
    if set(value) != expected:
        missing, extra = sorted(expected - set(value)), sorted(set(value) - expected)
        raise ConsensusCodecError(f"{what}: missing fields {missing}, unknown fields {extra}")
    return value


def _int(value: Any, what: str, minimum: int = 0) -> int:
    if type(value) is not int:
        raise ConsensusCodecError(f"{what}: an integer is required")
    if value < minimum:
        raise ConsensusCodecError(f"{what}: {value} is below {minimum}")
    return value


def _id(value: Any, what: str) -> str:
    if type(value) is not str or not 0 < len(value) <= MAX_ID_LENGTH:
        raise ConsensusCodecError(f"{what}: a validator id of 1 to {MAX_ID_LENGTH} characters")
    return value


def _hex(value: Any, what: str, sizes: tuple[int, ...] | None = None) -> bytes:
    if type(value) is not str or not _HEX.fullmatch(value):
        raise ConsensusCodecError(f"{what}: lower-case hex is required")
    raw = bytes.fromhex(value)
    if sizes is not None and len(raw) not in sizes:
        raise ConsensusCodecError(f"{what}: {len(raw)} bytes, not one of {sizes}")
    return raw


def _list(value: Any, what: str, limit: int) -> list[Any]:
    if type(value) is not list:
        raise ConsensusCodecError(f"{what}: a list is required")
    if len(value) > limit:
        raise ConsensusCodecError(f"{what}: {len(value)} items; at most {limit}")
    return value


def _block(value: Any) -> Block:
    fields = _fields(value, _BLOCK_FIELDS, "block")
    operations = _list(fields["operations"], "block.operations", MAX_OPERATIONS)
    return Block(_int(fields["height"], "block.height"),
                 _hex(fields["previous"], "block.previous", (HASH_SIZE,)),
                 _id(fields["proposer"], "block.proposer"),
                 tuple(_hex(op, "block.operations[]") for op in operations))


def _signatures(value: Any, what: str, size: int) -> tuple[tuple[str, bytes], ...]:
    pairs = []
    for pair in _list(value, what, MAX_SIGNATURES):
        if type(pair) is not list or len(pair) != 2:
            raise ConsensusCodecError(f"{what}: [validator id, signature] pairs are required")
        pairs.append((_id(pair[0], what), _hex(pair[1], what, (size,))))
    return tuple(pairs)


def decode_message(data: bytes) -> Message:
    """Read a message a peer sent.

    :raises ConsensusCodecError: for anything but the exact encoding of a
        well-formed vote, proposal or decision within the bounds above.
    """
    value = _parse(data)
    if type(value) is not dict or type(value.get("type")) is not str \
            or value["type"] not in _FIELDS:
        raise ConsensusCodecError("consensus message: an object with a known \"type\"")
    kind = value["type"]
    fields = _fields(value, _FIELDS[kind], kind)
    if kind == "decision":
        return Decision(_block(fields["block"]), _int(fields["round"], "decision.round"),
                        _signatures(fields["signatures"], "decision.signatures", SIGNATURE_SIZE),
                        _id(fields["sender"], "decision.sender"),
                        _signatures(fields["pq_signatures"], "decision.pq_signatures",
                                    PQ_SIGNATURE_SIZE))
    height = _int(fields["height"], f"{kind}.height")
    round_ = _int(fields["round"], f"{kind}.round")
    sender = _id(fields["sender"], f"{kind}.sender")
    signature = _hex(fields["signature"], f"{kind}.signature", (SIGNATURE_SIZE,))
    pq_signature = _hex(fields["pq_signature"], f"{kind}.pq_signature", (0, PQ_SIGNATURE_SIZE))
    if kind == "vote":
        if fields["kind"] not in ("prevote", "precommit"):
            raise ConsensusCodecError("vote.kind: \"prevote\" or \"precommit\"")
        return Vote(VoteKind(fields["kind"]), height, round_,
                    _hex(fields["block"], "vote.block", (0, HASH_SIZE)), sender, signature,
                    pq_signature)
    valid_round = _int(fields["valid_round"], "proposal.valid_round", -1)
    if valid_round >= round_:
        raise ConsensusCodecError("proposal.valid_round: -1 or a round before the proposal's")
    # A block of another height is left to the state machine: it is a signed invalid
    # proposal, which is evidence against its proposer.
    return Proposal(height, round_, _block(fields["block"]), valid_round, sender, signature,
                    pq_signature)


def decode_block(data: bytes) -> Decision:
    """Read a committed block with its commit certificate (a decision's encoding).

    :raises ConsensusCodecError: as :func:`decode_message`, or for another type.
    """
    message = decode_message(data)
    if not isinstance(message, Decision):
        raise ConsensusCodecError("a decision (block and commit certificate) is required")
    return message


def decode_bare_block(data: bytes) -> Block:
    """Read a block alone (:func:`encode_bare_block`).

    :raises ConsensusCodecError: if it is not exactly such an encoding.
    """
    return _block(_parse(data))
