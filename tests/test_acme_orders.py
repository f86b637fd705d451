"""ACME orders end to end on a running node, with certbot's ``acme`` library as the
client: a network registered, its name's AAAA record in the node's zone, an http-01
responder run here (on the port the node's ``acme_http01_port`` names), the order
validated by the node over HTTP, finalized, and the certificate downloaded; ``openssl
verify`` checks it as a TLS server certificate under the genesis root, and it carries
SCTs.  Then a dns-01 validation from a TXT record written with ``trustchain record
add``, and one refusal per rule: a name outside every network (rejectedIdentifier), a
wrong key authorization (incorrectResponse on the challenge), a CSR whose names are
not the order's (badCSR), a finalize before the order is ready (orderNotReady)."""

from __future__ import annotations

import base64
import functools
import hashlib
import http.server
import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import josepy
import pytest
from acme import challenges, messages
from acme import client as acme_client
from acme import errors as acme_errors
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from bootstrap.init import InitResult
from tests.support import NodeProcess, run_cli
from tests.trustchain.ca.test_issuance import lint

NAME = "www.alpha.trust.example.net"


class Responder(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6

    def __init__(self) -> None:
        self.tokens: dict[str, str] = {}
        super().__init__(("::1", 0), functools.partial(_Handler, self))


class _Handler(http.server.BaseHTTPRequestHandler):
    def __init__(self, server: Responder, *args: Any) -> None:
        self.responder = server
        super().__init__(*args)

    def do_GET(self) -> None:  # noqa: N802 - the standard library's name
        token = self.path.rpartition("/")[2]
        body = self.responder.tokens.get(token, "").encode()
        self.send_response(200 if body else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def start_acme_node(data_dir: Path, node_processes: list[NodeProcess],
                    **settings: int) -> tuple[str, list[str | Path]]:
    """A node with these trustchain.toml ``settings`` (the challenge ports), the network
    alpha registered and its name's AAAA record (::1): its HTTP base URL and the admin
    options that reach it."""
    config = data_dir / "trustchain.toml"
    kept = [line for line in config.read_text().splitlines()
            if not line.lstrip("# ").startswith(tuple(settings))]
    config.write_text("\n".join([*(f"{k} = {v}" for k, v in settings.items()), *kept]) + "\n")
    proc = NodeProcess.start(data_dir)
    node_processes.append(proc)
    proc.wait_ready()
    admin: list[str | Path] = ["--data-dir", data_dir, "--server",
                               "[{}]:{}".format(*proc.address("quic"))]
    for command in (["network", "register", "alpha"], ["record", "add", NAME, "AAAA", "::1"]):
        result = run_cli(*command, *admin)
        assert result.returncode == 0, result.stderr
    return "http://[{}]:{}".format(*proc.address("http")), admin


def free_port() -> int:
    with socket.socket(socket.AF_INET6) as probe:
        probe.bind(("::1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def responder() -> Iterator[Responder]:
    """The http-01 responder, serving until the test ends."""
    serving = Responder()
    threading.Thread(target=serving.serve_forever, daemon=True).start()
    yield serving
    serving.shutdown()
    serving.server_close()


@pytest.fixture
def ordering(node: InitResult, data_dir: Path, node_processes: list[NodeProcess],
             responder: Responder) -> tuple[str, list[str | Path], Responder]:
    base, admin = start_acme_node(data_dir, node_processes,
                                  acme_http01_port=responder.server_address[1])
    return base, admin, responder


def new_client(base: str) -> acme_client.ClientV2:
    net = acme_client.ClientNetwork(josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1())),
                                    alg=josepy.ES256, user_agent="trustchain-tests")
    client = acme_client.ClientV2(messages.Directory.from_json(
        net.get(f"{base}/acme/directory").json()), net)
    client.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
    return client


def csr_for(*names: str, key: ec.EllipticCurvePrivateKey | None = None) -> bytes:
    key = key or ec.generate_private_key(ec.SECP256R1())
    return x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).add_extension(
        x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
    ).sign(key, hashes.SHA256()).public_bytes(Encoding.PEM)


def challenge(order: messages.OrderResource, kind: type) -> messages.ChallengeBody:
    (authz,) = order.authorizations
    return next(c for c in authz.body.challenges if isinstance(c.chall, kind))


def answered(client: acme_client.ClientV2, order: messages.OrderResource,
             responder: Responder) -> messages.OrderResource:
    """``order`` with the http-01 challenge of each pending authorization answered (the
    responder serves the key authorization); reused valid ones are left as they are."""
    for authz in order.authorizations:
        if authz.body.status == messages.STATUS_PENDING:
            body = next(c for c in authz.body.challenges
                        if isinstance(c.chall, challenges.HTTP01))
            response, validation = body.response_and_validation(client.net.key)
            responder.tokens[body.chall.encode("token")] = validation
            client.answer_challenge(body, response)
    return order


def test_an_http01_order_is_validated_finalized_and_downloaded(
        ordering: tuple[str, list[str | Path], Responder], data_dir: Path,
        tmp_path: Path) -> None:
    base, _admin, responder = ordering
    client = new_client(base)
    order = client.new_order(csr_for(NAME))
    assert order.body.status == messages.STATUS_PENDING
    done = client.poll_and_finalize(answered(client, order, responder))
    assert done.body.status == messages.STATUS_VALID
    chain = x509.load_pem_x509_certificates(done.fullchain_pem.encode())
    leaf = chain[0]
    assert leaf.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == [NAME]
    scts = leaf.extensions.get_extension_for_class(
        x509.PrecertificateSignedCertificateTimestamps).value
    assert len(scts) == 2
    root = tmp_path / "root.pem"
    root.write_text(run_cli("genesis", "show", "--data-dir", data_dir, "--root-pem").stdout)
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(Encoding.PEM))
    (tmp_path / "chain.pem").write_bytes(b"".join(c.public_bytes(Encoding.PEM)
                                                 for c in chain[1:]))
    verify = subprocess.run(["openssl", "verify", "-purpose", "sslserver", "-CAfile", root,
                             "-untrusted", tmp_path / "chain.pem", tmp_path / "leaf.pem"],
                            capture_output=True, text=True, timeout=30)
    assert verify.returncode == 0 and ": OK" in verify.stdout, verify.stdout + verify.stderr
    assert lint("lint_cabf_serverauth_cert", tmp_path / "leaf.pem",
                "-t", "DV-FINAL-CERTIFICATE") == []  # pkilint: the CA/B Forum server profile

    # ARI (RFC 9773), read by the acme library from the directory's renewalInfo: the
    # suggested renewal time lies in the window (2/3 to 5/6 of the lifetime).
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    when, _next = client.renewal_time(done.fullchain_pem.encode())
    assert when is not None
    when = when.astimezone(UTC)
    assert leaf.not_valid_before_utc + lifetime * 2 / 3 <= when <= \
        leaf.not_valid_before_utc + lifetime * 5 / 6 + timedelta(seconds=1)
    # An order that replaces it: accepted once, refused the second time.
    replacing = _Payload({"identifiers": [{"type": "dns", "value": NAME}],
                          "replaces": ari_id(leaf)})
    assert client.net.post(client.directory["newOrder"], replacing).status_code == 201
    with pytest.raises(acme_errors.ConflictError):  # 409, alreadyReplaced (RFC 9773 5)
        client.net.post(client.directory["newOrder"], replacing)

    # Revoked by the account that ordered it: openssl ocsp against the node says so.
    assert ocsp(base, tmp_path, chain, root) == "good"
    client.revoke(leaf, 4)  # superseded
    assert ocsp(base, tmp_path, chain, root) == "revoked"
    when, _next = client.renewal_time(done.fullchain_pem.encode())
    assert when is not None and when.astimezone(UTC) < datetime.now(UTC)  # renew now
    with pytest.raises(messages.Error) as again:
        client.revoke(leaf, 4)
    assert again.value.typ == "urn:ietf:params:acme:error:alreadyRevoked"
    stranger = new_client(base)
    with pytest.raises(messages.Error) as other:
        stranger.revoke(leaf, 0)
    assert other.value.typ in ("urn:ietf:params:acme:error:unauthorized",)


