"""``POST /ca/revoke`` (revocation by the certificate's key) with a certificate that does not
decode: a 400 problem, as for any bad request (found by the fuzz suite, issue 14: a version
other than v1-v3 at load, or a duplicate extension in a certificate whose serial the CA
issued, raised out of ``Revocations.revoke_by_key``: a 500)."""

from __future__ import annotations

import base64
import json
import ssl

from tests.fuzz.edges import _csr
from tests.fuzz.node import ADMIN, fuzz_node
from tests.trustchain.ct.test_malformed_chains import KEY_USAGE, with_extension_twice
from trustchain.stoq.framing import Request


def issued() -> bytes:
    """A certificate this node's CA issued (DER)."""
    node = fuzz_node()
    message = json.dumps({"csr": _csr(), "network": "alpha"}).encode()
    outcome = node.router.dispatch(Request("ca", "issue", message), ADMIN)
    status, body = outcome if isinstance(outcome, tuple) else node.run(outcome)
    assert status == 200, body
    pem = json.loads(body)["chain"].split("-----END CERTIFICATE-----")[0]
    return ssl.PEM_cert_to_DER_cert(pem + "-----END CERTIFICATE-----\n")


def revoke(certificate: bytes) -> tuple[int, dict]:
    body = json.dumps({"certificate": base64.b64encode(certificate).decode(),
                       "signature": base64.b64encode(b"\x30" * 70).decode()}).encode()
    status, answer = fuzz_node().http("POST", "/ca/revoke", body)
    return status, json.loads(answer)


def test_a_certificate_of_an_unknown_version_is_a_bad_request() -> None:
    der = issued()
    at = der.index(bytes.fromhex("a003020102"))  # [0] EXPLICIT version v3
    status, problem = revoke(der[:at] + bytes.fromhex("a003020109") + der[at + 5:])
    assert (status, problem["status"]) == (400, 400)


def test_an_issued_serial_with_a_duplicate_extension_is_a_bad_request() -> None:
    status, problem = revoke(with_extension_twice(issued(), KEY_USAGE))
    assert (status, problem["status"]) == (400, 400)
