"""The asyncio side of the CA: it performs the steps of the core's issuance.

:meth:`CertificateAuthority.issuance` decides (policy, limits, which logs,
what a failure means) and yields steps (:mod:`trustchain.ca.steps`);
:class:`CaRunner` only carries bytes: the CSR check and the signatures run
in :attr:`CaRunner.work` (worker processes, or inline), the writes in a
group commit shared with the concurrent requests' writes, and the
precertificate goes to the chosen logs concurrently (each answers once the
entry is sequenced and covered by a signed head).
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any

from transport.ct import LogRunner
from transport.group_commit import GroupCommit
from transport.workers import InlineWork, Work
from trustchain.ca.authority import CertificateAuthority
from trustchain.ca.steps import (
    CheckCsr,
    CtLog,
    Failed,
    IssuedChain,
    NeedScts,
    SignFinal,
    SignPrecertificate,
    Step,
    Write,
    advance,
)
from trustchain.ca.work import check_request, final_certificate, precertificate
from trustchain.identity import Peer


def new_serial() -> int:
    """128 random bits, not zero: a certificate's serial (uniqueness is the store's job)."""
    while True:
        serial = secrets.randbits(128)
        if serial:
            return serial


class CaRunner:
    def __init__(self, authority: CertificateAuthority, logs: LogRunner,
                 clock: Callable[[], datetime], commits: GroupCommit,
                 work: Work | None = None) -> None:
        self.authority = authority
        self.logs = logs
        self._clock = clock
        #: Where the CSR checks and signatures run (worker processes, or inline).
        self.work: Work = work if work is not None else InlineWork(authority.signer)
        #: The issuance steps' writes share durable commits with concurrent requests'.
        self._commits = commits
        self._logs = tuple(CtLog(name, logs.public_key_der(name), lg.expiry)
                           for name, lg in logs.logs.items())

    def now(self) -> datetime:
        return self._clock()

    async def issue(self, csr: bytes, *, network: str | None, profile: str | None,
                    peer: Peer | None, client_address: str | None = None) -> IssuedChain:
        """The final certificate and its issuer.

        :raises PolicyError, RateLimited, CaError: refused, with the reason.
        """
        flow = self.authority.issuance(
            csr, network=network, profile=profile, peer=peer, client_address=client_address,
            logs=self._logs, now=self._clock(), serial=new_serial())
        answer: Any = None
        while not isinstance(step := advance(flow, answer), IssuedChain):
            try:
                answer = await self._perform(step)
            except Exception as exc:  # the core decides what it means
                answer = Failed(exc)
        return step

    async def _perform(self, step: Step) -> Any:
        match step:
            case CheckCsr():
                return await self.work.run(check_request, step.csr, step.zone, step.prefixes,
                                           step.profile)
            case Write():
                fn = step.fn
                return await self._commits.run(lambda conn: fn(conn, self._clock()))
            case SignPrecertificate():
                return await self.work.sign(precertificate, step.layout, step.lint)
            case NeedScts():
                chain = [base64.b64encode(der).decode() for der in step.chain]
                scts = await asyncio.gather(*(self.logs.submit(name, chain, precert=True)
                                              for name in step.logs))
                return [sct.to_bytes() for sct in scts]
            case SignFinal():
                return await self.work.sign(final_certificate, step.layout, step.precertificate,
                                            step.scts)
        raise TypeError(f"not an issuance step: {step!r}")