class _Payload:
    """A JSON payload the acme library signs as it is (its NewOrder has no replaces)."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body

    def json_dumps(self, indent: int | None = None) -> str:
        return json.dumps(self.body, indent=indent)


def ari_id(leaf: x509.Certificate) -> str:
    """RFC 9773's certificate identifier, computed here from the certificate."""
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    serial = leaf.serial_number.to_bytes((leaf.serial_number.bit_length() + 8) // 8, "big",
                                         signed=True)
    return ".".join(base64.urlsafe_b64encode(part).rstrip(b"=").decode()
                    for part in (aki.key_identifier or b"", serial))


def ocsp(base: str, tmp_path: Path, chain: list[x509.Certificate], root: Path) -> str:
    """``openssl ocsp`` for the chain's leaf against the node's responder: good/revoked."""
    (tmp_path / "o-leaf.pem").write_bytes(chain[0].public_bytes(Encoding.PEM))
    (tmp_path / "o-issuer.pem").write_bytes(chain[1].public_bytes(Encoding.PEM))
    url = chain[0].extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    path = next(d.access_location.value for d in url
                if d.access_method == x509.oid.AuthorityInformationAccessOID.OCSP)
    path = "/" + path.split("/", 3)[3]
    result = subprocess.run(["openssl", "ocsp", "-issuer", tmp_path / "o-issuer.pem", "-cert",
                             tmp_path / "o-leaf.pem", "-CAfile", root, "-url", base + path],
                            capture_output=True, text=True, timeout=30)
    assert "Response verify OK" in result.stdout + result.stderr, result.stdout + result.stderr
    return result.stdout.split(": ", 1)[1].split()[0]


