"""The ACME resources (RFC 8555 section 7): a request in, a response out.

Pure but for its store (the contract of :mod:`trustchain.ca.acme.store`); time and
randomness are passed in, and what needs the network or the CA comes back as a job
on the response (:class:`~trustchain.ca.acme.orders.Validate` a challenge,
:class:`~trustchain.ca.acme.orders.Issue` a certificate) for the edge to do and
report (:meth:`AcmeServer.validated`, :meth:`AcmeServer.issued`).  Built: the
directory, nonces, accounts (new, existing, ``onlyReturnExisting``, read, update,
deactivation), key change, orders, authorizations, http-01, dns-01 and tls-alpn-01
challenges,
finalization, certificate download, revocation, ARI (``renewalInfo``,
``replaces``) and External Account Binding (per network: the directory says
``externalAccountRequired: false`` as not every network needs one).  Valid
authorizations are reused by their account's later orders; orders and authorizations
expire (their status says so at the time asked).

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
from typing import Any, Protocol
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from trustchain.ca.acme import ari, jws, orders
from trustchain.ca.acme.orders import Issue, Revoke, Validate
from trustchain.ca.acme.problems import PROBLEM_TYPE, AcmeProblem
from trustchain.ca.acme.store import (
    Account,
    AcmeStore,
    AlreadyReplaced,
    Authorization,
    KeyInUse,
    NewAuthorization,
    Order,
)
from trustchain.ca.ratelimit import RateLimited

PREFIX = "/acme"
#: A nonce is good for this long after it is given out.
NONCE_LIFETIME = 3600
NONCE_BYTES = 16
MAX_CONTACTS = 10
MAX_CONTACT = 254
_ID = r"([1-9][0-9]{0,17})"
_ACCOUNT = re.compile(rf"^/acme/acct/{_ID}$")
_ORDER = re.compile(rf"^/acme/order/{_ID}(/finalize)?$")
_AUTHZ = re.compile(rf"^/acme/authz/{_ID}$")
_CHALLENGE = re.compile(rf"^/acme/chall/{_ID}/(http-01|dns-01|tls-alpn-01)$")
_CERT = re.compile(r"^/acme/cert/([0-9a-f]{1,40})$")
_ORDERS = re.compile(rf"^/acme/acct/{_ID}/orders(?:/([0-9]{{1,18}}))?$")
#: Orders listed per page of an account's orders (RFC 8555 7.1.2.1).
ORDERS_PAGE = 100


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
    #: Work for the edge before (Issue: a finalize answers once it is done) or after
    #: (Validate) it answers.
    job: Validate | Issue | Revoke | None = None


class Limits(Protocol):
    """The ACME server's rate limits (the CA's limiter at the edge); each method raises
    :class:`~trustchain.ca.ratelimit.RateLimited` to refuse."""

    def new_account(self, client: str | None, now: datetime) -> None:
        """Charge the client address's bucket of new accounts."""

    def new_order(self, account_id: int, now: datetime) -> None:
        """Charge the account's bucket of new orders (not for ARI replacements)."""

    def may_validate(self, account_id: int, name: str, now: datetime) -> None:
        """Refuse when the account failed too many validations of ``name`` lately."""

    def failed(self, account_id: int, name: str, now: datetime) -> None:
        """Count a failed validation of ``name`` by the account."""


@dataclass(frozen=True)
class Meta:
    """The directory's ``meta`` (RFC 8555 section 7.1.1)."""

    caa_identities: Sequence[str]
    terms_of_service: str | None = None
    website: str | None = None


