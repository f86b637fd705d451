"""Gathering validators' endorsements: the stake proof of an operation, over stoq/1.

Operations that change who takes part (a node's admission, a change of a
validator's stake) carry a proof of stake: signatures of validators holding
more than the quorum of the stake, over the operation's digest as of a
recent committed block (its anchor).  The node that submits such an
operation asks every connected validator for its signature
(``consensus.endorse``, node to node) and signs itself if it is one; each
validator endorses only once

* the operation's other proofs verify, as they will when a block carries it
  (:meth:`~trustchain.consensus.ledger.Ledger.endorsable`), and
* its own operator's policy allows it (:class:`EndorsementPolicy`): an
  admission asks for no more stake than ``admission_max_stake``; a change of
  stake or of the federation's configuration was asked for on this very node
  by its operator (``trustchain federation validator|configure``) within
  :data:`CONSENT_SECONDS`.

Each signature is checked on arrival, so a validator that answers with a bad
one is not counted; what it takes is reported when too little stake signed.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidSignature

from transport.client import ConnectError, StreamError
from transport.peers import Peers
from trustchain.canonical import canonical_json
from trustchain.consensus.ledger import Ledger
from trustchain.consensus.operations import (
    Entry,
    Operation,
    OperationKind,
    StakePart,
    decode_entry,
)
from trustchain.consensus.proofs import ProofError
from trustchain.consensus.proofs.stake import commit_message, verify_pq
from trustchain.errors import BadRequest, Unavailable
from trustchain.stoq.framing import Status

SERVICE = "consensus"
#: How long an operator's consent to a change of stake stands.
CONSENT_SECONDS = 3600.0
#: How long a validator may take to answer an endorsement request.
ENDORSE_TIMEOUT = 10.0

Signer = Callable[[int, bytes, bytes], tuple[bytes, bytes]]


class EndorsementPolicy:
    """What this validator's operator lets it endorse (see the module's docstring)."""

    def __init__(self, *, admission_max_stake: int, clock: Callable[[], float]) -> None:
        self.admission_max_stake = admission_max_stake
        self._clock = clock
        #: (kind, canonical body) of what the operator asked for -> when the consent lapses.
        self._consents: dict[tuple[str, bytes], float] = {}

    def consent(self, operation: Operation) -> None:
        """This node's operator asks for ``operation`` (a change of stake or of the
        federation's configuration): endorse it, whichever node asks, for a while."""
        now = self._clock()
        self._consents = {k: t for k, t in self._consents.items() if t > now}
        self._consents[_consent_key(operation)] = now + CONSENT_SECONDS

    def withdraw(self, operation: Operation) -> None:
        """A change was committed: consents to other changes of the same thing (that
        node's stake; the configuration) are spent, so none is revived later."""
        if operation.kind is OperationKind.VALIDATOR_CHANGE:
            node = operation.body.get("node_id")
            self._consents = {k: t for k, t in self._consents.items()
                              if k[0] != operation.kind or json.loads(k[1])["node_id"] != node}
        elif operation.kind is OperationKind.FEDERATION_CONFIG:
            self._consents = {k: t for k, t in self._consents.items() if k[0] != operation.kind}

    def check(self, entry: Entry) -> None:
        """:raises ProofError: naming the policy that refuses ``entry``."""
        operation = entry.operation
        body = operation.body
        if operation.kind is OperationKind.NODE_ADMISSION:
            if body.get("stake", 0) > self.admission_max_stake:
                raise ProofError(f"endorse: this validator endorses admissions with a stake of "
                                 f"at most {self.admission_max_stake} (admission_max_stake)")
        elif operation.kind in CONSENTED:
            lapses = self._consents.get(_consent_key(operation))
            if lapses is None or lapses <= self._clock():
                raise ProofError(f"endorse: this validator's operator has not asked for this "
                                 f"{operation.kind} ({CONSENTED[operation.kind]}, on this node)")
        else:
            raise ProofError(f"endorse: {operation.kind} operations are not endorsed")


#: Operations a validator endorses only at its operator's request, and the command.
CONSENTED = {OperationKind.VALIDATOR_CHANGE: "trustchain federation validator",
             OperationKind.FEDERATION_CONFIG: "trustchain federation configure"}


def _consent_key(operation: Operation) -> tuple[str, bytes]:
    return operation.kind.value, canonical_json(operation.body)


