"""The asyncio side of the CA: issuance waits for the logs' SCTs; stoq/1 ``ca`` and HTTP routes.

An issuance is :meth:`CertificateAuthority.prepare` (policy, limits, serial,
precertificate), then the precertificate goes to every log of this node that
accepts its expiry (at least two, concurrently; each answers once the entry
is sequenced and covered by a signed head), then
:meth:`CertificateAuthority.complete` (SCTs verified and embedded, final
certificate stored with its audit record).
"""

from __future__ import annotations

import asyncio
import base64
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from transport.ct import LogRunner
from transport.group_commit import GroupCommit
from transport.workers import InlineWork, Work
from trustchain.ca.authority import CaError, CertificateAuthority
from trustchain.ca.lint import LintError
from trustchain.ca.ratelimit import RateLimited
from trustchain.ca.work import check_request, final_certificate, precertificate
from trustchain.ct.log import BadSubmission
from trustchain.identity import Peer


@dataclass(frozen=True)
class IssuedChain:
    serial: int
    chain: list[bytes]  # DER: the certificate, then its issuer


class CaRunner:
    def __init__(self, authority: CertificateAuthority, logs: LogRunner,
                 clock: Callable[[], datetime], work: Work | None = None) -> None:
        self.authority = authority
        self.logs = logs
        self._clock = clock
        #: Where the CSR checks and signatures run (worker processes, or inline).
        self.work: Work = work if work is not None else InlineWork(authority.signer)
        self._commits = GroupCommit(authority.store.db)

    def now(self) -> datetime:
        return self._clock()

    async def issue(self, csr: bytes, *, network: str | None, profile: str | None,
                    peer: Peer | None, client_address: str | None = None) -> IssuedChain:
        """The final certificate and its issuer.

        Its two writes (limits + serial reservation, then certificate + audit
        record) each share a durable commit with the concurrent requests'
        (:class:`GroupCommit`); the precertificate is signed only once its
        serial is reserved, and logged only after that commit.  The CSR
        check and the signatures run in :attr:`work`.

        :raises PolicyError, RateLimited, CaError: refused, with the reason.
        """
        ca = self.authority
        order = ca.order(csr, network=network, profile=profile, peer=peer,
                         client_address=client_address, now=self._clock())
        names = await self.work.run(check_request, csr, order.info.zone, order.info.prefixes,
                                    order.profile.name)
        pending = ca.pending(order, names, self._clock())
        chosen = [lg for lg in self.logs.logs.values() if pending.not_after in lg.expiry]
        if len(chosen) < 2:
            raise CaError(f"fewer than two logs of this node accept certificates expiring "
                          f"{pending.not_after.isoformat()} (see ct_logs)")

        def admit(conn: sqlite3.Connection) -> Exception | None:
            now = self._clock()
            try:
                ca.admit(conn, pending, now)
            except RateLimited as exc:
                ca.refused(conn, pending, exc, now)
                return exc
            return None

        refusal = await self._commits.run(admit)
        if refusal is not None:
            raise refusal
        try:
            pre = await self.work.sign(precertificate, pending.layout, ca.lint)
        except LintError as exc:
            lint_refusal = exc
            await self._commits.run(lambda conn: ca.release(conn, pending, lint_refusal,
                                                            self._clock()))
            raise CaError(str(exc)) from None
        chain = [base64.b64encode(der).decode() for der in (pre, pending.layout.issuer)]
        try:
            scts = await asyncio.gather(*(self.logs.submit(lg.name, chain, precert=True)
                                          for lg in chosen))
        except BadSubmission as exc:
            raise CaError(f"a log refused the precertificate: {exc}") from None
        final = await self.work.sign(final_certificate, pending.layout, pre, [
            (sct.to_bytes(), self.logs.public_key_der(lg.name))
            for sct, lg in zip(scts, chosen, strict=True)])
        await self._commits.run(lambda conn: ca.record(
            conn, pending, final, [sct.log_id for sct in scts], self._clock()))
        return IssuedChain(pending.serial, [final, pending.layout.issuer])
