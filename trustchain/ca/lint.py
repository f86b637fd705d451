"""Pre-issuance linting: the precertificate is checked by pkilint before anything is logged.

As Let's Encrypt lints every certificate with zlint before signing it, the CA
(when ``ca_lint`` is on) runs DigiCert's pkilint, the CA/Browser Forum TLS
profile for domain-validated precertificates (RFC 5280 alone for client-only
profiles such as ``network-admin``, which the TLS server rules do not
cover), on each precertificate before it goes to the logs, and refuses to
issue on any finding at WARNING or above.
The precertificate has the final certificate's content; its signature is
not yet public, and a refused one is never logged.

pkilint is pure Python and far slower than signing (see docs/performance.md):
off by default, for operators who prefer the check to the throughput, and
an optional dependency (the ``lint`` extra).
"""

from __future__ import annotations

import functools
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from trustchain.errors import LocalError, RemoteError

INSTALL_PKILINT = "pip install 'trustchain[lint]'"


class LintError(RemoteError):
    """pkilint found a problem; the certificate was not issued."""


def require_pkilint() -> None:
    """:raises LocalError: pkilint is not installed (``ca_lint = true`` needs it)."""
    try:
        import pkilint  # noqa: F401
    except ImportError:
        raise LocalError("ca_lint = true needs pkilint, which is not installed: "
                         f"{INSTALL_PKILINT}") from None


@functools.cache
def _linter(server: bool) -> tuple[Any, Any, Any]:
    """pkilint's validators, built once (building them is slow): the CA/B Forum's for DV
    TLS server precertificates, or RFC 5280's (as ``lint_pkix_cert`` runs them)."""
    require_pkilint()
    from pkilint import loader
    from pkilint.cabf import serverauth
    from pkilint.cabf.serverauth import serverauth_constants
    from pkilint.pkix import certificate, extension, name

    if not server:
        validator = certificate.create_pkix_certificate_validator_container(
            certificate.create_decoding_validators(name.ATTRIBUTE_TYPE_MAPPINGS,
                                                   extension.EXTENSION_MAPPINGS),
            [certificate.create_issuer_validator_container([]),
             certificate.create_validity_validator_container(),
             certificate.create_subject_validator_container([]),
             certificate.create_extensions_validator_container([]),
             certificate.create_spki_validator_container([])])
        return loader.RFC5280CertificateDocumentLoader(), validator, []
    kind = serverauth_constants.CertificateType.DV_PRE_CERTIFICATE
    validator = certificate.create_pkix_certificate_validator_container(
        serverauth.create_decoding_validators(), serverauth.create_validators(kind))
    return (loader.RFC5280CertificateDocumentLoader(), validator,
            serverauth.create_serverauth_finding_filters(kind))


def _known_false_positive(code: str, message: str | None) -> bool:
    """pkilint checks URIs with the ``validators`` package, which knows a fixed list of
    schemes only (it refuses ``spiffe://`` too): our identity URIs
    (``trustchain://<network>/<role>/<name>``, valid RFC 3986) are reported as bad syntax."""
    return code == "pkix.invalid_uri_syntax" and bool(message) and \
        str(message).startswith('Invalid URI syntax: "trustchain://')


def lint_precertificate(precertificate: x509.Certificate, server: bool = True) -> list[str]:
    """pkilint's findings at WARNING or above, as ``code (SEVERITY): message`` lines.

    :raises LocalError: pkilint is not installed.
    """
    documents, validator, filters = _linter(server)
    from pkilint import finding_filter
    from pkilint.validation import ValidationFindingSeverity

    document = documents.load_der_document(precertificate.public_bytes(Encoding.DER),
                                           "precertificate")
    results, _ = finding_filter.filter_results(filters, validator.validate(document.root))
    return [f"{d.finding.code} ({d.finding.severity.name})"
            + (f": {d.message}" if d.message else "")
            for result in results for d in result.finding_descriptions
            if d.finding.severity <= ValidationFindingSeverity.WARNING
            and not _known_false_positive(d.finding.code, d.message)]


def check_precertificate(precertificate: x509.Certificate, server: bool = True) -> None:
    """:raises LintError: listing every finding at WARNING or above."""
    findings = lint_precertificate(precertificate, server)
    if findings:
        raise LintError("pre-issuance lint refused the certificate: " + "; ".join(findings))
