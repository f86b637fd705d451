"""The steps of an issuance, as the core asks for them and its driver performs them.

:meth:`trustchain.ca.authority.CertificateAuthority.issuance` is a generator:
it yields one step at a time, receives that step's result, and returns the
:class:`IssuedChain`.  The driver (``transport/ca.py`` on the event loop, or a
test, inline) only carries bytes:

* :class:`CheckCsr`: :func:`~trustchain.ca.work.check_request`, answering
  its ``RequestedNames``;
* :class:`Write`: ``fn(txn, now)`` in a transaction, with the time at which
  it runs, answering ``fn``'s result once that transaction has committed;
* :class:`SignPrecertificate`: :func:`~trustchain.ca.work.precertificate`,
  answering DER;
* :class:`NeedScts`: the chain submitted to the named logs, answering
  (log, serialized SCT) pairs: from every log, or from logs of ``operators``
  distinct operators (the driver hedges across the candidates);
* :class:`SignFinal`: :func:`~trustchain.ca.work.final_certificate`,
  answering DER.

If performing a step raises, the driver throws the exception into the
generator (:class:`Failed`), and the core decides what it means: a log's
refusal becomes a :class:`~trustchain.ca.authority.CaError` with the log's
reason, a lint finding releases the serial and refuses.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from trustchain.ca.store import Txn
from trustchain.ca.work import Layout
from trustchain.ct.log import ExpiryRange

T = TypeVar("T")


@dataclass(frozen=True)
class CtLog:
    """A CT log the CA may submit precertificates to."""

    name: str
    key: bytes  # SubjectPublicKeyInfo, DER
    expiry: ExpiryRange  # the notAfter dates it accepts
    #: The node that runs it ("": this node).
    operator: str = ""

    @property
    def ref(self) -> str:
        """How a step names it: ``name`` here, ``operator/name`` at another node."""
        return f"{self.operator}/{self.name}" if self.operator else self.name

    @functools.cached_property
    def log_id(self) -> bytes:
        """RFC 6962 3.2: SHA-256 of the log's key."""
        return hashlib.sha256(self.key).digest()


@dataclass(frozen=True)
class IssuedChain:
    serial: int
    chain: list[bytes]  # DER: the certificate, then its issuer
    #: The logs whose SCTs it carries (refs: ``operator/name`` for other nodes' logs).
    logs: tuple[str, ...] = ()
    #: The network it was issued for and its profile.
    network: str = ""
    profile: str = ""


@dataclass(frozen=True)
class CheckCsr:
    """Check the CSR against policy for the network (``check_request``)."""

    csr: bytes
    zone: str
    prefixes: tuple[str, ...]
    profile: str


@dataclass(frozen=True)
class Write(Generic[T]):
    """Run ``fn(txn, now)`` in a transaction and send back its result once that has committed.

    ``now`` is the time when it runs, not when the issuance began: rate limits are
    charged, and audit records dated, in the order their transactions commit.
    """

    fn: Callable[[Txn, datetime], T]


@dataclass(frozen=True)
class SignPrecertificate:
    """Sign (and when ``lint``, lint) the precertificate laid out in ``layout``."""

    layout: Layout
    lint: bool


@dataclass(frozen=True)
class NeedScts:
    """Submit ``chain`` (precertificate, issuer: DER) to ``logs`` (refs, in the order to
    try them): to every one (``operators`` 0), or until logs of ``operators`` distinct
    operators have answered (the operator of ``a/b`` is ``a``)."""

    chain: tuple[bytes, bytes]
    logs: tuple[str, ...]
    operators: int = 0


@dataclass(frozen=True)
class SignFinal:
    """Verify the SCTs (each with its log's key, SPKI DER) and sign the final certificate."""

    layout: Layout
    precertificate: bytes
    scts: tuple[tuple[bytes, bytes], ...]


Step = CheckCsr | Write[Any] | SignPrecertificate | NeedScts | SignFinal
Issuance = Generator[Step, Any, IssuedChain]


@dataclass(frozen=True)
class Failed:
    """Performing a step raised ``error`` (the driver's answer instead of a result)."""

    error: Exception


def advance(flow: Issuance, answer: Any) -> Step | IssuedChain:
    """Give the flow the last step's answer (None to start, or :class:`Failed`); return its
    next step, or the issued chain once it is done.

    :raises Exception: the refusal the flow ends with.
    """
    try:
        if isinstance(answer, Failed):
            return flow.throw(answer.error)
        return flow.send(answer)
    except StopIteration as done:
        chain: IssuedChain = done.value
        return chain

