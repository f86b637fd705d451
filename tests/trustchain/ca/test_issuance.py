"""Profiles, issuance policy and the precertificate -> certificate step, checked by outside tools.

pkilint (CA/B Forum and PKIX profiles), ``openssl verify`` and
``cryptography``'s own path validator judge what the builders make.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from tests.trustchain.ca.conftest import ZONE, Pki
from trustchain.ca.issuance import (
    IssuanceError,
    Precertificate,
    finish_certificate,
    sct_list_extension,
)
from trustchain.ca.policy import PolicyError, check_csr, within
from trustchain.ca.profiles import PROFILES, intermediate_builder
from trustchain.ca.work import (
    Layout,
    certificate_builder,
    check_request,
    final_certificate,
    precertificate,
)
from trustchain.ct.structs import leaf_index_extension, sign_sct

LINT = Path(sys.executable).parent


def csr(names: list[str], key: object | None = None, *, ips: list[str] = (),  # type: ignore[assignment]
        ca: bool = False) -> bytes:
    key = key or ec.generate_private_key(ec.SECP256R1())
    general: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    general += [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ignored")]))
    if general:
        builder = builder.add_extension(x509.SubjectAlternativeName(general), critical=False)
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(Encoding.PEM)  # type: ignore[arg-type]


SERIALS = itertools.count(0x7E57_0001)


def layout(pki: Pki, request: bytes, profile: str = "server-90d", *,
           dns_names: tuple[str, ...] | list[str], addresses: tuple[str, ...] = (),
           uris: tuple[str, ...] = (), issuer: x509.Certificate | None = None,
           issuer_key_id: str | None = None) -> Layout:
    """A certificate as the CA lays it out (names as given: policy is not checked here)."""
    return Layout(request, profile, (issuer or pki.intermediate).public_bytes(Encoding.DER),
                  issuer_key_id or pki.intermediate_key_id, pki.urls, datetime.now(UTC),
                  next(SERIALS), tuple(dns_names), addresses, uris)


def sign_layout(pki: Pki, laid_out: Layout) -> tuple[Precertificate, x509.Certificate]:
    """The path production takes (:mod:`trustchain.ca.work`): the precertificate, two logs'
    SCTs over it, the final certificate."""
    pre_der = precertificate(pki.signer, laid_out)
    pre = Precertificate(certificate_builder(laid_out), x509.load_der_x509_certificate(pre_der),
                         x509.load_der_x509_certificate(laid_out.issuer), laid_out.issuer_key_id)
    final = final_certificate(pki.signer, laid_out, pre_der, log_scts(pre))
    return pre, x509.load_der_x509_certificate(final)


def issue(pki: Pki, names: list[str], profile: str = "server-90d",
          uris: tuple[str, ...] = ()) -> tuple[Precertificate, x509.Certificate]:
    request = csr(names)
    checked = check_request(request, ZONE, (), profile)
    return sign_layout(pki, layout(pki, request, profile, dns_names=checked.dns_names,
                                   addresses=checked.addresses, uris=uris))


LOG_KEYS = [ec.generate_private_key(ec.SECP256R1()) for _ in range(2)]


def log_scts(pre: Precertificate) -> list[tuple[bytes, bytes]]:
    """Real SCTs from two logs' keys over the precertificate's entry (the CA checks them
    before it signs), each with its log's key (SubjectPublicKeyInfo DER)."""
    return [(sign_sct(key, 1_790_000_000_000, pre.entry, leaf_index_extension(7)).to_bytes(),
             key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))
            for key in LOG_KEYS]


def scts_for(pre: Precertificate) -> list[bytes]:
    return [sct for sct, _ in log_scts(pre)]


def pem(path: Path, *certs: x509.Certificate) -> Path:
    path.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in certs))
    return path


def lint(tool: str, path: Path, *args: str) -> list[dict[str, str]]:
    result = subprocess.run([LINT / tool, "lint", *args, "-s", "WARNING", "-f", "JSON", path],
                            capture_output=True, text=True)
    return [f for r in json.loads(result.stdout)["results"] for f in r["finding_descriptions"]]


