"""CAA (RFC 8659, RFC 8657) decisions, on record sets given directly."""

from __future__ import annotations

import pytest

from trustchain.ca.acme import caa
from trustchain.ca.acme.problems import AcmeProblem

US = ["trust.example.net"]
ACCOUNT = "https://trust.example.net/acme/acct/7"


def decide(records: dict[str, list[caa.Record]], name: str = "www.shop.example.com",
           method: str = "http-01") -> str:
    try:
        caa.check(name, lambda owner: records.get(owner, []), US, ACCOUNT, method)
    except AcmeProblem as exc:
        assert exc.kind == "caa"
        return "refused"
    return "issued"


@pytest.mark.parametrize(("records", "name", "method", "expected"), [
    ({}, "www.shop.example.com", "http-01", "issued"),  # no CAA anywhere
    ({"example.com": [(0, "issue", "otherca.example")]}, "www.shop.example.com", "http-01",
     "refused"),  # found by climbing
    ({"example.com": [(0, "issue", "otherca.example")],
      "shop.example.com": [(0, "issue", "trust.example.net")]},
     "www.shop.example.com", "http-01", "issued"),  # the closest set decides
    ({"example.com": [(0, "issue", ";")]}, "www.shop.example.com", "http-01", "refused"),
    ({"example.com": [(0, "iodef", "mailto:x@example.com")]}, "www.shop.example.com",
     "http-01", "issued"),  # no issue property: unrestricted
    ({"example.com": [(128, "tbs", "x"), (0, "issue", "trust.example.net")]},
     "www.shop.example.com", "http-01", "refused"),  # unknown critical tag
    ({"example.com": [(0, "tbs", "x"), (0, "issue", "trust.example.net")]},
     "www.shop.example.com", "http-01", "issued"),  # unknown, not critical
    ({"example.com": [(0, "issue", "trust.example.net"), (0, "issuewild", ";")]},
     "*.shop.example.com", "dns-01", "refused"),  # issuewild decides for wildcards
    ({"example.com": [(0, "issue", ";"), (0, "issuewild", "trust.example.net")]},
     "*.shop.example.com", "dns-01", "issued"),
    ({"example.com": [(0, "issue", f"trust.example.net; accounturi={ACCOUNT}")]},
     "www.shop.example.com", "http-01", "issued"),
    ({"example.com": [(0, "issue", "trust.example.net; accounturi=https://x/acct/1")]},
     "www.shop.example.com", "http-01", "refused"),  # RFC 8657 3: another account
    ({"example.com": [(0, "issue", "trust.example.net; validationmethods=dns-01")]},
     "www.shop.example.com", "http-01", "refused"),  # RFC 8657 4: another method
    ({"example.com": [(0, "issue", "trust.example.net; validationmethods=dns-01,http-01")]},
     "www.shop.example.com", "http-01", "issued"),
    ({"example.com": [(0, "issue", "TRUST.example.net.")]}, "www.shop.example.com",
     "http-01", "issued"),  # domain names compare case-insensitively
])
def test_caa_decisions(records: dict[str, list[caa.Record]], name: str, method: str,
                       expected: str) -> None:
    assert decide(records, name, method) == expected
