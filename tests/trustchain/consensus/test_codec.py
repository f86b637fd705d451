"""The consensus wire codec: round trips keep signatures that the state machine verifies,
and any other bytes are refused with ConsensusCodecError, never anything else."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, mldsa
from hypothesis import given, settings
from hypothesis import strategies as st

from trustchain.canonical import canonical_json
from trustchain.consensus.codec import (
    MAX_MESSAGE_SIZE,
    MAX_OPERATIONS,
    PQ_SIGNATURE_SIZE,
    SIGNATURE_SIZE,
    decode_bare_block,
    decode_block,
    decode_message,
    encode_bare_block,
    encode_block,
    encode_message,
)
from trustchain.consensus.messages import (
    Block,
    Decision,
    Message,
    Proposal,
    Vote,
    VoteKind,
    sign,
)
from trustchain.consensus.proofs.stake import ValidatorStake
from trustchain.consensus.tendermint import GENESIS_PREVIOUS, Tendermint
from trustchain.errors import ConsensusCodecError

CHAIN = "codec-test"

# --- generated messages ----------------------------------------------------------------------

ids = st.text(min_size=1, max_size=40)
hashes = st.binary(min_size=32, max_size=32)
signatures = st.binary(min_size=SIGNATURE_SIZE, max_size=SIGNATURE_SIZE)
pq_signatures = st.one_of(st.just(b""), st.binary(min_size=PQ_SIGNATURE_SIZE,
                                                  max_size=PQ_SIGNATURE_SIZE))
heights = st.integers(0, 2**53 - 1)
blocks = st.builds(Block, heights, hashes, ids, st.lists(st.binary(max_size=64), max_size=5)
                   .map(tuple))
votes = st.builds(Vote, st.sampled_from(VoteKind), heights, st.integers(0, 2**53 - 1),
                  st.one_of(st.just(b""), hashes), ids, signatures, pq_signatures)


@st.composite
def proposals(draw: st.DrawFn) -> Proposal:
    round_ = draw(st.integers(0, 2**53 - 1))
    return Proposal(draw(heights), round_, draw(blocks), draw(st.integers(-1, round_ - 1)),
                    draw(ids), draw(signatures), draw(pq_signatures))


decisions = st.builds(Decision, blocks, st.integers(0, 2**53 - 1),
                      st.lists(st.tuples(ids, signatures), max_size=5).map(tuple), ids,
                      st.lists(st.tuples(ids, st.binary(min_size=PQ_SIGNATURE_SIZE,
                                                        max_size=PQ_SIGNATURE_SIZE)),
                               max_size=2).map(tuple))
messages = st.one_of(votes, proposals(), decisions)


def same(a: Message, b: Message) -> bool:
    """Equal including the signatures (the dataclasses leave them out of ``==``)."""
    if a != b or type(a) is not type(b):
        return False
    if isinstance(a, Decision) and isinstance(b, Decision):
        return (a.signatures, a.pq_signatures, a.block.operations) == \
            (b.signatures, b.pq_signatures, b.block.operations)
    assert not isinstance(a, Decision) and not isinstance(b, Decision)
    return (a.signature, a.pq_signature) == (b.signature, b.pq_signature)


@settings(max_examples=200, derandomize=True, database=None)
@given(messages)
def test_round_trip_keeps_every_field_and_signature(message: Message) -> None:
    data = encode_message(message)
    decoded = decode_message(data)
    assert same(decoded, message)
    assert encode_message(decoded) == data  # one byte form per message
    if isinstance(message, Decision):
        assert same(decode_block(encode_block(message)), message)
    else:
        block = message.block if isinstance(message, Proposal) else None
        if block is not None:
            assert decode_bare_block(encode_bare_block(block)) == block


# --- signatures verify after the trip --------------------------------------------------------


class Accept:
    def pending(self) -> bool:
        return False

    def propose(self, height: int, previous: bytes) -> tuple[bytes, ...]:
        return (b"op %d" % height,)

    def valid(self, block: Block) -> bool:
        return True

    def committed(self, block: Block) -> None:
        return None


def network(hybrid: bool) -> tuple[dict[str, ed25519.Ed25519PrivateKey],
                                   dict[str, mldsa.MLDSA65PrivateKey], dict[str, ValidatorStake]]:
    keys = {f"v{i}": ed25519.Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(b"codec %d" % i).digest()) for i in range(4)}
    pq = {n: mldsa.MLDSA65PrivateKey.generate() for n in keys} if hybrid else {}
    stakes = {n: ValidatorStake(k.public_key(), 1, pq[n].public_key() if pq else None)
              for n, k in keys.items()}
    return keys, pq, stakes


def trip(message: Message) -> Message:
    return decode_message(encode_message(message))


@pytest.mark.parametrize("hybrid", [False, True])
def test_decoded_messages_verify_in_the_state_machine(hybrid: bool) -> None:
    keys, pq, stakes = network(hybrid)
    node = Tendermint("v0", keys["v0"], CHAIN, stakes, Accept(), pq_key=pq.get("v0"))
    node.start(0.0)
    block = Block(1, GENESIS_PREVIOUS, "v1", (b"op 1",))
    proposal = sign(Proposal(1, 0, block, -1, "v1"), keys["v1"], CHAIN, pq.get("v1"))
    out = node.receive(trip(proposal), 0.1)
    assert [(m.kind, m.block) for m in out.broadcast if isinstance(m, Vote)] == \
        [(VoteKind.PREVOTE, block.hash)]  # accepted: it prevotes the block
    for sender in ("v1", "v2"):
        vote = sign(Vote(VoteKind.PREVOTE, 1, 0, block.hash, sender), keys[sender], CHAIN,
                    pq.get(sender))
        out = node.receive(trip(vote), 0.2)
    assert [(m.kind, m.block) for m in out.broadcast if isinstance(m, Vote)] == \
        [(VoteKind.PRECOMMIT, block.hash)]
    for sender in ("v1", "v2"):
        vote = sign(Vote(VoteKind.PRECOMMIT, 1, 0, block.hash, sender), keys[sender], CHAIN,
                    pq.get(sender))
        out = node.receive(trip(vote), 0.3)
    assert [c.block for c in out.committed] == [block]

    # A laggard accepts the decision (its certificate verifies) after the trip too.
    laggard = Tendermint("v3", keys["v3"], CHAIN, stakes, Accept(), pq_key=pq.get("v3"))
    decision = trip(out.committed[0].decision("v0"))
    assert isinstance(decision, Decision)
    assert [c.block for c in laggard.receive(decision, 0.4).committed] == [block]


def test_a_changed_signature_no_longer_counts() -> None:
    keys, _, stakes = network(False)
    node = Tendermint("v0", keys["v0"], CHAIN, stakes, Accept())
    node.start(0.0)
    block = Block(1, GENESIS_PREVIOUS, "v1")
    value = json.loads(encode_message(sign(Proposal(1, 0, block, -1, "v1"), keys["v1"], CHAIN)))
    value["signature"] = ("00" if value["signature"][:2] != "00" else "01") + value["signature"][2:]
    assert node.receive(decode_message(canonical_json(value)), 0.1).broadcast == []


# --- refusals ----------------------------------------------------------------------------------

VOTE = Vote(VoteKind.PREVOTE, 3, 1, b"\x01" * 32, "v1", b"\x02" * 64)
PROPOSAL = Proposal(3, 1, Block(3, b"\x03" * 32, "v1", (b"op",)), 0, "v1", b"\x02" * 64)


def edited(message: Message, **changes: Any) -> bytes:
    value = json.loads(encode_message(message))
    for key, new in changes.items():
        if new is KeyError:
            del value[key]
        else:
            value[key] = new
    return canonical_json(value)


@pytest.mark.parametrize("data", [
    b"", b"null", b"[]", b"{}", b'{"type":"vote"}', b'{"type":["vote"]}', b'{"type":"block"}',
    b"\xff\xfe", b"{" * 5000,
    encode_message(VOTE) + b" ",  # not canonical
    encode_message(VOTE).replace(b'"height":3', b'"height":3.0'),
    edited(VOTE, extra=1), edited(VOTE, sender=KeyError),
    edited(VOTE, height=-1), edited(VOTE, round=-1), edited(VOTE, height=True),
    edited(VOTE, height="3"), edited(VOTE, kind="precommitted"), edited(VOTE, kind=None),
    edited(VOTE, block="AB" * 32), edited(VOTE, block="0" * 63), edited(VOTE, block="00" * 31),
    edited(VOTE, signature="00" * 63), edited(VOTE, pq_signature="00" * 10),
    edited(VOTE, sender=""), edited(VOTE, sender="x" * 129), edited(VOTE, sender=7),
    edited(PROPOSAL, valid_round=1), edited(PROPOSAL, valid_round=-2),
    edited(PROPOSAL, block={"height": 3}),
    edited(PROPOSAL, block={"height": 3, "previous": "00" * 32, "proposer": "v1",
                            "operations": ["zz"]}),
    edited(PROPOSAL, block={"height": 3, "previous": "00" * 32, "proposer": "v1",
                            "operations": "00"}),
    edited(PROPOSAL, block={"height": 3, "previous": "00" * 32, "proposer": "v1",
                            "operations": ["00"] * (MAX_OPERATIONS + 1)}),
    edited(Decision(PROPOSAL.block, 0, (), "v1"), signatures=[["v1"]]),
    edited(Decision(PROPOSAL.block, 0, (), "v1"), signatures=[["v1", "00" * 64, "x"]]),
    edited(Decision(PROPOSAL.block, 0, (), "v1"), pq_signatures=[["v1", "00" * 64]]),
    edited(Decision(PROPOSAL.block, 0, (), "v1"), round=-1),
])
def test_malformed_messages_are_refused(data: bytes) -> None:
    with pytest.raises(ConsensusCodecError):
        decode_message(data)


def test_size_is_bounded_before_parsing() -> None:
    big = Block(3, b"\x03" * 32, "v1", (b"\x00" * (MAX_MESSAGE_SIZE // 2),))
    data = encode_message(Proposal(3, 1, big, -1, "v1", b"\x02" * 64))
    assert len(data) > MAX_MESSAGE_SIZE
    with pytest.raises(ConsensusCodecError, match="at most"):
        decode_message(data)


def test_a_block_is_a_decision() -> None:
    with pytest.raises(ConsensusCodecError, match="decision"):
        decode_block(encode_message(VOTE))


# --- anything else: decoded or refused, never another exception ---------------------------------

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**60), 2**60), st.text(max_size=8),
              st.sampled_from(["vote", "proposal", "decision", "prevote", "00" * 32])),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(sorted(
                                {"type", "kind", "height", "round", "block", "sender",
                                 "signature", "pq_signature", "valid_round", "signatures",
                                 "pq_signatures", "previous", "proposer", "operations", "x"})),
                                inner, max_size=9)),
    max_leaves=30)


def decodes_or_refuses(data: bytes) -> None:
    try:
        message = decode_message(data)
    except ConsensusCodecError:
        return
    assert encode_message(message) == data


@settings(max_examples=300, derandomize=True, database=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_decode_or_are_refused(data: bytes) -> None:
    decodes_or_refuses(data)


@settings(max_examples=300, derandomize=True, database=None)
@given(json_values)
def test_arbitrary_json_decodes_or_is_refused(value: Any) -> None:
    decodes_or_refuses(json.dumps(value, sort_keys=True, separators=(",", ":")).encode())


@settings(max_examples=300, derandomize=True, database=None)
@given(messages, st.data())
def test_a_message_with_one_field_replaced_decodes_or_is_refused(message: Message,
                                                                  data: st.DataObject) -> None:
    value = json.loads(encode_message(message))
    key = data.draw(st.sampled_from(sorted(value)))
    value[key] = data.draw(json_values)
    decodes_or_refuses(json.dumps(value, sort_keys=True, separators=(",", ":"),
                                  ensure_ascii=False).encode("utf-8", "surrogatepass"))