# --- policy ---------------------------------------------------------------------------


def test_a_csr_inside_the_network_is_accepted_and_normalised() -> None:
    request = check_csr(csr(["WWW.Alpha.Trust.Example.NET.", "*.alpha.trust.example.net",
                             "www.alpha.trust.example.net"]), zone=ZONE)
    assert request.dns_names == ["www.alpha.trust.example.net", "*.alpha.trust.example.net"]


@pytest.mark.parametrize(("names", "kwargs", "message"), [
    (["www.beta.trust.example.net"], {}, "outside this network's domain"),
    (["evilalpha.trust.example.net"], {}, "outside this network's domain"),
    (["alpha.trust.example.net.evil.com"], {}, "outside this network's domain"),
    (["under_score.alpha.trust.example.net"], {}, "not a valid DNS name"),
    (["*.*.alpha.trust.example.net"], {}, "not a valid DNS name"),
    (["www.alpha.trust.example.net"], {"ips": ["2001:db8::1"]}, "none registered"),
    ([], {}, "asks for no names"),
    (["www.alpha.trust.example.net"], {"ca": True}, "may not ask for a CA"),
])
def test_policy_refuses(names: list[str], kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        check_csr(csr(names, **kwargs), zone=ZONE)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", [
    ec.generate_private_key(ec.SECP521R1()),
    rsa.generate_private_key(public_exponent=65537, key_size=1024),
])
def test_weak_or_unlisted_keys_are_refused(key: object) -> None:
    with pytest.raises(PolicyError, match="keys must"):
        check_csr(csr(["www.alpha.trust.example.net"], key), zone=ZONE)


@pytest.mark.parametrize("key", [ec.generate_private_key(ec.SECP384R1()),
                                 ed25519.Ed25519PrivateKey.generate(),
                                 rsa.generate_private_key(public_exponent=65537, key_size=2048)])
def test_allowed_keys(key: object) -> None:
    assert check_csr(csr(["a.alpha.trust.example.net"], key), zone=ZONE).dns_names


def test_a_csr_with_a_broken_signature_is_refused() -> None:
    good = x509.load_pem_x509_csr(csr(["www.alpha.trust.example.net"])).public_bytes(Encoding.DER)
    broken = good[:-3] + bytes([good[-3] ^ 1]) + good[-2:]
    with pytest.raises(PolicyError, match="signature does not verify|does not parse"):
        check_csr(broken, zone=ZONE)
    with pytest.raises(PolicyError, match="does not parse"):
        check_csr(b"not a csr", zone=ZONE)


def test_within_is_label_wise() -> None:
    assert within("a.b.example", "b.example.") and within("b.example", "b.example")
    assert not within("ab.example", "b.example") and within("*.b.example", "b.example")


# --- profiles, judged by pkilint -----------------------------------------------------------


@pytest.mark.parametrize("profile", sorted(p.name for p in PROFILES.values() if p.server))
def test_leaf_and_precertificate_pass_cabf_lint(pki: Pki, tmp_path: Path, profile: str) -> None:
    pre, final = issue(pki, ["www.alpha.trust.example.net"], profile)
    assert lint("lint_cabf_serverauth_cert", pem(tmp_path / "leaf.pem", final),
                "-t", "DV-FINAL-CERTIFICATE") == []
    assert lint("lint_cabf_serverauth_cert", pem(tmp_path / "pre.pem", pre.certificate),
                "-t", "DV-PRE-CERTIFICATE") == []


def test_leaf_pkix_lint_finds_only_the_ski_the_baseline_requirements_advise_against(
    pki: Pki, tmp_path: Path
) -> None:
    """RFC 5280 says an end-entity SHOULD have an SKI; BR 7.1.2.7.6 says NOT RECOMMENDED.

    lint_cabf_serverauth_cert filters this very finding as superseded; the
    PKIX-only linter reports it, and it is the only thing it reports.
    """
    _, final = issue(pki, ["www.alpha.trust.example.net"])
    findings = lint("lint_pkix_cert", pem(tmp_path / "leaf.pem", final))
    assert [f["code"] for f in findings] == ["pkix.certificate_skid_end_entity_missing"]


