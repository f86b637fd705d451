"""The ACME resources (RFC 8555 section 7): a request in, a response out.

Pure but for its store (the contract of :mod:`trustchain.ca.acme.store`); time and
randomness are passed in.  Built so far: the directory, nonces, accounts (new,
existing, ``onlyReturnExisting``, read, update, deactivation) and key change.  Orders,
authorizations, challenges, finalization, certificates, revocation and ARI are not
built yet, and the directory names only what is.

What every response carries, as clients rely on it: ``Replay-Nonce`` on every answer
to a POST (errors included: a ``badNonce`` answer carries the nonce to retry with),
``Link: <directory>;rel="index"`` on every resource but the directory, and errors as
``application/problem+json`` with the RFC's types.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from trustchain.ca.acme import jws
from trustchain.ca.acme.problems import PROBLEM_TYPE, AcmeProblem
from trustchain.ca.acme.store import Account, AcmeStore, KeyInUse
from trustchain.ca.ratelimit import RateLimited

PREFIX = "/acme"
#: A nonce is good for this long after it is given out.
NONCE_LIFETIME = 3600
NONCE_BYTES = 16
MAX_CONTACTS = 10
MAX_CONTACT = 254
_ACCOUNT = re.compile(r"^/acme/acct/([1-9][0-9]{0,17})$")


@dataclass(frozen=True)
class AcmeRequest:
    method: str  # GET, HEAD or POST
    url: str  # absolute, as the client addressed it (scheme://host[:port]/path)
    content_type: str | None = None
    body: bytes = b""
    client: str | None = None  # the client's address, where the transport knows it

    @property
    def base(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def path(self) -> str:
        return urlsplit(self.url).path


@dataclass
class AcmeResponse:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Meta:
    """The directory's ``meta`` (RFC 8555 section 7.1.1)."""

    caa_identities: Sequence[str]
    terms_of_service: str | None = None
    website: str | None = None


