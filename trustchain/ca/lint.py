"""Pre-issuance linting: the precertificate is checked by pkilint before anything is logged.

As Let's Encrypt lints every certificate with zlint before signing it, the CA
(when ``ca_lint`` is on) runs DigiCert's pkilint, the CA/Browser Forum TLS
profile for domain-validated precertificates, on each precertificate before
it goes to the logs, and refuses to issue on any finding at WARNING or above.
The precertificate has the final certificate's content; its signature is
not yet public, and a refused one is never logged.

pkilint is pure Python and far slower than signing (see docs/performance.md):
off by default, for operators who prefer the check to the throughput.
"""

from __future__ import annotations

import functools
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from trustchain.errors import RemoteError


class LintError(RemoteError):
    """pkilint found a problem; the certificate was not issued."""


@functools.cache
def _linter() -> tuple[Any, Any, Any]:
    """pkilint's validators for DV precertificates, built once (building them is slow)."""
    from pkilint import loader
    from pkilint.cabf import serverauth
    from pkilint.cabf.serverauth import serverauth_constants
    from pkilint.pkix import certificate

    kind = serverauth_constants.CertificateType.DV_PRE_CERTIFICATE
    validator = certificate.create_pkix_certificate_validator_container(
        serverauth.create_decoding_validators(), serverauth.create_validators(kind))
    return (loader.RFC5280CertificateDocumentLoader(), validator,
            serverauth.create_serverauth_finding_filters(kind))


def lint_precertificate(precertificate: x509.Certificate) -> list[str]:
    """pkilint's findings at WARNING or above, as ``code (SEVERITY): message`` lines."""
    from pkilint import finding_filter
    from pkilint.validation import ValidationFindingSeverity

    documents, validator, filters = _linter()
    document = documents.load_der_document(precertificate.public_bytes(Encoding.DER),
                                           "precertificate")
    results, _ = finding_filter.filter_results(filters, validator.validate(document.root))
    return [f"{d.finding.code} ({d.finding.severity.name})"
            + (f": {d.message}" if d.message else "")
            for result in results for d in result.finding_descriptions
            if d.finding.severity <= ValidationFindingSeverity.WARNING]


def check_precertificate(precertificate: x509.Certificate) -> None:
    """:raises LintError: listing every finding at WARNING or above."""
    findings = lint_precertificate(precertificate)
    if findings:
        raise LintError("pre-issuance lint refused the certificate: " + "; ".join(findings))