def test_a_dns01_order_reads_the_txt_record_from_the_nodes_zone(
        ordering: tuple[str, list[str | Path], Responder], data_dir: Path,
        tmp_path: Path) -> None:
    base, admin, responder = ordering
    client = new_client(base)
    order = client.new_order(csr_for(NAME))
    body = challenge(order, challenges.DNS01)
    response, validation = body.response_and_validation(client.net.key)
    assert validation == josepy.b64encode(hashlib.sha256(
        body.chall.key_authorization(client.net.key).encode()).digest()).decode()
    added = run_cli("record", "add", f"_acme-challenge.{NAME}", "TXT", validation, *admin)
    assert added.returncode == 0, added.stderr
    client.answer_challenge(body, response)
    order = client.poll_authorizations(order, datetime.now() + timedelta(seconds=20))
    with pytest.raises(messages.Error) as other:  # ready, but a CSR for another name
        client.begin_finalization(order.update(csr_pem=csr_for("api.alpha.trust.example.net")))
    assert other.value.typ == "urn:ietf:params:acme:error:badCSR", other.value
    key = ec.generate_private_key(ec.SECP256R1())
    done = client.poll_and_finalize(order.update(csr_pem=csr_for(NAME, key=key)))
    assert done.body.status == messages.STATUS_VALID

    # RFC 8555 7.6. A certificate made up with this one's serial and one's own key
    # revokes nothing; an account holding a valid authorization for the name revokes it;
    # its own key (jwk, no account) then finds it revoked.
    chain = x509.load_pem_x509_certificates(done.fullchain_pem.encode())
    forger = ec.generate_private_key(ec.SECP256R1())
    forged = x509.CertificateBuilder().subject_name(chain[0].subject).issuer_name(
        chain[0].issuer).public_key(forger.public_key()).serial_number(
        chain[0].serial_number).not_valid_before(chain[0].not_valid_before_utc
                                                 ).not_valid_after(chain[0].not_valid_after_utc
                                                                   ).add_extension(
        x509.SubjectAlternativeName([x509.DNSName(NAME)]), critical=False).sign(
        forger, hashes.SHA256())
    with pytest.raises(messages.Error) as made_up:
        by_key_of(client, forger).revoke(forged, 1)
    assert made_up.value.typ == "urn:ietf:params:acme:error:malformed", made_up.value
    holder = new_client(base)
    held = answered(holder, holder.new_order(csr_for(NAME)), responder)
    holder.poll_authorizations(held, datetime.now() + timedelta(seconds=20))
    holder.revoke(chain[0], 1)  # keyCompromise
    root = tmp_path / "root.pem"
    root.write_text(run_cli("genesis", "show", "--data-dir", data_dir, "--root-pem").stdout)
    assert ocsp(base, tmp_path, chain, root) == "revoked"
    with pytest.raises(messages.Error) as again:
        by_key_of(client, key).revoke(chain[0], 1)
    assert again.value.typ == "urn:ietf:params:acme:error:alreadyRevoked", again.value


def by_key_of(client: acme_client.ClientV2,
              key: ec.EllipticCurvePrivateKey) -> acme_client.ClientV2:
    """A client with no account, signing with a certificate's key (jwk)."""
    net = acme_client.ClientNetwork(josepy.JWKEC(key=key), alg=josepy.ES256,
                                    user_agent="trustchain-tests")
    return acme_client.ClientV2(client.directory, net)


