"""Operations in a block are read in canonical JSON only: anything else is refused, and a
validator's check of the block says False rather than raising (found by the fuzz suite,
issue 14: a float or an integer beyond 2**53 in an operation's body raised
CanonicalJSONError out of Ledger.valid)."""

from __future__ import annotations

import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from trustchain.consensus.ledger import Ledger
from trustchain.consensus.messages import Block
from trustchain.consensus.operations import Entry, Operation, OperationKind, decode_entry
from trustchain.consensus.parameters import ProofParameters
from trustchain.consensus.proofs import ProofError
from trustchain.consensus.proofs.stake import ValidatorStake

PREVIOUS = hashlib.sha256(b"block 7").digest()
ENTRY = Entry(operation=Operation(kind=OperationKind.CT_CHECKPOINT, requester="aa" * 16,
                                  body={"log": "a", "size": 1}))


def ledger() -> Ledger:
    key = ed25519.Ed25519PrivateKey.generate()
    return Ledger("testnet", {"v0": ValidatorStake(key.public_key(), 1)}, ProofParameters())


def with_body(body: str) -> bytes:
    return ENTRY.encode().replace(b'{"log":"a","size":1}', body.encode())


@pytest.mark.parametrize("body", ['{"log":"a","size":1.5}', '{"log":"a","size":-0.0}',
                                  '{"log":"a","size":1e400}', '{"log":"a","size":NaN}',
                                  f'{{"log":"a","size":{2**60}}}', '{"log":"\\ud800"}'])
def test_an_operation_outside_canonical_json_is_refused(body: str) -> None:
    data = with_body(body)
    with pytest.raises(ProofError, match="not an operation"):
        decode_entry(data)
    assert ledger().valid(Block(8, PREVIOUS, "v0", (data,))) is False


def test_only_the_canonical_bytes_of_an_operation_are_taken() -> None:
    assert decode_entry(ENTRY.encode()) == ENTRY
    assert ledger().valid(Block(8, PREVIOUS, "v0", (ENTRY.encode(),))) is True
    spaced = json.dumps(json.loads(ENTRY.encode()), indent=1).encode()
    with pytest.raises(ProofError, match="canonical"):
        decode_entry(spaced)
