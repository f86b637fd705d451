"""The asyncio side of the CA: it performs the steps of the core's issuance.

:meth:`CertificateAuthority.issuance` decides (policy, limits, which logs,
what a failure means) and yields steps (:mod:`trustchain.ca.steps`);
:class:`CaRunner` only carries bytes: the CSR check and the signatures run
in :attr:`CaRunner.work` (worker processes, or inline), the writes in a
group commit shared with the concurrent requests' writes, and the
precertificate goes to the chosen logs concurrently (each answers once the
entry is sequenced and covered by a signed head).  Other nodes' logs are asked
over stoq/1 (:attr:`CaRunner.remote`), two operators at once, with a hedge to the
next candidate when one is slow or refuses (as Boulder's ``ctpolicy`` does).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
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
from trustchain.ct.log import BadSubmission
from trustchain.identity import Peer

log = logging.getLogger("trustchain.ca")

#: A candidate log slower than this to answer gets a hedge: the next operator's log.
HEDGE_AFTER = 1.5
#: No SCTs from enough operators by then: the issuance fails (nothing is signed).
SCT_BOUND = 10.0
#: Submit a chain (base64 DER) to another node's log: (operator, log name, chain) -> SCT.
RemoteSubmit = Callable[[str, str, list[str]], Awaitable[bytes]]
#: Told of each issuance's outcome: the chain issued, or the error that refused it.
IssuanceObserver = Callable[[IssuedChain | Exception], None]


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
        self._own = tuple(CtLog(name, logs.public_key_der(name), lg.expiry)
                          for name, lg in logs.logs.items())
        #: Other nodes' logs (set by the federation; read at each issuance).
        self.other_logs: Callable[[], Sequence[CtLog]] = lambda: ()
        #: How other nodes' logs are asked (set by the federation).
        self.remote: RemoteSubmit | None = None
        #: Told of each issuance's outcome (the node's metrics), when set.
        self.on_outcome: IssuanceObserver | None = None

    def now(self) -> datetime:
        return self._clock()

    async def issue(self, csr: bytes, *, network: str | None, profile: str | None,
                    peer: Peer | None, client_address: str | None = None,
                    renews: int | None = None) -> IssuedChain:
        """The final certificate and its issuer (``renews``: the core's issuance).

        :raises PolicyError, RateLimited, CaError: refused, with the reason.
        """
        try:
            issued = await self._issue(csr, network, profile, peer, client_address, renews)
        except Exception as exc:
            if self.on_outcome is not None:
                self.on_outcome(exc)
            raise
        if self.on_outcome is not None:
            self.on_outcome(issued)
        return issued

    async def _issue(self, csr: bytes, network: str | None, profile: str | None,
                     peer: Peer | None, client_address: str | None,
                     renews: int | None) -> IssuedChain:
        flow = self.authority.issuance(
            csr, network=network, profile=profile, peer=peer, client_address=client_address,
            logs=(*self._own, *self.other_logs()), now=self._clock(), serial=new_serial(),
            renews=renews)
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
                if step.operators:
                    return await self._hedged(step.logs, step.operators, chain)
                scts = await asyncio.gather(*(self.logs.submit(name, chain, precert=True)
                                              for name in step.logs))
                return [(name, sct.to_bytes()) for name, sct in zip(step.logs, scts,
                                                                    strict=True)]
            case SignFinal():
                return await self.work.sign(final_certificate, step.layout, step.precertificate,
                                            step.scts)
        raise TypeError(f"not an issuance step: {step!r}")

    async def _hedged(self, refs: Sequence[str], operators: int, chain: list[str]
                      ) -> list[tuple[str, bytes]]:
        """SCTs from logs of ``operators`` distinct operators among ``refs`` (in order):
        that many asked at once, the next candidate of another operator started when one
        fails or is slower than :data:`HEDGE_AFTER`, all within :data:`SCT_BOUND`.

        :raises BadSubmission: fewer operators answered (each failure named).
        """
        remote = self.remote
        if remote is None:
            raise BadSubmission("other nodes' logs cannot be reached from here")
        waiting = list(refs)
        running: dict[asyncio.Task[bytes], str] = {}
        got: dict[str, tuple[str, bytes]] = {}  # operator -> (ref, SCT)
        failures: list[str] = []

        def start_next() -> None:
            busy = {ref.partition("/")[0] for ref in running.values()}
            for ref in waiting:
                operator, _, name = ref.partition("/")
                if operator not in got and operator not in busy:
                    waiting.remove(ref)
                    running[asyncio.ensure_future(remote(operator, name, chain))] = ref
                    return

        for _ in range(operators):
            start_next()
        deadline = asyncio.get_running_loop().time() + SCT_BOUND
        try:
            while len(got) < operators and running:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    failures += [f"{ref}: no answer within {SCT_BOUND:g} s"
                                 for ref in running.values()]
                    break
                done, _ = await asyncio.wait(running, timeout=min(HEDGE_AFTER, left),
                                             return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    start_next()  # the slow ones keep going: a hedge beside them
                    continue
                for task in done:
                    ref = running.pop(task)
                    operator = ref.partition("/")[0]
                    if task.exception() is not None:
                        failures.append(f"{ref}: {task.exception()}")
                        log.info("SCT from %s failed: %s", ref, task.exception())
                    elif operator not in got:
                        got[operator] = (ref, task.result())
                while len(running) + len(got) < operators and any(
                        r.partition("/")[0] not in got for r in waiting):
                    before = len(running)
                    start_next()
                    if len(running) == before:
                        break
        finally:
            for task in running:
                task.cancel()
        if len(got) < operators:
            raise BadSubmission(f"SCTs from {len(got)} of the {operators} operators needed: "
                                + "; ".join(failures or ["no other log to ask"]))
        return list(got.values())
