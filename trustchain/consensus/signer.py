"""A double-sign guard for a validator's consensus keys (CometBFT's "last sign state").

Tendermint is safe only if no honest validator signs two different messages
of one kind for one height and round, nor goes back to an earlier height,
round or step (a late precommit in an old round could complete a quorum
there for another block than the one decided later).  A process that
crashes and restarts forgets what it signed; :class:`SigningGuard` is built
from what it signed before (loaded from storage by the caller) and

* for a (height, round, kind) it signed before, returns that earlier signed
  message unchanged, never a second, different one;
* otherwise signs (:func:`~trustchain.consensus.messages.sign`) and
  remembers the message;
* refuses (:class:`SigningRefusedError`) a new message for a height below the
  highest it has signed at, or for an earlier round, or an earlier step of
  the same round (proposal, then prevote, then precommit), than the latest
  it signed.  A restarted :class:`~trustchain.consensus.tendermint.Tendermint`
  never asks for such a message once
  :meth:`~trustchain.consensus.tendermint.Tendermint.restore` has given it
  back its own messages (it resumes in the latest round it signed in).

Durability is the caller's part: **every message this guard newly signs must
be durable** (``ConsensusStore.record_own``, committed with
``synchronous=FULL``) **before it is sent**, and a decided block before any
message of the next height.  That suffices after a crash: a signature that
never reached the disk never left the process, so no one can hold it; every
signature anyone may hold is on disk, so the guard rebuilt from the disk
answers each such (height, round, kind) with the very message already sent,
and refuses to step behind it.  A message stored but not sent is harmless:
it is sent unchanged later.

Pure: the guard holds keys and memory, and touches no storage itself.
"""

from __future__ import annotations

from collections.abc import Iterable

from cryptography.hazmat.primitives.asymmetric import ed25519, mldsa

from trustchain.consensus.messages import Proposal, Signed, sign
from trustchain.consensus.proofs.stake import commit_message
from trustchain.errors import LocalError

#: The order of a round's steps: a proposal is signed first, a precommit last.
STEPS = {"proposal": 0, "prevote": 1, "precommit": 2}


class SigningRefusedError(LocalError):
    """Signing this message could contradict what this validator signed before."""


def kind_of(message: Signed) -> str:
    """``"proposal"``, ``"prevote"`` or ``"precommit"``."""
    return "proposal" if isinstance(message, Proposal) else message.kind.value


def _position(message: Signed) -> tuple[int, int, int]:
    return message.height, message.round, STEPS[kind_of(message)]


class SigningGuard:
    """Signs consensus messages for one validator, never contradicting an earlier signature.

    ``pq_key`` is the ML-DSA-65 key of a hybrid validator (None: Ed25519 only);
    ``signed`` is what this validator signed before (its stored messages);
    only those of the highest height among them matter, as no message of a
    lower height will be signed again.
    """

    def __init__(self, key: ed25519.Ed25519PrivateKey, pq_key: mldsa.MLDSA65PrivateKey | None,
                 chain_id: str, signed: Iterable[Signed] = ()) -> None:
        self._key = key
        self._pq_key = pq_key
        self.chain_id = chain_id
        self._height = -1
        self._latest: tuple[int, int, int] = (-1, -1, -1)
        #: (round, kind) -> the signed message, at the highest height signed at.
        self._signed: dict[tuple[int, str], Signed] = {}
        for message in sorted(signed, key=_position):
            self._remember(message)

    @property
    def height(self) -> int:
        """The highest height signed at (-1 before any signature)."""
        return self._height

    def _remember(self, message: Signed) -> None:
        if message.height > self._height:
            self._height = message.height
            self._signed = {}
        key = (message.round, kind_of(message))
        known = self._signed.get(key)
        if known is not None and known != message:
            raise SigningRefusedError(
                f"the stored messages already hold two different {key[1]}s for height "
                f"{message.height}, round {message.round}")
        self._signed.setdefault(key, message)
        self._latest = max(self._latest, _position(message))

    def sign(self, message: Signed) -> Signed:
        """``message`` signed, or the one signed before for its height, round and kind.

        :raises SigningRefusedError: for a new message behind the latest signed
            (an earlier height, round, or step).
        """
        if message.height < self._height:
            raise SigningRefusedError(
                f"refusing to sign for height {message.height}: already signed at "
                f"height {self._height}")
        if message.height == self._height:
            known = self._signed.get((message.round, kind_of(message)))
            if known is not None:
                return known
        if _position(message) < self._latest:
            raise SigningRefusedError(
                f"refusing to sign a {kind_of(message)} for height {message.height}, round "
                f"{message.round}: already signed in a later round or step")
        signed = sign(message, self._key, self.chain_id, self._pq_key)
        self._remember(signed)
        return signed

    def endorse(self, height: int, block: bytes, subject: bytes) -> tuple[bytes, bytes]:
        """Ed25519 and ML-DSA-65 signatures (empty without that key) endorsing ``subject``,
        an operation's digest, as of the committed ``block`` at ``height``: the stake proof
        of that operation (:func:`~trustchain.consensus.proofs.stake.commit_message`).

        Endorsements are not votes and need no guard: their subject is an operation's
        digest, never the block itself, so no endorsement can be taken for a commit vote.
        """
        if subject == block:
            raise SigningRefusedError("an endorsement's subject is an operation, not a block")
        message = commit_message(self.chain_id, height, 0, block, subject)
        return self._key.sign(message), self._pq_key.sign(message) if self._pq_key else b""
