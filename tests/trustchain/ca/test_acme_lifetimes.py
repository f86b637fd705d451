"""The ACME core over time, on a scripted clock: valid authorizations are reused by their
account's later orders (and the order expires no later than they do), orders and
authorizations expire (their status says so, and nothing proceeds on them), and an
invalid or expired order no longer holds the certificate it was to replace (RFC 9773 5).

Requests are signed by the ``acme`` library's JWS (the client side no one here wrote);
the store is the node's SQLite one, the limits the CA's buckets.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import josepy
import pytest
from acme import jws as acme_jws
from cryptography.hazmat.primitives.asymmetric import ec

from trustchain.ca.acme.orders import AUTHZ_VALID_LIFETIME, ORDER_LIFETIME, Validate
from trustchain.ca.acme.server import AcmeRequest, AcmeResponse, AcmeServer, Meta
from trustchain.ca.ratelimit import DEFAULT_LIMITS
from trustchain.storage.acme import ACME_SCHEMA, SqliteAcmeStore
from trustchain.storage.database import Database
from trustchain.storage.migrations import migrate
from trustchain.storage.ratelimit import RATELIMIT_SCHEMA, RateLimiter
from trustchain.wiring.acme import AcmeLimits

BASE = "https://ca.example.net"
NAME = "www.alpha.example.net"


@dataclass
class Client:
    """One account's requests, signed with its key, on the test's clock."""

    server: AcmeServer
    now: datetime
    key: josepy.JWKEC = field(default_factory=lambda: josepy.JWKEC(
        key=ec.generate_private_key(ec.SECP256R1())))
    kid: str | None = None
    nonce: str = ""
    jobs: list[Any] = field(default_factory=list)

    def post(self, path: str, payload: dict[str, Any] | None) -> AcmeResponse:
        """Signed and sent; retried once on badNonce, as clients do (the clock jumps past
        the nonce's hour)."""
        response = self._post(path, payload)
        if response.status == 400 and b"badNonce" in response.body:
            response = self._post(path, payload)
        return response

    def _post(self, path: str, payload: dict[str, Any] | None) -> AcmeResponse:
        if not self.nonce:
            self.nonce = self._nonce(self.server.handle(
                AcmeRequest("HEAD", f"{BASE}/acme/new-nonce"), self.now))
        body = b"" if payload is None else json.dumps(payload).encode()
        signed = acme_jws.JWS.sign(body, key=self.key, alg=josepy.ES256,
                                   nonce=josepy.b64decode(self.nonce), url=BASE + path,
                                   kid=self.kid).json_dumps()
        response = self.server.handle(AcmeRequest(
            "POST", BASE + path, "application/jose+json", signed.encode(), "2001:db8::1"),
            self.now)
        self.nonce = self._nonce(response)
        if response.job is not None:
            self.jobs.append(response.job)
        return response

    @staticmethod
    def _nonce(response: AcmeResponse) -> str:
        return next(v for k, v in response.headers if k == "Replay-Nonce")

    def json(self, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.post(path, payload)
        answer: dict[str, Any] = json.loads(response.body)
        return answer

    def register(self) -> None:
        response = self.post("/acme/new-account", {"termsOfServiceAgreed": True})
        assert response.status == 201, response.body
        self.kid = next(v for k, v in response.headers if k == "Location")

    def order(self, **extra: Any) -> tuple[str, dict[str, Any]]:
        response = self.post("/acme/new-order", {
            "identifiers": [{"type": "dns", "value": NAME}], **extra})
        assert response.status == 201, response.body
        return (next(v for k, v in response.headers if k == "Location").removeprefix(BASE),
                json.loads(response.body))

    def validate(self, authz_url: str) -> None:
        """Answer its http-01 challenge; the edge reports it good."""
        authz = self.json(authz_url.removeprefix(BASE))
        url = next(c["url"] for c in authz["challenges"] if c["type"] == "http-01")
        self.post(url.removeprefix(BASE), {})
        job = self.jobs.pop()
        assert isinstance(job, Validate)
        self.server.validated(job, None, self.now)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[AcmeServer, SqliteAcmeStore]]:
    db = Database(tmp_path / "node.db")
    migrate(db, ACME_SCHEMA)
    migrate(db, RATELIMIT_SCHEMA)
    store = SqliteAcmeStore(db)
    yield AcmeServer(store, nonce_prefix="n0de", meta=Meta(("example.net",)),
                     random=secrets.token_bytes, limits=AcmeLimits(RateLimiter(db, DEFAULT_LIMITS)),
                     network_of=lambda names: "alpha",
                     certificate_status=lambda serial: None), store
    db.close()


NOW = datetime(2026, 12, 3, 12, tzinfo=UTC)


def test_a_valid_authorization_is_reused_until_it_nearly_expires(
        world: tuple[AcmeServer, SqliteAcmeStore]) -> None:
    server, _store = world
    client = Client(server, NOW)
    client.register()
    _first, order = client.order()
    (authz_url,) = order["authorizations"]
    client.validate(authz_url)
    authz = client.json(authz_url.removeprefix(BASE))
    assert authz["status"] == "valid"
    assert authz["expires"] == (NOW + AUTHZ_VALID_LIFETIME).isoformat().replace("+00:00", "Z")

    client.now = NOW + timedelta(days=25)  # a new order: ready at once, on the same authz
    _second, again = client.order()
    assert again["status"] == "ready" and again["authorizations"] == [authz_url]
    assert datetime.fromisoformat(again["expires"]) == NOW + AUTHZ_VALID_LIFETIME

    other = Client(server, client.now)  # another account validates for itself
    other.register()
    _theirs, theirs = other.order()
    assert theirs["status"] == "pending" and theirs["authorizations"] != [authz_url]

    client.now = NOW + AUTHZ_VALID_LIFETIME - timedelta(hours=12)  # within the margin
    _third, fresh = client.order()
    assert fresh["status"] == "pending" and fresh["authorizations"] != [authz_url]
    assert datetime.fromisoformat(fresh["expires"]) == client.now + ORDER_LIFETIME


def test_orders_and_authorizations_expire(world: tuple[AcmeServer, SqliteAcmeStore]) -> None:
    server, _store = world
    client = Client(server, NOW)
    client.register()
    order_url, order = client.order()
    (authz_url,) = order["authorizations"]
    client.now = NOW + ORDER_LIFETIME + timedelta(seconds=1)
    assert client.json(order_url)["status"] == "invalid"
    authz = client.json(authz_url.removeprefix(BASE))
    assert authz["status"] == "expired"
    challenge = next(c["url"] for c in authz["challenges"] if c["type"] == "http-01")
    refused = client.post(challenge.removeprefix(BASE), {})
    assert refused.status == 404 and b"expired" in refused.body and not client.jobs
    finalize = client.post(order_url + "/finalize", {"csr": "AA"})
    assert json.loads(finalize.body)["type"] == "urn:ietf:params:acme:error:orderNotReady"

    # A valid authorization expires too, and its ready order with it.
    client.now = NOW + timedelta(days=10)
    order_url, order = client.order()
    client.validate(order["authorizations"][0])
    assert client.json(order_url)["status"] == "ready"
    client.now += ORDER_LIFETIME
    assert client.json(order_url)["status"] == "invalid"


def test_an_invalid_or_expired_order_no_longer_holds_what_it_replaces(
        world: tuple[AcmeServer, SqliteAcmeStore]) -> None:
    server, store = world
    client = Client(server, NOW)
    client.register()
    assert client.kid is not None
    account = int(client.kid.rsplit("/", 1)[1])
    store.add_certificate("1234", account, _leaf_pem())
    replaces = "AQID.EjQ"  # AKI 010203, serial 0x1234
    first_url, _first = client.order(replaces=replaces)
    taken = client.post("/acme/new-order", {"identifiers": [{"type": "dns", "value": NAME}],
                                            "replaces": replaces})
    assert taken.status == 409
    assert json.loads(taken.body)["type"] == "urn:ietf:params:acme:error:alreadyReplaced"
    client.now = NOW + ORDER_LIFETIME + timedelta(seconds=1)  # the first order expired
    second_url, _second = client.order(replaces=replaces)
    order_id = int(second_url.rsplit("/", 1)[1])
    assert store.set_order(order_id, "invalid")  # say, refused at issuance
    client.order(replaces=replaces)
    assert client.json(first_url)["status"] == "invalid"


def _leaf_pem() -> str:
    """A certificate for NAME (self-signed: the store only keeps the chain's text)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import Encoding

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([])
    certificate = x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(
        key.public_key()).serial_number(0x1234).not_valid_before(NOW).not_valid_after(
        NOW + timedelta(days=90)).add_extension(x509.SubjectAlternativeName(
            [x509.DNSName(NAME)]), critical=False).sign(key, hashes.SHA256())
    return certificate.public_bytes(Encoding.PEM).decode()