def test_intermediate_passes_lint(pki: Pki, tmp_path: Path) -> None:
    path = pem(tmp_path / "intermediate.pem", pki.intermediate)
    assert lint("lint_cabf_serverauth_cert", path, "-t", "INTERNAL-UNCONSTRAINED-TLS-CA") == []
    assert lint("lint_pkix_cert", path) == []


# --- name constraints: openssl and cryptography both enforce them -----------------------------


def openssl_verify(tmp_path: Path, pki: Pki, leaf: x509.Certificate, host: str,
                   intermediate: x509.Certificate | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", "verify", "-x509_strict", "-purpose", "sslserver", "-verify_hostname", host,
         "-CAfile", pem(tmp_path / "root.pem", pki.root),
         "-untrusted", pem(tmp_path / "inter.pem", intermediate or pki.intermediate),
         pem(tmp_path / "leaf.pem", leaf)], capture_output=True, text=True)


def cryptography_verify(pki: Pki, leaf: x509.Certificate, host: str,
                        intermediate: x509.Certificate | None = None) -> None:
    verifier = PolicyBuilder().store(Store([pki.root])).time(datetime.now(UTC)) \
        .build_server_verifier(x509.DNSName(host))
    verifier.verify(leaf, [intermediate or pki.intermediate])


def test_a_leaf_verifies_with_openssl_and_cryptography(pki: Pki, tmp_path: Path) -> None:
    _, final = issue(pki, ["www.alpha.trust.example.net"])
    result = openssl_verify(tmp_path, pki, final, "www.alpha.trust.example.net")
    assert result.returncode == 0, result.stdout + result.stderr
    cryptography_verify(pki, final, "www.alpha.trust.example.net")


def forged(pki: Pki, name: str) -> x509.Certificate:
    """What a CA that skipped policy would sign: a name outside the network's subtree."""
    return sign_layout(pki, layout(pki, csr(["www.alpha.trust.example.net"]),
                                   dns_names=[name]))[1]


def test_a_certificate_forged_outside_the_constraints_fails_both_validators(
    pki: Pki, tmp_path: Path
) -> None:
    leaf = forged(pki, "www.bank.example")
    result = openssl_verify(tmp_path, pki, leaf, "www.bank.example")
    assert result.returncode != 0 and "permitted subtree violation" in result.stdout + result.stderr
    with pytest.raises(VerificationError):
        cryptography_verify(pki, leaf, "www.bank.example")


def test_the_directory_name_trap(pki: Pki, tmp_path: Path) -> None:
    """Why the intermediates carry no directoryName constraint.

    With one, pkilint's CA/B "technically constrained" profile is satisfied,
    but cryptography's path validator refuses every chain through the CA;
    without one, pkilint reports the CA as not technically constrained (so we
    lint it as an internal TLS CA) and both validators enforce the DNS subtree.
    """
    signer = pki.signer
    base = intermediate_builder(root=pki.root, public_key=pki.intermediate.public_key(),  # type: ignore[arg-type]
                                network="alpha", organisation="testnet", zone=ZONE,
                                generation=2, root_urls=pki.urls, now=datetime.now(UTC),
                                serial=2002)
    builder = x509.CertificateBuilder().subject_name(pki.intermediate.subject) \
        .issuer_name(pki.root.subject).public_key(pki.intermediate.public_key()) \
        .serial_number(x509.random_serial_number()) \
        .not_valid_before(pki.intermediate.not_valid_before_utc) \
        .not_valid_after(pki.intermediate.not_valid_after_utc)
    for extension in base._extensions:  # the same extensions, the constraints with a directoryName
        value = extension.value
        if isinstance(value, x509.NameConstraints):
            value = x509.NameConstraints(
                permitted_subtrees=[*(value.permitted_subtrees or []),
                                    x509.DirectoryName(pki.intermediate.subject)],
                excluded_subtrees=value.excluded_subtrees)
        builder = builder.add_extension(value, extension.critical)
    with_dn = signer.sign_certificate(builder, pki.root_key_id)
    assert lint("lint_cabf_serverauth_cert", pem(tmp_path / "dn.pem", with_dn),
                "-t", "INTERNAL-CONSTRAINED-TLS-CA") == []
    assert [f["code"] for f in lint("lint_cabf_serverauth_cert",
                                    pem(tmp_path / "ours.pem", pki.intermediate),
                                    "-t", "INTERNAL-CONSTRAINED-TLS-CA")] == [
        "cabf.serverauth.ca.incomplete_name_constraints"]
    _, leaf = issue(pki, ["www.alpha.trust.example.net"])  # same key: valid under either CA
    assert openssl_verify(tmp_path, pki, leaf, "www.alpha.trust.example.net",
                          with_dn).returncode == 0
    with pytest.raises(VerificationError, match="directoryName"):
        cryptography_verify(pki, leaf, "www.alpha.trust.example.net", with_dn)