def test_each_order_rule_is_refused_with_its_acme_error(
        ordering: tuple[str, list[str | Path], Responder]) -> None:
    base, _admin, responder = ordering
    client = new_client(base)
    with pytest.raises(messages.Error) as outside:
        client.new_order(csr_for("www.example.org"))
    assert outside.value.typ == "urn:ietf:params:acme:error:rejectedIdentifier"
    assert outside.value.subproblems and \
        outside.value.subproblems[0].identifier.value == "www.example.org"

    order = client.new_order(csr_for(NAME))
    with pytest.raises(messages.Error) as early:
        client.begin_finalization(order)  # (finalize_order itself waits for "ready")
    assert early.value.typ == "urn:ietf:params:acme:error:orderNotReady"

    body = challenge(order, challenges.HTTP01)
    response, _validation = body.response_and_validation(client.net.key)
    responder.tokens[body.chall.encode("token")] = "another-key-authorization"
    client.answer_challenge(body, response)
    with pytest.raises(Exception):  # noqa: B017 - the acme library raises its own on invalid
        client.poll_authorizations(order, datetime.now() + timedelta(seconds=20))
    authz = client.net.post(order.body.authorizations[0], None).json()
    failed = next(c for c in authz["challenges"] if c["type"] == "http-01")
    assert authz["status"] == "invalid" and failed["status"] == "invalid"
    assert failed["error"]["type"] == "urn:ietf:params:acme:error:incorrectResponse"
    assert client.net.post(order.uri, None).json()["status"] == "invalid"

    # The account's orders (RFC 8555 7.1.2.1): the one made, by its URL.
    account = client.net.post(client.net.account.uri, None).json()
    listed = client.net.post(account["orders"], None)
    assert listed.json() == {"orders": [order.uri]} and "next" not in listed.headers.get(
        "Link", "")


def test_caa_records_in_the_nodes_zone_decide_issuance(
        ordering: tuple[str, list[str | Path], Responder]) -> None:
    """RFC 8659 at finalize, read from the node's zone: a CAA record at the network's apex
    naming another CA makes the order invalid (caa); one naming this CA (the origin)
    for this account and http-01 (RFC 8657) lets it issue."""
    base, admin, responder = ordering
    client = new_client(base)

    def order_validated() -> messages.OrderResource:
        order = answered(client, client.new_order(csr_for(NAME)), responder)
        return client.poll_authorizations(order, datetime.now() + timedelta(seconds=20))

    zone = "alpha.trust.example.net"
    assert run_cli("record", "add", zone, "CAA", '0 issue "otherca.example"',
                   *admin).returncode == 0
    with pytest.raises(acme_errors.IssuanceError) as refused:
        client.poll_and_finalize(order_validated())
    assert refused.value.error.typ == "urn:ietf:params:acme:error:caa", refused.value.error
    assert run_cli("record", "delete", zone, "CAA", *admin).returncode == 0
    ours = f'0 issue "trust.example.net; accounturi={client.net.account.uri}; ' \
        'validationmethods=http-01"'
    added = run_cli("record", "add", zone, "CAA", ours, *admin)
    assert added.returncode == 0, added.stderr
    assert client.poll_and_finalize(order_validated()).body.status == messages.STATUS_VALID


