"""The four proofs an operation may need: work, time, space and stake.

Each is bound to a :class:`Challenge` — the operation's digest ``D`` and the
hash ``B`` of the latest committed block — so none can be computed before
that block exists or replayed for another operation.  Every verifier raises
:class:`ProofError` naming what is wrong; none returns a truth value that a
caller could forget to check.

* work (:mod:`.work`): hashcash over (D, requester, B) with ``d`` leading zero bits;
* time (:mod:`.delay`): a Wesolowski VDF over class groups (``chiavdf``) of
  ``T`` sequential squarings on a challenge from (B, D);
* space (:mod:`.space`): a proof of space (``chiapos``) from a plot the
  requester registered, answering a challenge from (B, D, plot id);
* stake (:mod:`.stake`): signatures over (chain id, height, round, block, D)
  by validators holding more than the quorum (2/3) of the stake.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from trustchain.errors import RemoteError

DIGEST_SIZE = 32


class ProofError(RemoteError):
    """A proof does not verify (the message says which check failed)."""


@dataclass(frozen=True)
class Challenge:
    """What a proof answers: the operation digest and the latest committed block's hash."""

    digest: bytes
    block: bytes

    def __post_init__(self) -> None:
        if len(self.digest) != DIGEST_SIZE or len(self.block) != DIGEST_SIZE:
            raise ValueError("digest and block hash are 32 bytes each")

    def derive(self, tag: bytes, *parts: bytes) -> bytes:
        """SHA-256 over a domain tag and length-prefixed parts (no ambiguity between fields)."""
        h = hashlib.sha256(len(tag).to_bytes(1, "big") + tag)
        for part in (self.block, self.digest, *parts):
            h.update(len(part).to_bytes(4, "big") + part)
        return h.digest()