class Endorsements:
    def __init__(self, node_id: str, ledger: Ledger, peers: Peers, signer: Signer,
                 policy: EndorsementPolicy) -> None:
        self._node_id = node_id
        self._ledger = ledger
        self._peers = peers
        self._signer = signer
        self.policy = policy

    def endorse(self, data: bytes) -> dict[str, Any]:
        """``consensus.endorse``: this validator's signatures over the operation in ``data``.

        :raises BadRequest: naming why this validator does not endorse it.
        """
        try:
            entry = decode_entry(data)
            if self._node_id not in self._ledger.validators:
                raise ProofError("endorse: this node is not a validator")
            height, block = self._ledger.endorsable(entry)
            self.policy.check(entry)
        except ProofError as exc:
            raise BadRequest(str(exc)) from None
        ed, ml = self._signer(height, block, entry.operation.digest)
        return {"node_id": self._node_id, "height": height, "signature": _b64(ed),
                "pq_signature": _b64(ml)}

    async def gather(self, entry: Entry) -> Entry:
        """``entry`` with its stake proof, from every validator that endorses it.

        :raises BadRequest: the operation itself is refused (its proofs, this node's rules).
        :raises Unavailable: validators holding too little stake endorsed it (with why).
        """
        try:
            height, block = self._ledger.endorsable(entry)
        except ProofError as exc:
            raise BadRequest(str(exc)) from None
        validators = dict(self._ledger.validators)
        message = commit_message(self._ledger.chain_id, height, 0, block, entry.operation.digest)
        data = entry.encode()
        asked = [n for n in validators if n != self._node_id]
        answers = await asyncio.gather(*(self._ask(n, data) for n in asked))
        if self._node_id in validators:
            try:
                answers.append(self.endorse(data))
            except BadRequest as exc:
                answers.append(f"{self._node_id}: {exc}")
        signatures, pq_signatures, refusals = [], [], []
        signed = 0
        for node_id, answer in zip([*asked, self._node_id], answers, strict=False):
            if isinstance(answer, str):
                refusals.append(answer)
                continue
            try:
                ed, ml = _unb64(answer["signature"]), _unb64(answer["pq_signature"])
            except (KeyError, TypeError, ValueError):
                refusals.append(f"{node_id}: an unreadable answer")
                continue
            validator = validators[node_id]
            try:
                validator.public_key.verify(ed, message)
            except InvalidSignature:  # (a signature of the wrong length too)
                refusals.append(f"{node_id}: a signature that does not verify")
                continue
            if validator.pq_key is not None and not verify_pq(validator.pq_key, message, ml):
                refusals.append(f"{node_id}: an ML-DSA-65 signature that does not verify")
                continue
            signatures.append((node_id, _b64(ed)))
            if validator.pq_key is not None:
                pq_signatures.append((node_id, _b64(ml)))
            signed += validator.stake
        total = sum(v.stake for v in validators.values())
        params = self._ledger.parameters
        if signed * params.stake_quorum_denominator <= total * params.stake_quorum_numerator:
            raise Unavailable(
                f"validators holding {signed} of {total} stake endorsed it; more than "
                f"{params.stake_quorum_numerator}/{params.stake_quorum_denominator} is needed"
                + (f" ({'; '.join(refusals)})" if refusals else ""))
        stake = StakePart(height=height, round=0, signatures=signatures,
                          pq_signatures=pq_signatures)
        return entry.model_copy(update={"proofs": entry.proofs.model_copy(
            update={"stake": stake})})

    async def _ask(self, node_id: str, data: bytes) -> dict[str, Any] | str:
        """A validator's endorsement, or why there is none."""
        try:
            response = await asyncio.wait_for(
                self._peers.request(node_id, SERVICE, "endorse", data), ENDORSE_TIMEOUT)
        except (ConnectError, StreamError, TimeoutError) as exc:
            return f"{node_id}: not reachable ({exc or 'timeout'})"
        if response.status != Status.OK:
            return f"{node_id}: {_reason(response.message)}"
        try:
            answer = json.loads(response.message)
        except ValueError:
            return f"{node_id}: an unreadable answer"
        return answer if isinstance(answer, dict) else f"{node_id}: an unreadable answer"


def _reason(message: bytes) -> str:
    """The detail of a problem document, or the message as it came."""
    try:
        return str(json.loads(message).get("detail", ""))[:300] or message.decode()[:300]
    except (ValueError, AttributeError):
        return message.decode("utf-8", "replace")[:300]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)
