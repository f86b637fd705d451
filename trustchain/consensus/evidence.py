"""Byzantine evidence: self-contained objects that prove a validator misbehaved.

Anyone holding the validator set can check evidence without trusting who
reported it: both conflicting messages carry the offender's signature.

* :class:`DuplicateVote`: two votes of one kind, height and round for
  different blocks (equivocation);
* :class:`DuplicateProposal`: two proposals of one height and round for
  different blocks by the round's proposer;
* :class:`InvalidProposal`: a signed proposal whose block breaks the rules
  (an operation without its proofs, a proof that fails): checkable by anyone
  who can evaluate the block against the chain it claims to extend;
* :class:`SplitViewCheckpoints`: two signed tree heads of one CT log with the
  same size and different roots, the proof that the log shows different
  views to different parties (RFC 6962 section 5.3's concern).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from trustchain.consensus.messages import Block, Proposal, Vote, VoteKind
from trustchain.consensus.proofs.stake import ValidatorStake
from trustchain.ct.structs import DecodeError, TreeHead
from trustchain.errors import RemoteError


class EvidenceError(RemoteError):
    """The evidence does not prove misbehaviour."""


def _check_signature(message: Vote | Proposal, chain_id: str,
                     validators: Mapping[str, ValidatorStake]) -> None:
    validator = validators.get(message.sender)
    if validator is None:
        raise EvidenceError(f"{message.sender} is not a validator")
    data = message.message(chain_id)
    try:
        validator.public_key.verify(message.signature, data)
        if validator.pq_key is not None:  # hybrid validators are framed by neither scheme alone
            validator.pq_key.verify(message.pq_signature, data)
    except InvalidSignature:
        raise EvidenceError(f"a message is not signed by {message.sender}") from None


@dataclass(frozen=True)
class DuplicateVote:
    first: Vote
    second: Vote

    @property
    def offender(self) -> str:
        return self.first.sender

    def verify(self, chain_id: str, validators: Mapping[str, ValidatorStake]) -> None:
        a, b = self.first, self.second
        if (a.kind, a.height, a.round, a.sender) != (b.kind, b.height, b.round, b.sender):
            raise EvidenceError("the votes are not of one validator, kind, height and round")
        if a.block == b.block:
            raise EvidenceError("the votes are for the same block")
        _check_signature(a, chain_id, validators)
        _check_signature(b, chain_id, validators)


@dataclass(frozen=True)
class DuplicateProposal:
    first: Proposal
    second: Proposal

    @property
    def offender(self) -> str:
        return self.first.sender

    def verify(self, chain_id: str, validators: Mapping[str, ValidatorStake]) -> None:
        a, b = self.first, self.second
        if (a.height, a.round, a.sender) != (b.height, b.round, b.sender):
            raise EvidenceError("the proposals are not of one proposer, height and round")
        if a.block.hash == b.block.hash:
            raise EvidenceError("the proposals are for the same block")
        _check_signature(a, chain_id, validators)
        _check_signature(b, chain_id, validators)


@dataclass(frozen=True)
class InvalidProposal:
    proposal: Proposal

    @property
    def offender(self) -> str:
        return self.proposal.sender

    @property
    def first(self) -> Proposal:
        return self.proposal

    def verify(self, chain_id: str, validators: Mapping[str, ValidatorStake],
               valid: Callable[[Block], bool]) -> None:
        """``valid`` is the rule set (e.g. :meth:`Ledger.valid` at the block's parent)."""
        _check_signature(self.proposal, chain_id, validators)
        if valid(self.proposal.block):
            raise EvidenceError("the proposed block is valid")


@dataclass(frozen=True)
class SplitViewCheckpoints:
    """Two tree heads signed by one log key: same size, different roots."""

    first: TreeHead
    second: TreeHead

    def verify(self, log_key: ec.EllipticCurvePublicKey) -> None:
        if self.first.size != self.second.size:
            raise EvidenceError("the heads are of different sizes (check consistency instead)")
        if self.first.root == self.second.root:
            raise EvidenceError("the heads agree")
        for head in (self.first, self.second):
            try:
                head.verify(log_key)
            except (DecodeError, InvalidSignature):
                raise EvidenceError("a head is not signed by this log") from None


Evidence = DuplicateVote | DuplicateProposal | InvalidProposal


def _vote_json(vote: Vote) -> dict[str, object]:
    return {"kind": vote.kind.value, "height": vote.height, "round": vote.round,
            "block": vote.block.hex(), "sender": vote.sender,
            "signature": base64.b64encode(vote.signature).decode(),
            "pq_signature": base64.b64encode(vote.pq_signature).decode()}


def _vote_from(data: Mapping[str, Any]) -> Vote:
    return Vote(VoteKind(data["kind"]), int(data["height"]), int(data["round"]),
                bytes.fromhex(data["block"]), str(data["sender"]),
                base64.b64decode(data["signature"], validate=True),
                base64.b64decode(data.get("pq_signature", ""), validate=True))


def evidence_body(evidence: DuplicateVote) -> dict[str, object]:
    """An equivocation as the body of an ``evidence`` operation (canonical-JSON-able)."""
    return {"type": "duplicate-vote", "first": _vote_json(evidence.first),
            "second": _vote_json(evidence.second)}


def evidence_from_body(body: Mapping[str, Any]) -> DuplicateVote:
    """:raises EvidenceError: if the body is not a well-formed duplicate-vote evidence."""
    try:
        if body.get("type") != "duplicate-vote":
            raise ValueError("unknown evidence type")
        return DuplicateVote(_vote_from(body["first"]), _vote_from(body["second"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise EvidenceError(f"malformed evidence: {exc}") from None
