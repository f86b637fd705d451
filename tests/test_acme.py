"""ACME accounts on a running node, judged by clients nobody on this team wrote: certbot's
``acme`` library (josepy JWS, ES256, ES384 and RS256 account keys) for the account's
life, and requests signed with joserfc (authlib's JOSE library) for EdDSA, the key
change, and one refusal per envelope rule (replayed nonce, bad signature, ``jwk`` with
``kid``, wrong ``url``, wrong Content-Type)."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import josepy
import pytest
from acme import client as acme_client
from acme import errors as acme_errors
from acme import messages
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jws as joserfc_jws
from joserfc.jwk import ECKey, OKPKey
from joserfc.registry import HeaderParameter
from prometheus_client.parser import text_string_to_metric_families

from bootstrap.init import InitResult
from tests.support import NodeProcess, run_cli

_REGISTRY = joserfc_jws.JWSRegistry(header_registry={
    "nonce": HeaderParameter("nonce", "str"), "url": HeaderParameter("url", "str")},
    algorithms=["ES256", "EdDSA"])


@pytest.fixture
def acme_node(node: InitResult, data_dir: Path,
              node_processes: list[NodeProcess]) -> Iterator[tuple[NodeProcess, str]]:
    proc = NodeProcess.start(data_dir)
    node_processes.append(proc)
    proc.wait_ready()
    yield proc, "http://[{}]:{}".format(*proc.address("http"))


def client(base: str, key: josepy.JWK, alg: josepy.JWASignature) -> acme_client.ClientV2:
    net = acme_client.ClientNetwork(key, alg=alg, user_agent="trustchain-tests")
    return acme_client.ClientV2(messages.Directory.from_json(
        net.get(f"{base}/acme/directory").json()), net)


def test_the_directory_over_https_names_the_host_the_client_used(
        acme_node: tuple[NodeProcess, str], data_dir: Path, tmp_path: Path) -> None:
    """curl over HTTPS (the genesis root as its only CA) to the node's name: the directory's
    URLs are https URLs of that name, as every ACME client needs them to be."""
    proc, _ = acme_node
    root = tmp_path / "root.pem"
    root.write_text(run_cli("genesis", "show", "--data-dir", data_dir, "--root-pem").stdout)
    host, port = proc.address("https")
    curl = subprocess.run(
        ["curl", "--silent", "--show-error", "--fail", "--cacert", root, "--connect-to",
         f"trust.example.net:443:[{host}]:{port}", "https://trust.example.net/acme/directory"],
        capture_output=True, text=True, timeout=30)
    assert curl.returncode == 0, curl.stderr
    assert json.loads(curl.stdout)["newNonce"] == "https://trust.example.net/acme/new-nonce"


def test_an_account_lives_through_certbots_acme_library(
        acme_node: tuple[NodeProcess, str]) -> None:
    _proc, base = acme_node
    with urllib.request.urlopen(f"{base}/acme/directory", timeout=10) as answer:
        directory = json.loads(answer.read())
        assert answer.headers.get("Link") is None  # the directory links to no index
    assert directory["newAccount"] == f"{base}/acme/new-account"
    assert directory["meta"] == {"caaIdentities": ["trust.example.net"],
                                 "externalAccountRequired": False}
    for name, key, alg in (
            ("es256", josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1())), josepy.ES256),
            ("es384", josepy.JWKEC(key=ec.generate_private_key(ec.SECP384R1())), josepy.ES384),
            ("rs256", josepy.JWKRSA(key=rsa.generate_private_key(65537, 2048)), josepy.RS256)):
        acme = client(base, key, alg)
        account = acme.new_account(messages.NewRegistration.from_data(
            email=f"{name}@example.com", terms_of_service_agreed=True))
        assert account.uri.startswith(f"{base}/acme/acct/")
        assert account.body.status == "valid"
        assert account.body.contact == (f"mailto:{name}@example.com",)
        with pytest.raises(acme_errors.ConflictError) as again:  # 200: the key has one
            client(base, key, alg).new_account(  # (a fresh client: it signs with jwk)
                messages.NewRegistration.from_data(email="x@example.com"))
        assert again.value.location == account.uri
        queried = acme.query_registration(account)  # POST-as-GET
        assert queried.body.status == "valid"
        updated = acme.update_registration(account, account.body.update(
            contact=(f"mailto:new-{name}@example.com",)))
        assert updated.body.contact == (f"mailto:new-{name}@example.com",)
        gone = acme.deactivate_registration(updated)
        assert gone.body.status == "deactivated"
        with pytest.raises(messages.Error) as refused:
            acme.query_registration(gone)
        assert refused.value.typ == "urn:ietf:params:acme:error:unauthorized"


def nonce(base: str) -> str:
    request = urllib.request.Request(f"{base}/acme/new-nonce", method="HEAD")
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200 and answer.headers["Cache-Control"] == "no-store"
        assert answer.headers["Link"] == f'<{base}/acme/directory>;rel="index"'
        return str(answer.headers["Replay-Nonce"])


def post(url: str, body: bytes, content_type: str = "application/jose+json"
         ) -> tuple[int, Message, Any]:
    """The status, the headers (case-insensitive) and the JSON body of a POST."""
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.headers, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, json.loads(exc.read() or b"null")


def signed(key: ECKey | OKPKey, alg: str, url: str, payload: Any, *, nonce_: str,
           kid: str | None = None, jwk: bool = True) -> bytes:
    header: dict[str, Any] = {"alg": alg, "nonce": nonce_, "url": url}
    if kid is not None:
        header["kid"] = kid
    if jwk:
        header["jwk"] = key.as_dict(private=False)
    body = b"" if payload is None else json.dumps(payload).encode()
    return json.dumps(joserfc_jws.serialize_json({"protected": header}, body, key,
                                                 registry=_REGISTRY)).encode()


def test_each_envelope_rule_is_refused_with_its_acme_error(
        acme_node: tuple[NodeProcess, str]) -> None:
    _proc, base = acme_node
    new_account = f"{base}/acme/new-account"
    key = OKPKey.generate_key("Ed25519")
    first = nonce(base)
    status, headers, body = post(new_account, signed(key, "EdDSA", new_account, {
        "termsOfServiceAgreed": True}, nonce_=first))
    assert status == 201, body  # EdDSA accounts too
    account = headers["Location"]
    assert body["status"] == "valid" and headers["Replay-Nonce"]

    def problem(answer: tuple[int, Message, Any]) -> tuple[int, str]:
        status, headers, body = answer
        assert headers["Content-Type"] == "application/problem+json"
        assert headers["Replay-Nonce"] != first  # a fresh one, also with every error
        assert headers["Link"] == f'<{base}/acme/directory>;rel="index"'
        return status, body["type"].rpartition(":")[2]

    replayed = post(new_account, signed(key, "EdDSA", new_account, {}, nonce_=first))
    assert problem(replayed) == (400, "badNonce")
    assert replayed[2]["status"] == 400
    retry = post(new_account, signed(key, "EdDSA", new_account, {},  # as certbot retries
                                     nonce_=replayed[1]["Replay-Nonce"]))
    assert retry[0] == 200 and retry[1]["Location"] == account  # the key has one

    other = OKPKey.generate_key("Ed25519")
    forged = json.loads(signed(key, "EdDSA", new_account, {}, nonce_=nonce(base)))
    forged["signature"] = json.loads(signed(other, "EdDSA", new_account, {},
                                            nonce_=nonce(base)))["signature"]
    assert problem(post(new_account, json.dumps(forged).encode())) == (400, "malformed")
    both = signed(key, "EdDSA", account, None, nonce_=nonce(base), kid=account)
    assert problem(post(account, both)) == (400, "malformed")
    elsewhere = signed(key, "EdDSA", f"{base}/acme/other", {}, nonce_=nonce(base))
    assert problem(post(new_account, elsewhere)) == (403, "unauthorized")
    typed = signed(key, "EdDSA", new_account, {}, nonce_=nonce(base))
    assert problem(post(new_account, typed, "application/json")) == (415, "malformed")
    unknown = signed(key, "EdDSA", f"{account}9", None, nonce_=nonce(base), kid=f"{account}9",
                     jwk=False)
    assert problem(post(f"{account}9", unknown)) == (400, "accountDoesNotExist")
    assert post(new_account, typed)[0] == 200  # its nonce was never used up by the refusal


def test_a_key_change_and_nonces_across_a_restart(
        acme_node: tuple[NodeProcess, str], data_dir: Path,
        node_processes: list[NodeProcess]) -> None:
    """RFC 8555 section 7.3.5: the inner JWS signed by the new key; afterwards only the new
    key acts for the account, and a second account cannot take it (409).  A nonce given
    out before a restart is good once after it; one used before it is not."""
    proc, base = acme_node
    new_account, key_change = f"{base}/acme/new-account", f"{base}/acme/key-change"
    old, new = ECKey.generate_key("P-256"), ECKey.generate_key("P-256")
    status, headers, _ = post(new_account, signed(old, "ES256", new_account, {},
                                                  nonce_=nonce(base)))
    account = headers["Location"]
    def change(account: str, signer: ECKey, to: ECKey) -> tuple[int, Message, Any]:
        header = {"alg": "ES256", "jwk": to.as_dict(private=False), "url": key_change}
        inner = joserfc_jws.serialize_json({"protected": header}, json.dumps(
            {"account": account, "oldKey": signer.as_dict(private=False)}).encode(), to,
            registry=_REGISTRY)
        return post(key_change, signed(signer, "ES256", key_change, inner, nonce_=nonce(base),
                                       kid=account, jwk=False))

    status, _, body = change(account, old, new)
    assert status == 200, body
    as_old = signed(old, "ES256", account, None, nonce_=nonce(base), kid=account, jwk=False)
    assert post(account, as_old)[0] == 400  # the old key no longer verifies
    as_new = signed(new, "ES256", account, None, nonce_=nonce(base), kid=account, jwk=False)
    assert post(account, as_new)[0] == 200
    third = ECKey.generate_key("P-256")
    _, headers, _ = post(new_account, signed(third, "ES256", new_account, {},
                                             nonce_=nonce(base)))
    status, conflict, _ = change(account, new, third)
    assert status == 409 and conflict["Location"] == headers["Location"]

    kept, used = nonce(base), nonce(base)
    assert post(account, signed(new, "ES256", account, None, nonce_=used, kid=account,
                                jwk=False))[0] == 200
    assert proc.stop() == 0
    again = NodeProcess.start(data_dir)
    node_processes.append(again)
    again.wait_ready()
    base = "http://[{}]:{}".format(*again.address("http"))
    account = account.replace(account.split("/acme/")[0], base)
    for given, expected in ((used, 400), (kept, 200), (kept, 400)):
        status, _, body = post(f"{base}/acme/acct/{account.rpartition('/')[2]}", signed(
            new, "ES256", account, None, nonce_=given, kid=account, jwk=False))
        assert status == expected, body


def test_new_accounts_are_limited_per_client_address(
        acme_node: tuple[NodeProcess, str], data_dir: Path) -> None:
    """The CA's ``address`` limit (10 in 3 hours by default): the 11th new account from
    one address is refused with rateLimited and a Retry-After; a known key still finds
    its account (nothing new is created).  The operator lists the accounts and
    deactivates one (``trustchain acme accounts``): its key is refused from then on."""
    proc, base = acme_node
    new_account = f"{base}/acme/new-account"
    keys = [ECKey.generate_key("P-256") for _ in range(11)]
    for key in keys[:10]:
        assert post(new_account, signed(key, "ES256", new_account, {},
                                        nonce_=nonce(base)))[0] == 201
    status, headers, body = post(new_account, signed(keys[10], "ES256", new_account, {},
                                                     nonce_=nonce(base)))
    assert (status, body["type"]) == (429, "urn:ietf:params:acme:error:rateLimited"), body
    assert int(headers["Retry-After"]) > 0 and "registrations" in body["detail"]
    assert post(new_account, signed(keys[0], "ES256", new_account, {},
                                    nonce_=nonce(base)))[0] == 200
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as scraped:
        families = {f.name: f for f in text_string_to_metric_families(scraped.read().decode())}
    assert any(sample.labels == {"limit": "address"} and sample.value >= 1
               for sample in families["trustchain_ca_rate_limited"].samples), \
        "the refusal is counted in the node's metrics"

    admin = ["--data-dir", data_dir, "--server", "[{}]:{}".format(*proc.address("quic"))]
    listed = run_cli("acme", "accounts", "list", "--json", *admin)
    assert listed.returncode == 0, listed.stderr
    accounts = json.loads(listed.stdout)["accounts"]
    assert len(accounts) == 10 and {a["status"] for a in accounts} == {"valid"}
    gone = run_cli("acme", "accounts", "deactivate", str(accounts[0]["id"]), *admin)
    assert gone.returncode == 0 and "is deactivated" in gone.stdout, gone.stderr
    status, _, body = post(new_account, signed(keys[0], "ES256", new_account, {},
                                               nonce_=nonce(base)))
    assert (status, body["type"]) == (403, "urn:ietf:params:acme:error:unauthorized")
    missing = run_cli("acme", "accounts", "deactivate", "999", *admin)
    assert missing.returncode == 1 and "no ACME account 999" in missing.stderr


def test_terms_of_service_when_the_operator_sets_them(
        node: InitResult, data_dir: Path, node_processes: list[NodeProcess]) -> None:
    """``acme_terms_of_service`` (and ``acme_website``) appear in the directory's meta, and
    a new account must agree (userActionRequired, with the terms' URL, until it does)."""
    config = data_dir / "trustchain.toml"
    kept = [line for line in config.read_text().splitlines()
            if not line.lstrip("# ").startswith(("acme_terms_of_service", "acme_website"))]
    config.write_text("\n".join(['acme_terms_of_service = "https://ca.example.net/terms"',
                                 'acme_website = "https://ca.example.net"', *kept]) + "\n")
    proc = NodeProcess.start(data_dir)
    node_processes.append(proc)
    proc.wait_ready()
    base = "http://[{}]:{}".format(*proc.address("http"))
    with urllib.request.urlopen(f"{base}/acme/directory", timeout=10) as answer:
        meta = json.loads(answer.read())["meta"]
    assert meta["termsOfService"] == "https://ca.example.net/terms"
    assert meta["website"] == "https://ca.example.net"
    new_account, key = f"{base}/acme/new-account", ECKey.generate_key("P-256")
    status, _, body = post(new_account, signed(key, "ES256", new_account, {},
                                               nonce_=nonce(base)))
    assert (status, body["type"]) == (403, "urn:ietf:params:acme:error:userActionRequired")
    assert body["instance"] == "https://ca.example.net/terms"
    assert post(new_account, signed(key, "ES256", new_account, {"termsOfServiceAgreed": True},
                                    nonce_=nonce(base)))[0] == 201


def test_acme_over_http3(acme_node: tuple[NodeProcess, str], node: InitResult) -> None:
    """The same routes over HTTP/3 (aioquic's H3 engine as the client): the directory with
    the URLs of the authority asked for, and a nonce from GET newNonce (204)."""
    import asyncio

    from tests.h3client import h3_get

    proc, _ = acme_node
    host, port = proc.address("quic")
    status, _headers, body = asyncio.run(h3_get(
        host, port, "/acme/directory", root=node.genesis.root_certificate,
        authority="trust.example.net"))
    assert status == 200, body
    assert json.loads(body)["newOrder"] == "https://trust.example.net/acme/new-order"
    status, headers, _body = asyncio.run(h3_get(
        host, port, "/acme/new-nonce", root=node.genesis.root_certificate,
        authority="trust.example.net"))
    assert status == 204 and headers[b"replay-nonce"] and \
        headers[b"cache-control"] == b"no-store"