# --- precertificate and final certificate ------------------------------------------------


def test_the_final_certificate_is_the_precertificate_with_scts_for_poison(pki: Pki) -> None:
    pre, final = issue(pki, ["www.alpha.trust.example.net"])
    assert pre.certificate.serial_number == final.serial_number
    poison = pre.certificate.extensions.get_extension_for_class(x509.PrecertPoison)
    assert poison.critical
    scts = final.extensions.get_extension_for_oid(x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2"))
    assert not scts.critical
    with pytest.raises(x509.ExtensionNotFound):
        final.extensions.get_extension_for_class(x509.PrecertPoison)


def test_a_final_certificate_that_differs_is_refused(pki: Pki) -> None:
    pre, _ = issue(pki, ["www.alpha.trust.example.net"])
    other = Precertificate(pre.builder.add_extension(
        x509.OCSPNoCheck(), critical=False), pre.certificate, pre.issuer, pre.issuer_key_id)
    with pytest.raises(IssuanceError, match="does not match its precertificate"):
        finish_certificate(pki.signer, other, scts_for(pre))


def test_sct_list_encoding() -> None:
    ext = sct_list_extension([b"ab", b"cde"])
    assert ext.value == b"\x04\x0b" + b"\x00\x09" + b"\x00\x02ab" + b"\x00\x03cde"
    with pytest.raises(IssuanceError):
        sct_list_extension([])


def test_pre_issuance_lint_passes_ours_and_refuses_a_bad_precertificate(pki: Pki) -> None:
    from trustchain.ca.lint import LintError, check_precertificate, lint_precertificate

    pre, _ = issue(pki, ["www.alpha.trust.example.net"])
    assert lint_precertificate(pre.certificate) == []
    # The same content plus a subject key identifier, which the BRs advise against.
    bad = pki.signer.sign_certificate(
        pre.builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(
            pre.certificate.public_key()), critical=False)  # type: ignore[arg-type]
        .add_extension(x509.PrecertPoison(), critical=True), pki.intermediate_key_id)
    with pytest.raises(LintError, match="subject_key_identifier_extension_present"):
        check_precertificate(bad)


