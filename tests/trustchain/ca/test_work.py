"""The issuance steps as pure functions, run inline and in the node's worker processes.

The same :mod:`trustchain.ca.work` call must give the same certificate
whether the event loop's process runs it or a worker does
(:mod:`transport.workers`); errors keep their type and message across the
process boundary; keys reach a worker only when it first signs with them;
and a worker that dies fails only the calls it held.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.trustchain.ca.conftest import ZONE, Pki
from tests.trustchain.ca.test_issuance import csr
from transport.workers import InlineWork, WorkerPool, WorkerStopped
from trustchain.ca.issuance import IssuanceError
from trustchain.ca.policy import PolicyError
from trustchain.ca.signer import KeyNotLoaded, Signer
from trustchain.ca.work import Layout, check_request, final_certificate, precertificate
from trustchain.ct.log import ExpiryRange, check_submission
from trustchain.ct.precert import POISON_OID, without_extension
from trustchain.ct.structs import Entry, EntryType, leaf_index_extension, sign_sct
from trustchain.errors import KeyNotFoundError

LOGS = [ec.generate_private_key(ec.SECP256R1()) for _ in range(2)]
NAME = "www.alpha.trust.example.net"


def layout(pki: Pki, request: bytes, names: tuple[str, ...] = (NAME,),
           key_id: str | None = None) -> Layout:
    return Layout(request, "server-90d", pki.intermediate.public_bytes(Encoding.DER),
                  key_id or pki.intermediate_key_id, pki.urls, datetime.now(UTC),
                  int.from_bytes(os.urandom(15), "big"), names, ())


def scts(pre_der: bytes, issuer: x509.Certificate) -> list[tuple[bytes, bytes]]:
    """SCTs from two logs over the precertificate's entry, with each log's key (SPKI DER)."""
    entry = check_submission_entry(pre_der, issuer)
    return [(sign_sct(key, 1_790_000_000_000, entry, leaf_index_extension(3)).to_bytes(),
             key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))
            for key in LOGS]


def check_submission_entry(pre_der: bytes, issuer: x509.Certificate) -> Entry:
    """What a log makes of the precertificate (the log's own code, not the CA's)."""
    chain = [base64.b64encode(d).decode() for d in (pre_der, issuer.public_bytes(Encoding.DER))]
    entry = check_submission(chain, (issuer.public_bytes(Encoding.DER),), ExpiryRange(),
                             precert=True).entry
    assert entry.entry_type is EntryType.PRECERT
    return entry


@pytest.fixture
async def pool(pki: Pki) -> AsyncIterator[WorkerPool]:
    workers = WorkerPool(1, pki.signer)
    yield workers
    await workers.close()


def test_a_detached_signer_has_only_the_keys_it_was_given(pki: Pki) -> None:
    detached = Signer.detached()
    with pytest.raises(KeyNotLoaded) as caught:
        detached.key_material(pki.intermediate_key_id)
    assert caught.value.key_id == pki.intermediate_key_id
    detached.install(pki.intermediate_key_id, pki.signer.key_material(pki.intermediate_key_id))
    assert detached.public_key(pki.intermediate_key_id) == pki.signer.public_key(
        pki.intermediate_key_id)


async def test_worker_and_inline_make_the_same_certificate(pki: Pki, pool: WorkerPool) -> None:
    request = csr([NAME])
    names = await pool.run(check_request, request, ZONE, ())
    assert names == check_request(request, ZONE, ())
    laid_out = layout(pki, request, names.dns_names)
    inline = InlineWork(pki.signer)
    pre_here = await inline.sign(precertificate, laid_out)
    pre_there = await pool.sign(precertificate, laid_out)  # the worker gets the key first
    here, there = (x509.load_der_x509_certificate(d) for d in (pre_here, pre_there))
    assert here.tbs_certificate_bytes == there.tbs_certificate_bytes  # ECDSA signatures differ
    there.verify_directly_issued_by(pki.intermediate)

    final = x509.load_der_x509_certificate(
        await pool.sign(final_certificate, laid_out, pre_there, scts(pre_there, pki.intermediate)))
    final.verify_directly_issued_by(pki.intermediate)
    assert final.serial_number == laid_out.serial
    assert without_extension(final.tbs_certificate_bytes, bytes.fromhex(
        "060a2b06010401d679020402")) == without_extension(there.tbs_certificate_bytes, POISON_OID)


async def test_errors_cross_the_process_boundary_intact(pki: Pki, pool: WorkerPool) -> None:
    with pytest.raises(PolicyError, match="outside this network's domain"):
        await pool.run(check_request, csr(["www.elsewhere.example"]), ZONE, ())
    laid_out = layout(pki, csr([NAME]))
    pre = await pool.sign(precertificate, laid_out)
    one_log = scts(pre, pki.intermediate)[:1] * 2
    with pytest.raises(IssuanceError, match="two distinct logs"):
        await pool.sign(final_certificate, laid_out, pre, one_log)
    tampered = [(sct[:-1] + bytes([sct[-1] ^ 1]), key) for sct, key in scts(pre, pki.intermediate)]
    with pytest.raises(IssuanceError, match="does not verify"):
        await pool.sign(final_certificate, laid_out, pre, tampered)


async def test_a_key_the_node_does_not_hold_fails_the_call(pki: Pki, pool: WorkerPool) -> None:
    with pytest.raises(KeyNotFoundError):
        await pool.sign(precertificate, layout(pki, csr([NAME]), key_id="0" * 32))


async def test_many_calls_in_flight_each_get_their_own_answer(pki: Pki, pool: WorkerPool) -> None:
    requests = [csr([f"host{i}.alpha.trust.example.net"]) for i in range(40)]
    answers = await asyncio.gather(*(pool.run(check_request, r, ZONE, ()) for r in requests))
    assert [a.dns_names for a in answers] == [(f"host{i}.alpha.trust.example.net",)
                                              for i in range(40)]


async def test_a_worker_that_dies_fails_its_calls_and_is_replaced(pki: Pki,
                                                                 pool: WorkerPool) -> None:
    request = csr([NAME])
    await pool.run(check_request, request, ZONE, ())
    with pytest.raises(WorkerStopped):
        await pool.run(os._exit, 3)
    assert (await pool.run(check_request, request, ZONE, ())).dns_names == (NAME,)
    pre = await pool.sign(precertificate, layout(pki, request))  # the new worker gets the key
    x509.load_der_x509_certificate(pre).verify_directly_issued_by(pki.intermediate)


async def test_a_worker_does_not_inherit_the_passphrase(pki: Pki,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTCHAIN_PASSPHRASE", "not for workers")
    workers = WorkerPool(1, pki.signer)
    try:
        assert await workers.run(os.getenv, "TRUSTCHAIN_PASSPHRASE") is None
    finally:
        await workers.close()


async def test_a_closed_pool_stops_its_workers(pki: Pki) -> None:
    workers = WorkerPool(2, pki.signer)
    await asyncio.gather(*(workers.run(check_request, csr([NAME]), ZONE, ()) for _ in range(4)))
    processes = [w.process for w in workers._workers]
    assert len(processes) == 2
    await workers.close()
    assert all(p.poll() is not None for p in processes)
    with pytest.raises(WorkerStopped):
        await workers.run(check_request, csr([NAME]), ZONE, ())