def test_external_account_binding_decides_who_orders_for_a_network(
        ordering: tuple[str, list[str | Path], Responder]) -> None:
    """``trustchain acme eab --network alpha`` mints a key; from then on only accounts
    bound to alpha with one (RFC 8555 7.3.4, made by the acme library) order alpha's
    names, and a key binds one account."""
    base, admin, responder = ordering
    before = new_client(base)  # made before the network asked for bindings
    minted = run_cli("acme", "eab", "--network", "alpha", "--json", *admin)
    assert minted.returncode == 0, minted.stderr
    eab = json.loads(minted.stdout)
    with pytest.raises(messages.Error) as unbound:
        before.new_order(csr_for(NAME))
    assert unbound.value.typ == "urn:ietf:params:acme:error:unauthorized", unbound.value

    def bound_client(eab: dict[str, str] = eab) -> acme_client.ClientV2:
        key = josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
        net = acme_client.ClientNetwork(key, alg=josepy.ES256, user_agent="trustchain-tests")
        client = acme_client.ClientV2(messages.Directory.from_json(
            net.get(f"{base}/acme/directory").json()), net)
        binding = messages.ExternalAccountBinding.from_data(
            key.public_key(), eab["kid"], eab["hmac_key"], client.directory)
        client.new_account(messages.NewRegistration.from_data(
            terms_of_service_agreed=True, external_account_binding=binding))
        return client

    client = bound_client()
    order = answered(client, client.new_order(csr_for(NAME)), responder)
    assert client.poll_and_finalize(order).body.status == messages.STATUS_VALID
    with pytest.raises(messages.Error) as reused:
        bound_client()
    assert reused.value.typ == "urn:ietf:params:acme:error:unauthorized", reused.value

    # The operator lists the keys (never their HMAC keys) and withdraws an unused one,
    # which binds no account from then on; the network still needs bound accounts.
    spare = json.loads(run_cli("acme", "eab", "--network", "alpha", "--json", *admin).stdout)
    withdrawn = run_cli("acme", "eab", "withdraw", spare["kid"], *admin)
    assert withdrawn.returncode == 0 and "withdrawn" in withdrawn.stdout, withdrawn.stderr
    listed = run_cli("acme", "eab", "list", "--network", "alpha", "--json", *admin)
    keys = {k["kid"]: k for k in json.loads(listed.stdout)["keys"]}
    assert set(keys) == {eab["kid"], spare["kid"]} and "hmac_key" not in listed.stdout
    assert keys[eab["kid"]]["account_id"] == int(client.net.account.uri.rsplit("/", 1)[1])
    assert keys[spare["kid"]]["withdrawn_at"] and keys[spare["kid"]]["account_id"] is None
    with pytest.raises(messages.Error) as gone:
        bound_client(spare)
    assert gone.value.typ == "urn:ietf:params:acme:error:unauthorized", gone.value
    assert "alpha" in run_cli("acme", "eab", "list", *admin).stdout


def test_failed_validations_are_limited_per_account_and_name(
        ordering: tuple[str, list[str | Path], Responder]) -> None:
    """The CA's ``authz`` limit (5 failed validations an hour per account and name): after
    five wrong answers the account's next order for that name is refused (rateLimited,
    with a Retry-After)."""
    base, _admin, responder = ordering
    client = new_client(base)
    for _ in range(5):
        order = client.new_order(csr_for(NAME))
        body = challenge(order, challenges.HTTP01)
        response, _validation = body.response_and_validation(client.net.key)
        responder.tokens[body.chall.encode("token")] = "wrong"
        client.answer_challenge(body, response)
        with pytest.raises(Exception):  # noqa: B017 - the acme library's own, on invalid
            client.poll_authorizations(order, datetime.now() + timedelta(seconds=20))
    with pytest.raises(messages.Error) as limited:
        client.new_order(csr_for(NAME))
    assert limited.value.typ == "urn:ietf:params:acme:error:rateLimited", limited.value
    assert "failed validations" in (limited.value.detail or "")


def test_a_replacement_of_a_revoked_certificate_is_not_held_by_the_names_limit(
        node: InitResult, data_dir: Path, node_processes: list[NodeProcess],
        responder: Responder) -> None:
    """With one certificate a week per set of names, a second order for them is refused at
    finalize (rateLimited), but an order that ``replaces`` the first once it is revoked
    (its ARI window is now) is issued: the CA does not charge a renewal inside its window
    to the names and domain limits."""
    config = data_dir / "trustchain.toml"
    config.write_text(config.read_text() + "\n[ca_rate_limits.names]\ncount = 1\n"
                      "period_seconds = 604800\n")
    base, _admin = start_acme_node(data_dir, node_processes,
                                   acme_http01_port=responder.server_address[1])
    client = new_client(base)
    first = client.poll_and_finalize(answered(client, client.new_order(csr_for(NAME)),
                                              responder))
    leaf = x509.load_pem_x509_certificate(first.fullchain_pem.encode())
    with pytest.raises(acme_errors.IssuanceError) as limited:
        client.poll_and_finalize(answered(client, client.new_order(csr_for(NAME)), responder))
    assert limited.value.error.typ == "urn:ietf:params:acme:error:rateLimited"
    client.revoke(leaf, 1)  # keyCompromise: ARI's window is now
    csr = csr_for(NAME)
    answer = client.net.post(client.directory["newOrder"], _Payload(
        {"identifiers": [{"type": "dns", "value": NAME}], "replaces": ari_id(leaf)}))
    body = messages.Order.from_json(answer.json())
    replacing = messages.OrderResource(
        body=body, uri=answer.headers["Location"], csr_pem=csr, authorizations=[
            client._authzr_from_response(client._post_as_get(url), uri=url)
            for url in body.authorizations])
    renewed = client.poll_and_finalize(answered(client, replacing, responder))
    assert renewed.body.status == messages.STATUS_VALID