def test_address_names_inside_the_network_blocks_only(pki: Pki, tmp_path: Path) -> None:
    """A network that registered 2001:db8:a::/48 and 192.0.2.0/24 may have addresses in them
    certified; its intermediate permits exactly those blocks (openssl enforces it)."""
    blocks = ("2001:db8:a::/48", "192.0.2.0/24")
    request = check_csr(csr(["www.alpha.trust.example.net"], ips=["2001:db8:a::7", "192.0.2.9"]),
                        zone=ZONE, prefixes=blocks)
    assert request.addresses == ["2001:db8:a::7", "192.0.2.9"]
    for outside in ("2001:db8:b::1", "198.51.100.1"):
        with pytest.raises(PolicyError, match="outside this network's address blocks"):
            check_csr(csr(["www.alpha.trust.example.net"], ips=[outside]), zone=ZONE,
                      prefixes=blocks)
    record_key = ec.generate_private_key(ec.SECP256R1())
    root_key_id = pki.root_key_id
    intermediate_key = pki.keystore.add(record_key, "ca-issuer:alpha-ip", datetime.now(UTC))
    constrained = pki.signer.sign_certificate(intermediate_builder(
        root=pki.root, public_key=record_key.public_key(), network="alpha",
        organisation="testnet", zone=ZONE, prefixes=blocks, generation=3, root_urls=pki.urls,
        now=datetime.now(UTC), serial=3003), root_key_id)
    for address, ok in (("2001:db8:a::7", True), ("2001:db8:b::1", False)):
        _, leaf = sign_layout(pki, layout(
            pki, csr(["www.alpha.trust.example.net"]), dns_names=["www.alpha.trust.example.net"],
            addresses=(address,), issuer=constrained, issuer_key_id=intermediate_key.id))
        result = subprocess.run(
            ["openssl", "verify", "-x509_strict", "-purpose", "sslserver", "-verify_ip", address,
             "-CAfile", pem(tmp_path / "root.pem", pki.root),
             "-untrusted", pem(tmp_path / "inter.pem", constrained),
             pem(tmp_path / "leaf.pem", leaf)], capture_output=True, text=True)
        assert (result.returncode == 0) == ok, result.stdout + result.stderr


# --- a federated network's admin credential (network-admin) ------------------------------


CREDENTIAL_URI = "trustchain://testnet/network/alpha"


def credential(pki: Pki) -> tuple[Precertificate, x509.Certificate]:
    """A network-admin certificate as the CA lays it out: the URI is its only name."""
    return issue(pki, ["www.alpha.trust.example.net"], "network-admin", uris=(CREDENTIAL_URI,))


def test_a_network_credential_is_a_client_certificate_under_the_network_intermediate(
    pki: Pki, tmp_path: Path
) -> None:
    """OpenSSL and cryptography accept it for TLS clients (the URI is outside the DNS and IP
    name constraints' reach), refuse it for servers, and the node reads it as the network's
    admin."""
    from trustchain.ca.lint import lint_precertificate
    from trustchain.identity import Role, identify_peer

    pre, final = credential(pki)
    san = final.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(san) == [x509.UniformResourceIdentifier(CREDENTIAL_URI)]
    assert final.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == \
        x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH])
    with pytest.raises(x509.ExtensionNotFound):  # no DV policy on a non-TLS-server certificate
        final.extensions.get_extension_for_class(x509.CertificatePolicies)
    for purpose, ok in (("sslclient", True), ("sslserver", False)):
        result = subprocess.run(
            ["openssl", "verify", "-x509_strict", "-purpose", purpose,
             "-CAfile", pem(tmp_path / "root.pem", pki.root),
             "-untrusted", pem(tmp_path / "inter.pem", pki.intermediate),
             pem(tmp_path / "leaf.pem", final)], capture_output=True, text=True)
        assert (result.returncode == 0) == ok, result.stdout + result.stderr
    peer = identify_peer(final, [pki.intermediate], root=pki.root, network="testnet",
                         now=datetime.now(UTC))
    assert (peer.role, peer.name, peer.serial) == (Role.NETWORK, "alpha", final.serial_number)
    # RFC 5280 lint: nothing but pkilint's known false positive on our identity URIs (its
    # URI check knows a fixed list of schemes), which pre-issuance linting sets aside too.
    findings = lint("lint_pkix_cert", pem(tmp_path / "cred.pem", final))
    assert [(f["code"], f["message"]) for f in findings] == [
        ("pkix.invalid_uri_syntax", f'Invalid URI syntax: "{CREDENTIAL_URI}"')]
    assert lint_precertificate(pre.certificate, server=False) == []
