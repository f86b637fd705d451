"""tlog-witness add-checkpoint: one test per answer the spec defines, and fuzzing."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustchain.ct import merkle, note
from trustchain.ct.note import Checkpoint, CosignatureV1Signer, Ed25519Signer
from trustchain.ct.witness import (
    SIZE_CONTENT_TYPE,
    LogState,
    Outcome,
    RequestError,
    StateUpdate,
    Witness,
    parse_add_checkpoint,
)

ORIGIN = "example.com/log"
LOG_KEY = Ed25519Signer.from_seed(ORIGIN, bytes([1]) * 32)
OTHER_KEY = Ed25519Signer.from_seed(ORIGIN, bytes([2]) * 32)  # same name, untrusted
W1 = CosignatureV1Signer.from_seed("witness.example/w1", bytes([3]) * 32)
W2 = CosignatureV1Signer.from_seed("witness.example/w2", bytes([4]) * 32)
LEAVES = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(40)]
NOW = 1_800_000_000

# c2sp.org/tlog-witness, "add-checkpoint" example request body:
# https://github.com/C2SP/C2SP/blob/5ba5ee8/tlog-witness.md
SPEC_REQUEST = (
    "old 20852014\n"
    "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n"
    "jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n"
    "5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n"
    "/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n"
    "\n"
    "example.com/behind-the-sofa\n"
    "20852163\n"
    "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    "\n"
    "\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcy"
    "v2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
    "\u2014 example.com/behind-the-sofa opLqBQsREYCgu6xQkYQwJr9fo45a62DN9EdmHXnZdXNqlcVGlCum2Wks+49/V6"
    "267UEjw6QUXTS5Rovnzv++qbSzm9Q=\n"
).encode()


def checkpoint(size: int, root: bytes | None = None, *, origin: str = ORIGIN) -> Checkpoint:
    return Checkpoint(origin, size, merkle.root(LEAVES[:size]) if root is None else root)


def body(old: int, cp: Checkpoint, proof: list[bytes] | None = None,
         signers: tuple[Ed25519Signer, ...] = (LOG_KEY,)) -> bytes:
    """An add-checkpoint body; the proof defaults to the right one from ``old``."""
    if proof is None:
        proof = merkle.consistency_proof(old, LEAVES[:cp.size]) if old <= cp.size else []
    lines = [f"old {old}", *(base64.b64encode(p).decode() for p in proof)]
    return ("\n".join(lines) + "\n\n" + note.sign_note(cp.text(), list(signers))).encode()


class FakeStore:
    """The CAS the caller runs, on a dict."""

    def __init__(self) -> None:
        self.state: dict[str, LogState] = {}

    def apply(self, update: StateUpdate) -> bool:
        stored = self.state.get(update.origin)
        if (stored.size if stored else 0) != update.old_size:
            return False
        self.state[update.origin] = LogState(update.new_size, update.new_hash)
        return True


@pytest.fixture
def witness() -> Witness:
    return Witness({ORIGIN: [LOG_KEY.verifier()], "example.com/other": [OTHER_KEY.verifier()]},
                   [W1])


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


def submit(witness: Witness, store: FakeStore, data: bytes) -> Outcome:
    outcome = witness.add_checkpoint(data, store.state.get, NOW)
    if outcome.update is not None:
        assert store.apply(outcome.update)  # persisted before the reply
    return outcome


def test_the_spec_example_request_parses() -> None:
    request = parse_add_checkpoint(SPEC_REQUEST)
    assert request.old_size == 20852014 and len(request.proof) == 4
    assert request.proof[0] == base64.b64decode("PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=")
    assert request.origin == "example.com/behind-the-sofa"
    assert len(request.note.signatures) == 2


def test_404_unknown_origin(witness: Witness, store: FakeStore) -> None:
    outcome = submit(witness, store, body(0, checkpoint(3, origin="example.com/unknown")))
    assert outcome.status == 404 and outcome.update is None


def test_403_no_signature_by_a_trusted_key(witness: Witness, store: FakeStore) -> None:
    outcome = submit(witness, store, body(0, checkpoint(3), signers=(OTHER_KEY,)))
    assert outcome.status == 403 and outcome.update is None and store.state == {}


def test_403_a_trusted_key_signature_that_fails(store: FakeStore) -> None:
    second = Ed25519Signer.from_seed("example.com/log-b", bytes([9]) * 32)
    witness = Witness({ORIGIN: [LOG_KEY.verifier(), second.verifier()]}, [W1])
    good = body(0, checkpoint(3), signers=(LOG_KEY, second)).decode()
    # Corrupt the second key's signature only: the first still verifies.
    head, _, last = good.rstrip("\n").rpartition("\n")
    name, encoded = last.rsplit(" ", 1)
    raw = bytearray(base64.b64decode(encoded))
    raw[10] ^= 1
    bad = f"{head}\n{name} {base64.b64encode(bytes(raw)).decode()}\n".encode()
    assert submit(witness, store, good.encode()).status == 200
    assert witness.add_checkpoint(bad, store.state.get, NOW).status == 403


SIGNED = note.sign_note(checkpoint(3).text(), [LOG_KEY]).encode()
HASH_LINE = base64.b64encode(bytes(32))


@pytest.mark.parametrize("data", [
    b"",
    b"old 0\n" + SIGNED,  # no empty line
    b"new 0\n\n" + SIGNED,
    b"old 00\n\n" + SIGNED,
    b"old -1\n\n" + SIGNED,
    b"old  1\n\n" + SIGNED,
    b"old 1\r\n\n" + SIGNED,
    b"old 1\nnot base64!\n\n" + SIGNED,
    b"old 1\n" + HASH_LINE[:-1] + b"\n\n" + SIGNED,  # unpadded
    b"old 1\n" + base64.b64encode(bytes(31)) + b"\n\n" + SIGNED,
    b"old 1\n" + b"\n".join([HASH_LINE] * 64) + b"\n\n" + SIGNED,  # 64 proof lines
    b"old 0\n\n" + SIGNED.split(b"\n\n")[0] + b"\n",  # a checkpoint with no signature
    b"old 0\n\n" + SIGNED.rstrip(b"\n"),  # the signature line does not end
    b"old 0\n\n" + SIGNED.replace(b"\n3\n", b"\n\x013\n"),  # a control character
])
def test_400_malformed_request(witness: Witness, store: FakeStore, data: bytes) -> None:
    outcome = submit(witness, store, data)
    assert outcome.status == 400 and outcome.update is None
    with pytest.raises(RequestError):
        parse_add_checkpoint(data)


def test_63_proof_lines_are_allowed() -> None:
    assert len(parse_add_checkpoint(b"old 1\n" + b"\n".join([HASH_LINE] * 63) + b"\n\n"
                                    + SIGNED).proof) == 63


def test_400_a_signed_text_that_is_no_checkpoint(witness: Witness, store: FakeStore) -> None:
    text = f"{ORIGIN}\n03\n{base64.b64encode(bytes(32)).decode()}\n"
    data = b"old 0\n\n" + note.sign_note(text, [LOG_KEY]).encode()
    assert submit(witness, store, data).status == 400


def test_400_old_size_larger_than_the_checkpoint(witness: Witness, store: FakeStore) -> None:
    assert submit(witness, store, body(5, checkpoint(3), proof=[])).status == 400


def test_409_old_size_is_not_the_stored_size(witness: Witness, store: FakeStore) -> None:
    first = submit(witness, store, body(3, checkpoint(8)))  # never cosigned: stored size 0
    assert (first.status, first.body, first.content_type) == (409, b"0\n", SIZE_CONTENT_TYPE)
    assert submit(witness, store, body(0, checkpoint(8))).status == 200
    stale = submit(witness, store, body(3, checkpoint(20)))
    assert (stale.status, stale.body, stale.content_type) == (409, b"8\n", SIZE_CONTENT_TYPE)
    assert stale.update is None and store.state[ORIGIN].size == 8


def test_422_a_proof_that_does_not_verify(witness: Witness, store: FakeStore) -> None:
    assert submit(witness, store, body(0, checkpoint(8))).status == 200
    proof = merkle.consistency_proof(8, LEAVES[:20])
    proof[-1] = hashlib.sha256(proof[-1]).digest()
    outcome = submit(witness, store, body(8, checkpoint(20), proof=proof))
    assert outcome.status == 422 and outcome.update is None
    assert submit(witness, store, body(8, checkpoint(20), proof=[])).status == 422
    # A checkpoint that is not an extension of the cosigned tree, with its own real proof.
    forked = [merkle.leaf_hash(b"fork")] + LEAVES[1:20]
    fork_body = body(8, checkpoint(20, merkle.root(forked)), merkle.consistency_proof(8, forked))
    assert submit(witness, store, fork_body).status == 422
    assert store.state[ORIGIN] == LogState(8, merkle.root(LEAVES[:8]))


def test_422_same_size_different_root(witness: Witness, store: FakeStore) -> None:
    assert submit(witness, store, body(0, checkpoint(8))).status == 200
    outcome = submit(witness, store, body(8, checkpoint(8, hashlib.sha256(b"x").digest())))
    assert outcome.status == 422 and outcome.update is None


def test_422_a_proof_from_size_zero(witness: Witness, store: FakeStore) -> None:
    assert submit(witness, store, body(0, checkpoint(8), proof=[bytes(32)])).status == 422


def test_422_size_zero_needs_the_empty_root(witness: Witness, store: FakeStore) -> None:
    assert submit(witness, store, body(0, checkpoint(0, bytes(32)))).status == 422
    assert submit(witness, store, body(0, checkpoint(0))).status == 200
    assert store.state[ORIGIN] == LogState(0, merkle.EMPTY_ROOT)


def test_200_cosignatures_verify_and_the_update_is_returned(store: FakeStore) -> None:
    witness = Witness({ORIGIN: [LOG_KEY.verifier()]}, [W1, W2])
    outcome = submit(witness, store, body(0, checkpoint(8)))
    assert outcome.status == 200
    assert outcome.update == StateUpdate(ORIGIN, 0, 8, merkle.root(LEAVES[:8]))
    text = outcome.body.decode()
    lines = text.splitlines(keepends=True)
    assert len(lines) == 2 and all(line.startswith("\u2014 ") for line in lines)
    assert note.verify_cosignature(W1.verifier(), checkpoint(8), lines[0]) == NOW
    assert note.verify_cosignature(W2.verifier(), checkpoint(8), lines[1]) == NOW
    # "the client MAY concatenate it to the checkpoint, and use a note verification function"
    cosigned = note.parse_note(note.sign_note(checkpoint(8).text(), [LOG_KEY]) + text)
    assert len(note.verify_note(cosigned, [W1.verifier(), W2.verifier()])) == 2
    # Grow with a proof, then resubmit the same checkpoint (no proof needed).
    grown = submit(witness, store, body(8, checkpoint(33)))
    assert grown.status == 200 and grown.update == StateUpdate(ORIGIN, 8, 33, merkle.root(LEAVES[:33]))
    again = submit(witness, store, body(33, checkpoint(33)))
    assert again.status == 200 and again.update == StateUpdate(ORIGIN, 33, 33, merkle.root(LEAVES[:33]))


def test_other_signatures_on_the_checkpoint_are_ignored(witness: Witness, store: FakeStore) -> None:
    data = body(0, checkpoint(4), signers=(OTHER_KEY, LOG_KEY))
    data += W2.cosign(checkpoint(4), 5).line().encode()  # another witness's cosignature
    assert submit(witness, store, data).status == 200


def test_the_timestamp_must_not_be_zero(witness: Witness) -> None:
    with pytest.raises(ValueError):
        witness.add_checkpoint(body(0, checkpoint(1)), lambda origin: None, 0)


def test_unknown_origins_do_not_reach_the_state(witness: Witness) -> None:
    def state(origin: str) -> LogState | None:
        raise AssertionError("looked up")

    assert witness.add_checkpoint(body(0, checkpoint(1, origin="nope")), state, NOW).status == 404


# --- fuzzing -----------------------------------------------------------------------

VALID = body(8, checkpoint(20))


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(VALID)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        if op == "flip" and at < len(data):
            data[at] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del data[at:at + draw(st.integers(1, 8))]
        else:
            data[at:at] = draw(st.sampled_from([b"\n", b"\n\n", b" ", b"0", b"=", b"\xff", b"\x00"]))
    return bytes(data)


FUZZ = st.one_of(st.binary(max_size=400), mutated(), st.text(max_size=200).map(str.encode))


@given(FUZZ)
def test_parse_add_checkpoint_raises_only_request_error(data: bytes) -> None:
    try:
        request = parse_add_checkpoint(data)
    except RequestError:
        return
    assert len(request.proof) <= 63 and all(len(p) == 32 for p in request.proof)


@given(FUZZ, st.sampled_from([None, LogState(8, merkle.root(LEAVES[:8])), LogState(0, merkle.EMPTY_ROOT)]))
def test_add_checkpoint_always_answers(data: bytes, stored: LogState | None) -> None:
    witness = Witness({ORIGIN: [LOG_KEY.verifier()]}, [W1])
    outcome = witness.add_checkpoint(data, lambda origin: stored, NOW)
    assert outcome.status in (200, 400, 403, 404, 409, 422)
    assert (outcome.update is not None) == (outcome.status == 200)
    if outcome.status == 200:
        # Only an untouched request or a same-size resubmission can get through.
        assert outcome.update is not None and outcome.update.new_size >= outcome.update.old_size