class AcmeServer:
    def __init__(self, store: AcmeStore, *, nonce_prefix: str, meta: Meta,
                 random: Callable[[int], bytes], limits: Limits,
                 network_of: Callable[[list[str]], str],
                 certificate_status: Callable[[int], ari.CertificateStatus | None]) -> None:
        """``limits`` the rate limits (:class:`Limits`); ``network_of(names)`` the
        registered network whose names they all are, or raises an :class:`AcmeProblem`
        (rejectedIdentifier); ``certificate_status(serial)`` what ARI needs of a
        certificate the CA issued."""
        self._store = store
        self._prefix = nonce_prefix  # whose nonce it is, in a federation
        self._meta = meta
        self._random = random
        self._limits = limits
        self._network_of = network_of
        self._certificate_status = certificate_status

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
            if path.startswith(f"{PREFIX}/renewal-info/") and request.method in ("GET",
                                                                                  "HEAD"):
                response = self._renewal_info(path[len(f"{PREFIX}/renewal-info/"):], now)
                response.headers.append(("Link", f'<{base}{PREFIX}/directory>;rel="index"'))
                return response
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
                "newOrder": f"{base}{PREFIX}/new-order",
                "revokeCert": f"{base}{PREFIX}/revoke-cert",
                "renewalInfo": f"{base}{PREFIX}/renewal-info",
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
        return path in (f"{PREFIX}/new-account", f"{PREFIX}/key-change",
                        f"{PREFIX}/new-order", f"{PREFIX}/revoke-cert") or any(
            pattern.match(path) for pattern in (_ACCOUNT, _ORDER, _AUTHZ, _CHALLENGE, _CERT,
                                                _ORDERS))

    def _post(self, request: AcmeRequest, now: datetime) -> AcmeResponse:
        if not self._known(request.path):
            raise AcmeProblem("malformed", f"no ACME resource {request.path[:100]}", status=404)
        signed = jws.parse(request.body, request.content_type, request.url)
        account: Account | None = None
        if request.path == f"{PREFIX}/new-account":
            if signed.jwk is None:
                raise AcmeProblem("malformed", "newAccount is signed with the key itself (jwk)")
            key = signed.jwk
        elif request.path == f"{PREFIX}/revoke-cert" and signed.jwk is not None:
            key = signed.jwk  # the certificate's own key (RFC 8555 7.6), checked below
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
        if request.path == f"{PREFIX}/revoke-cert":
            return self._revoke(signed, account, now)
        assert account is not None
        if request.path == f"{PREFIX}/key-change":
            return self._key_change(signed, account, request)
        if not _ACCOUNT.match(request.path):
            return self._resources(signed, account, request, now)
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
        binding = None
        if "externalAccountBinding" in payload and existing is None:
            binding = jws.verify_eab(payload["externalAccountBinding"],
                                     f"{base}{PREFIX}/new-account", signed.jwk, self._eab_key)
        contact = _contact(payload.get("contact", []))
        agreed = payload.get("termsOfServiceAgreed", False)
        if not isinstance(agreed, bool):
            raise AcmeProblem("malformed", "termsOfServiceAgreed is true or false")
        if self._meta.terms_of_service and not agreed:
            raise AcmeProblem("userActionRequired", "agree to the terms of service first",
                              extra={"instance": self._meta.terms_of_service})
        if existing is None:
            _limited(self._limits.new_account, client, now)
        account, created = self._store.create_account(
            thumbprint, jws.canonical_jwk(signed.jwk), contact, agreed, now)
        if binding is not None and created and not self._store.bind_eab(binding, account.id):
            raise AcmeProblem("unauthorized", "that External Account Binding key bound "
                                              "another account already")
        return self._account_answer(201 if created else 200, account, base)

    def _eab_key(self, kid: str) -> bytes | None:
        found = self._store.eab(kid)
        if found is None or found[2] is not None:  # unknown, or used: one account per key
            return None
        return found[0]

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


    # --- orders, authorizations, challenges, certificates -----------------------------

    def _resources(self, signed: jws.SignedRequest, account: Account, request: AcmeRequest,
                   now: datetime) -> AcmeResponse:
        path, base = request.path, request.base
        if path == f"{PREFIX}/new-order":
            return self._new_order(signed, account, base, now)
        if found := _ORDERS.match(path):
            return self._orders(account, int(found[1]), int(found[2] or 0), base)
        if found := _ORDER.match(path):
            order = self._own(self._store.order(int(found[1])), account, "order")
            if found[2]:
                return self._finalize(signed, account, order, base, now)
            return _json(200, self.order_json(order, base, now))
        if found := _AUTHZ.match(path):
            authz = self._own(self._store.authorization(int(found[1])), account,
                              "authorization")
            payload = signed.json()
            if payload is not None and payload.get("status") == "deactivated":
                if orders.authz_status(authz, now) not in ("pending", "valid"):
                    raise AcmeProblem("malformed", "only a pending or valid authorization is "
                                                   "deactivated")
                authz = self._store.set_authorization(authz.id, "deactivated", authz.challenges)
            return _json(200, orders.authz_json(authz, base, now))
        if found := _CHALLENGE.match(path):
            authz = self._own(self._store.authorization(int(found[1])), account,
                              "authorization")
            return self._challenge(signed, account, authz, found[2], base, now)
        found = _CERT.match(path)
        assert found is not None
        held = self._store.certificate(found[1])
        if held is None or held[0] != account.id:
            raise AcmeProblem("malformed", "no certificate of this account has that URL",
                              status=404)
        return AcmeResponse(200, held[1].encode(), "application/pem-certificate-chain")

    def _orders(self, account: Account, owner: int, after: int, base: str) -> AcmeResponse:
        """The account's orders, a page at a time; the next page's URL in a Link header."""
        if owner != account.id:
            raise AcmeProblem("unauthorized", "an account lists only its own orders")
        ids = self._store.order_ids(account.id, after, ORDERS_PAGE + 1)
        response = _json(200, {"orders": [f"{base}{PREFIX}/order/{i}"
                                          for i in ids[:ORDERS_PAGE]]})
        if len(ids) > ORDERS_PAGE:
            response.headers.append(("Link", f"<{base}{PREFIX}/acct/{account.id}/orders/"
                                             f'{ids[ORDERS_PAGE - 1]}>;rel="next"'))
        return response

    @staticmethod
    def _own(item: Order | Authorization | None, account: Account,
             what: str) -> Any:
        if item is None or item.account_id != account.id:
            raise AcmeProblem("malformed", f"no {what} of this account has that URL",
                              status=404)
        return item

    def order_json(self, order: Order, base: str, now: datetime) -> dict[str, Any]:
        authorizations = [a for a in map(self._store.authorization, order.authorizations)
                          if a is not None]
        return orders.order_json(order, authorizations, base, now)

    def _new_order(self, signed: jws.SignedRequest, account: Account, base: str,
                   now: datetime) -> AcmeResponse:
        payload = signed.json() or {}
        if "notBefore" in payload or "notAfter" in payload:
            raise AcmeProblem("malformed", "this CA sets the validity itself: no notBefore "
                                           "or notAfter")
        names = orders.requested_names(payload)
        network = self._network_of([n.removeprefix("*.") for n in names])
        if network in self._store.eab_networks() and \
                self._store.account_network(account.id) != network:
            raise AcmeProblem("unauthorized", f"network {network} issues only to accounts "
                                              "bound to it by External Account Binding")
        replaces = self._replaces(payload["replaces"], account, names) \
            if "replaces" in payload else None
        for name in names:
            _limited(self._limits.may_validate, account.id, name.removeprefix("*."), now)
        if replaces is None:  # a replacement ARI suggested is not counted (RFC 9773 5)
            _limited(self._limits.new_order, account.id, now)
        # The account's valid authorizations are reused (RFC 8555 7.4 allows it; CAA is
        # checked again at issuance); the order expires no later than they do.
        authorizations: list[NewAuthorization | int] = []
        expires = now + orders.ORDER_LIFETIME
        for name in names:
            wildcard = name.startswith("*.")
            held = self._store.reusable_authorization(
                account.id, name.removeprefix("*."), wildcard, now + orders.AUTHZ_REUSE_MARGIN)
            if held is not None:
                authorizations.append(held.id)
                expires = min(expires, datetime.fromisoformat(held.expires))
                continue
            authorizations.append((name.removeprefix("*."), wildcard,
                                   jws.b64url(self._random(32)),
                                   orders.challenges_for(wildcard)))
        try:
            order = self._store.create_order(account.id, names, authorizations, expires, now,
                                             replaces)
        except AlreadyReplaced:
            raise AcmeProblem("alreadyReplaced", "another order replaces that certificate "
                                                 "already") from None
        response = _json(201, self.order_json(order, base, now))
        response.headers.append(("Location", f"{base}{PREFIX}/order/{order.id}"))
        return response

    def _challenge(self, signed: jws.SignedRequest, account: Account, authz: Authorization,
                   kind: str, base: str, now: datetime) -> AcmeResponse:
        challenge = next((c for c in authz.challenges if c["type"] == kind), None)
        if challenge is None:
            raise AcmeProblem("malformed", f"this authorization has no {kind} challenge",
                              status=404)
        job = None
        responded = signed.json() is not None
        if responded and orders.authz_status(authz, now) == "expired":
            raise AcmeProblem("malformed", f"the authorization expired at {authz.expires}: "
                                           "order again", status=404)
        if responded and challenge["status"] == "pending" and \
                authz.status == "pending":  # a response to it: validate (once)
            challenge = {**challenge, "status": "processing"}
            authz = self._store.set_authorization(authz.id, authz.status, [
                challenge if c["type"] == kind else c for c in authz.challenges])
            job = Validate(authz.id, kind, authz.name, authz.token, orders.key_authorization(
                authz.token, account.thumbprint))
        response = _json(200, orders.challenge_json(authz, challenge, base))
        response.headers.append(("Link", f'<{base}{PREFIX}/authz/{authz.id}>;rel="up"'))
        response.job = job
        return response

    def validated(self, job: Validate, error: AcmeProblem | None, now: datetime) -> None:
        """A challenge checked by the edge: the authorization valid, or invalid with the
        challenge's error (RFC 8555 7.5.1)."""
        authz = self._store.authorization(job.authz_id)
        if authz is None or authz.status != "pending":
            return
        outcome: dict[str, Any] = {"type": job.type, "status": "valid",
                                   "validated": orders.rfc3339(now)}
        if error is not None:
            outcome = {"type": job.type, "status": "invalid", "error": error.document()}
        self._store.set_authorization(authz.id, "valid" if error is None else "invalid", [
            outcome if c["type"] == job.type else c for c in authz.challenges],
            now + orders.AUTHZ_VALID_LIFETIME if error is None else None)
        if error is not None:
            try:
                self._limits.failed(authz.account_id, authz.name, now)
            except RateLimited:
                pass  # over the limit already: the next order says so

    def _finalize(self, signed: jws.SignedRequest, account: Account, order: Order,
                  base: str, now: datetime) -> AcmeResponse:
        payload = signed.json() or {}
        authorizations = [a for a in map(self._store.authorization, order.authorizations)
                          if a is not None]
        status = orders.order_status(order, authorizations, now)
        if status != "ready":
            raise AcmeProblem("orderNotReady", f"the order is {status}, not ready")
        try:
            csr = jws.b64url_decode(payload.get("csr", ""))
        except ValueError:
            raise AcmeProblem("malformed", "csr is the CSR's DER in base64url") from None
        orders.check_csr(csr, order.names, jws.public_key(account.jwk).as_der(private=False))
        if not self._store.set_order(order.id, "processing", expect="open"):
            raise AcmeProblem("orderNotReady", "the order is being finalized already")
        response = _json(200, {})
        response.headers.append(("Location", f"{base}{PREFIX}/order/{order.id}"))
        response.job = Issue(order.id, account.id, csr, tuple(
            (("*." if a.wildcard else "") + a.name, orders.validated_by(a))
            for a in authorizations), int(order.replaces, 16) if order.replaces else None)
        return response

    def issued(self, job: Issue, serial: str | None, chain: str | None,
               error: AcmeProblem | None, base: str, now: datetime) -> bytes:
        """The finalized order's outcome, recorded; the order's JSON to answer with."""
        if serial is not None and chain is not None:
            self._store.add_certificate(serial, job.account_id, chain)
            self._store.set_order(job.order_id, "valid", certificate=serial)
        else:
            self._store.set_order(job.order_id, "invalid",
                                  error=(error or AcmeProblem("serverInternal", "not issued"))
                                  .document())
        order = self._store.order(job.order_id)
        assert order is not None
        return json.dumps(self.order_json(order, base, now)).encode()


    def _revoke(self, signed: jws.SignedRequest, account: Account | None,
                now: datetime) -> AcmeResponse:
        """RFC 8555 7.6: by the account that ordered the certificate, by an account that
        holds valid authorizations for every name in it, or signed with the certificate's
        own key (``jwk``).  The edge checks that the certificate is the CA's own."""
        payload = signed.json() or {}
        try:
            der = jws.b64url_decode(payload.get("certificate", ""))
            certificate = x509.load_der_x509_certificate(der)
        except ValueError:
            raise AcmeProblem("malformed", "certificate is the certificate's DER in "
                                           "base64url") from None
        reason = payload.get("reason", 0)
        if not isinstance(reason, int) or isinstance(reason, bool) or \
                reason not in orders.REASONS:
            raise AcmeProblem("badRevocationReason", "reasons: " + ", ".join(
                f"{code} ({name})" for code, name in orders.REASONS.items()))
        serial = certificate.serial_number
        if account is None:  # signed by the certificate's key
            assert signed.jwk is not None
            if jws.public_key(signed.jwk).as_der(private=False) != \
                    certificate.public_key().public_bytes(Encoding.DER,
                                                          PublicFormat.SubjectPublicKeyInfo):
                raise AcmeProblem("unauthorized", "the jwk is not the certificate's key")
            actor = "acme:certificate-key"
        else:
            held = self._store.certificate(f"{serial:x}")
            if (held is None or held[0] != account.id) and \
                    not self._authorized_for(account, certificate, now):
                raise AcmeProblem("unauthorized", "this account neither ordered that "
                                  "certificate nor holds valid authorizations for its names")
            actor = f"acme:account-{account.id}"
        response = AcmeResponse(200)
        response.job = Revoke(serial, orders.REASONS[reason], actor, der)
        return response


    def _authorized_for(self, account: Account, certificate: x509.Certificate,
                        now: datetime) -> bool:
        """The account holds a valid authorization for each of the certificate's names
        (which are DNS names only: an address is never authorized through ACME here)."""
        try:
            sans = certificate.extensions.get_extension_for_class(
                x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return False
        names = [n.lower() for n in sans.get_values_for_type(x509.DNSName)]
        return bool(names) and len(names) == len(sans) and all(
            self._store.reusable_authorization(account.id, n.removeprefix("*."),
                                               n.startswith("*."), now) is not None
            for n in names)

    def _renewal_info(self, text: str, now: datetime) -> AcmeResponse:
        """RFC 9773 section 4.2: unauthenticated GET, a suggested window, Retry-After."""
        aki, serial = ari.parse_cert_id(text)
        status = self._certificate_status(serial) if serial > 0 else None
        if status is None or status.authority_key_id != aki:
            raise AcmeProblem("malformed", "no certificate of this CA has that identifier",
                              status=404)
        start, end = ari.window(status, now)
        jitter = int.from_bytes(self._random(2), "big") % 3600  # spread the clients' polls
        response = _json(200, {"suggestedWindow": {"start": orders.rfc3339(start),
                                                   "end": orders.rfc3339(end)}})
        response.headers.append(("Retry-After", str(int(
            ari.RETRY_AFTER.total_seconds()) + jitter)))
        return response

    def _replaces(self, text: Any, account: Account, names: list[str]) -> str:
        """The serial (hex) an order's ``replaces`` names: a certificate this account got
        through ACME, sharing a name with the order (RFC 9773 section 5)."""
        if not isinstance(text, str):
            raise AcmeProblem("malformed", "replaces is a certificate identifier")
        _aki, serial = ari.parse_cert_id(text)
        held = self._store.certificate(f"{serial:x}")
        if held is None or held[0] != account.id:
            raise AcmeProblem("malformed", "replaces names no certificate of this account")
        leaf = x509.load_pem_x509_certificate(held[1].encode())
        try:
            old = {n.lower() for n in leaf.extensions.get_extension_for_class(
                x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)}
        except x509.ExtensionNotFound:
            old = set()
        if not old & set(names):
            raise AcmeProblem("malformed", "the order shares no name with the certificate it "
                                           "replaces")
        return f"{serial:x}"


def _limited(check: Callable[..., None], *args: Any) -> None:
    try:
        check(*args)
    except RateLimited as exc:
        raise AcmeProblem("rateLimited", str(exc), headers={
            "Retry-After": str(exc.retry_seconds)}) from None


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