class AcmeServer:
    def __init__(self, store: AcmeStore, *, nonce_prefix: str, meta: Meta,
                 random: Callable[[int], bytes],
                 new_account_limit: Callable[[str | None, datetime], None]) -> None:
        """``new_account_limit(client address, now)`` charges the address's bucket of new
        accounts, or raises :class:`~trustchain.ca.ratelimit.RateLimited`."""
        self._store = store
        self._prefix = nonce_prefix  # whose nonce it is, in a federation
        self._meta = meta
        self._random = random
        self._new_account_limit = new_account_limit

    def handle(self, request: AcmeRequest, now: datetime) -> AcmeResponse:
        """Answer ``request``; nothing raises (a refusal is a problem document)."""
        path, base = request.path, request.base
        try:
            if path == f"{PREFIX}/directory" and request.method in ("GET", "HEAD"):
                return _json(200, self.directory(base))
            if path == f"{PREFIX}/new-nonce" and request.method in ("GET", "HEAD"):
                response = AcmeResponse(204 if request.method == "GET" else 200,
                                        headers=[("Cache-Control", "no-store")])
                return self._finish(response, base, now)
            if request.method != "POST":
                raise AcmeProblem("malformed", f"no {request.method} {path[:100]} (POST-as-GET "
                                  "reads ACME resources)", status=405 if self._known(path)
                                  else 404)
            return self._finish(self._post(request, now), base, now)
        except AcmeProblem as problem:
            return self.refuse(request, problem, now)

    def refuse(self, request: AcmeRequest, problem: AcmeProblem,
               now: datetime) -> AcmeResponse:
        """``problem`` as the answer to ``request`` (also for the edge's own refusals, a
        body too large: with a fresh nonce for a POST as always)."""
        base = request.base
        response = AcmeResponse(problem.status, json.dumps(problem.document()).encode(),
                                PROBLEM_TYPE, list(problem.headers.items()))
        if request.method == "POST" or request.path == f"{PREFIX}/new-nonce":
            return self._finish(response, base, now)
        response.headers.append(("Link", f'<{base}{PREFIX}/directory>;rel="index"'))
        return response

    def directory(self, base: str) -> dict[str, Any]:
        meta: dict[str, Any] = {"caaIdentities": list(self._meta.caa_identities),
                                "externalAccountRequired": False}
        if self._meta.terms_of_service:
            meta["termsOfService"] = self._meta.terms_of_service
        if self._meta.website:
            meta["website"] = self._meta.website
        return {"newNonce": f"{base}{PREFIX}/new-nonce",
                "newAccount": f"{base}{PREFIX}/new-account",
                "keyChange": f"{base}{PREFIX}/key-change", "meta": meta}

    # --- the envelope ---------------------------------------------------------------

    def _finish(self, response: AcmeResponse, base: str, now: datetime) -> AcmeResponse:
        """A fresh nonce and the directory link on a response."""
        nonce = self._prefix + jws.b64url(self._random(NONCE_BYTES))
        at = int(now.timestamp())
        self._store.add_nonce(nonce, at + NONCE_LIFETIME, at)
        response.headers += [("Replay-Nonce", nonce),
                             ("Link", f'<{base}{PREFIX}/directory>;rel="index"')]
        return response

    @staticmethod
    def _known(path: str) -> bool:
        return path in (f"{PREFIX}/new-account", f"{PREFIX}/key-change") or bool(
            _ACCOUNT.match(path))

    def _post(self, request: AcmeRequest, now: datetime) -> AcmeResponse:
        if not self._known(request.path):
            raise AcmeProblem("malformed", f"no ACME resource {request.path[:100]}", status=404)
        signed = jws.parse(request.body, request.content_type, request.url)
        account: Account | None = None
        if request.path == f"{PREFIX}/new-account":
            if signed.jwk is None:
                raise AcmeProblem("malformed", "newAccount is signed with the key itself (jwk)")
            key = signed.jwk
        else:
            if signed.kid is None:
                raise AcmeProblem("malformed", "this resource takes the account URL (kid), "
                                               "not a jwk")
            account = self._account_of(signed.kid, request.base)
            key = account.jwk
        jws.verify(signed, key)
        if not self._store.use_nonce(signed.nonce, int(now.timestamp())):
            raise AcmeProblem("badNonce", "the nonce was used already, has expired, or is "
                                          "not this server's: retry with the Replay-Nonce "
                                          "of this answer")
        if account is not None and account.status != "valid":
            raise AcmeProblem("unauthorized", f"the account is {account.status}")
        if request.path == f"{PREFIX}/new-account":
            return self._new_account(signed, request.base, request.client, now)
        assert account is not None
        if request.path == f"{PREFIX}/key-change":
            return self._key_change(signed, account, request)
        if request.url != signed.kid:
            raise AcmeProblem("unauthorized", "an account is read or changed only with its "
                                              "own key")
        return self._account_update(signed, account, request.base)

    def _account_of(self, kid: str, base: str) -> Account:
        parts = urlsplit(kid)
        found = _ACCOUNT.match(parts.path)
        account = self._store.account(int(found[1])) if found and \
            f"{parts.scheme}://{parts.netloc}" == base else None
        if account is None:
            raise AcmeProblem("accountDoesNotExist", "no account of this server has that URL")
        return account

    # --- accounts --------------------------------------------------------------------

    def _account_json(self, account: Account, base: str) -> dict[str, Any]:
        body: dict[str, Any] = {"status": account.status, "contact": account.contact,
                                "orders": f"{base}{PREFIX}/acct/{account.id}/orders",
                                "createdAt": account.created_at}
        if account.terms_agreed:
            body["termsOfServiceAgreed"] = True
        return body

    def _new_account(self, signed: jws.SignedRequest, base: str, client: str | None,
                     now: datetime) -> AcmeResponse:
        payload = signed.json() or {}  # other fields (status, orders...) are ignored, as
        assert signed.jwk is not None   # RFC 8555 7.3 says, and clients send some
        thumbprint = jws.thumbprint(signed.jwk)
        existing = self._store.account_by_key(thumbprint)
        if existing is not None and existing.status != "valid":  # RFC 8555 7.3.6: no more
            raise AcmeProblem("unauthorized", f"the account of this key is {existing.status}")
        if payload.get("onlyReturnExisting") is True:
            if existing is None:
                raise AcmeProblem("accountDoesNotExist", "no account has this key")
            return self._account_answer(200, existing, base)
        if "externalAccountBinding" in payload:
            raise AcmeProblem("malformed", "external account binding is not supported by "
                                           "this server yet")
        contact = _contact(payload.get("contact", []))
        agreed = payload.get("termsOfServiceAgreed", False)
        if not isinstance(agreed, bool):
            raise AcmeProblem("malformed", "termsOfServiceAgreed is true or false")
        if self._meta.terms_of_service and not agreed:
            raise AcmeProblem("userActionRequired", "agree to the terms of service first",
                              extra={"instance": self._meta.terms_of_service})
        if existing is None:
            try:
                self._new_account_limit(client, now)
            except RateLimited as exc:
                raise AcmeProblem("rateLimited", str(exc), headers={
                    "Retry-After": str(exc.retry_seconds)}) from None
        account, created = self._store.create_account(
            thumbprint, jws.canonical_jwk(signed.jwk), contact, agreed, now)
        return self._account_answer(201 if created else 200, account, base)

    def _account_answer(self, status: int, account: Account, base: str) -> AcmeResponse:
        response = _json(status, self._account_json(account, base))
        response.headers.append(("Location", f"{base}{PREFIX}/acct/{account.id}"))
        return response

    def _account_update(self, signed: jws.SignedRequest, account: Account,
                        base: str) -> AcmeResponse:
        payload = signed.json()
        if payload is None:  # POST-as-GET
            return _json(200, self._account_json(account, base))
        status = payload.get("status")  # (only contact and status change: others ignored)
        if status not in (None, "valid", "deactivated"):
            raise AcmeProblem("malformed", "the only status a client sets is deactivated")
        if status == "valid":  # the account as it is, sent back whole (certbot's update)
            status = None
        contact = _contact(payload["contact"]) if "contact" in payload else None
        updated = self._store.update_account(account.id, contact=contact, status=status)
        return _json(200, self._account_json(updated, base))

    def _key_change(self, signed: jws.SignedRequest, account: Account,
                    request: AcmeRequest) -> AcmeResponse:
        inner = jws.parse_inner(signed.payload, request.url)
        assert inner.jwk is not None
        jws.verify(inner, inner.jwk)
        payload = inner.json() or {}
        if set(payload) != {"account", "oldKey"} or payload["account"] != signed.kid:
            raise AcmeProblem("malformed", "the inner payload names this account and its "
                                           "old key")
        if not isinstance(payload["oldKey"], dict) or \
                jws.thumbprint(payload["oldKey"]) != account.thumbprint:
            raise AcmeProblem("malformed", "oldKey is not the account's key")
        thumbprint = jws.thumbprint(inner.jwk)
        try:
            changed = self._store.change_key(account.id, thumbprint, jws.canonical_jwk(inner.jwk))
        except KeyInUse:
            holder = self._store.account_by_key(thumbprint)
            raise AcmeProblem(
                "malformed", "another account has that key", status=409,
                headers={"Location": f"{request.base}{PREFIX}/acct/{holder.id}"}
                if holder else {}) from None
        return _json(200, self._account_json(changed, request.base))


def _contact(value: Any) -> list[str]:
    """Contact URLs: ``mailto:`` addresses only (what a CA can use), without headers."""
    if not isinstance(value, list) or len(value) > MAX_CONTACTS or \
            not all(isinstance(c, str) for c in value):
        raise AcmeProblem("malformed", f"contact is a list of at most {MAX_CONTACTS} URLs")
    for item in value:
        if not item.startswith("mailto:"):
            raise AcmeProblem("unsupportedContact", "contacts are mailto: URLs")
        address = item[len("mailto:"):]
        if len(item) > MAX_CONTACT or "?" in address or "," in address or \
                not re.fullmatch(r"[^@\s<>]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+", address):
            raise AcmeProblem("invalidContact", f"{item[:80]!r} is not one email address")
    return list(value)


def _json(status: int, body: dict[str, Any]) -> AcmeResponse:
    return AcmeResponse(status, json.dumps(body).encode(), "application/json")
