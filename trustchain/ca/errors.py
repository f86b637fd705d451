"""The CA's own refusals, all :class:`~trustchain.errors.RemoteError`: the edges map them to
statuses (``transport/problem.py``).

The others live beside the rule they enforce: :class:`~trustchain.ca.policy.PolicyError`
and :class:`~trustchain.ca.policy.NotAuthorised`,
:class:`~trustchain.ca.ratelimit.RateLimited`,
:class:`~trustchain.ca.issuance.IssuanceError`, :class:`~trustchain.ca.lint.LintError`.
"""

from __future__ import annotations

from trustchain.errors import NotFound, RemoteError


class CaError(RemoteError):
    """A CA operation was refused or failed (the message says why)."""


class UnknownCrl(CaError, NotFound):
    """No such issuer, or no such CRL shard of it."""
